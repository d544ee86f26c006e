<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ session.php.

use App\Standin\App;

return [
    'driver' => App::env('SESSION_DRIVER', 'database'),
    'domain' => App::env('SESSION_DOMAIN', App::env('APP_DOMAIN')),
];
