<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ federation.php.

use App\Standin\App;

return [
    'activitypub' => [
        'enabled' => (bool) App::env('ACTIVITY_PUB', false),
        'remoteFollow' => (bool) App::env('AP_REMOTE_FOLLOW', true),
        'inbox' => (bool) App::env('AP_INBOX', true),
        'outbox' => (bool) App::env('AP_OUTBOX', true),
        'sharedInbox' => (bool) App::env('AP_SHAREDINBOX', true),
        'authorized_fetch' => (bool) App::env('AUTHORIZED_FETCH', false),
    ],
    'atom' => ['enabled' => (bool) App::env('ATOM_FEEDS', true)],
    'nodeinfo' => ['enabled' => (bool) App::env('NODEINFO', true)],
    'webfinger' => ['enabled' => (bool) App::env('WEBFINGER', true)],
];
