<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ filesystems.php (not used by the stand-in: media stay local).

use App\Standin\App;

return [
    'default' => App::env('FILESYSTEM_DRIVER', 'local'),
    'cloud' => App::env('FILESYSTEM_CLOUD', 's3'),
    'disks' => [
        's3' => [
            'driver' => 's3',
            'key' => App::env('AWS_ACCESS_KEY_ID'),
            'secret' => App::env('AWS_SECRET_ACCESS_KEY'),
            'region' => App::env('AWS_DEFAULT_REGION'),
            'bucket' => App::env('AWS_BUCKET'),
            'url' => App::env('AWS_URL'),
            'endpoint' => App::env('AWS_ENDPOINT'),
            'use_path_style_endpoint' => (bool) App::env('AWS_USE_PATH_STYLE_ENDPOINT', false),
            'visibility' => App::env('AWS_VISIBILITY', 'public'),
        ],
    ],
];
