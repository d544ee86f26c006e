<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ horizon.php.

use App\Standin\App;

return [
    'prefix' => App::env('HORIZON_PREFIX', 'horizon-'),
    // supervisor-1's queues in production, in upstream's order
    'queues' => ['high', 'default', 'follow', 'shared', 'inbox', 'feed', 'low', 'story', 'delete',
        'mmo', 'intbg', 'groups', 'adelete', 'move', 'pushnotify'],
    'max_processes' => (int) App::env('HORIZON_MAX_PROCESSES', 20),
];
