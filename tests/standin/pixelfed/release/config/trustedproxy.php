<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ trustedproxy.php.
// Since Pixelfed v0.12.8 nothing is trusted by default (it was '*'): set TRUST_PROXIES to the
// proxy's address (127.0.0.1 for nginx on the same host), a comma-separated list, CIDRs or '*'.

use App\Standin\App;

return [
    'proxies' => App::env('TRUST_PROXIES'),
];
