<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ database.php.
// The stand-in connects to pgsql only (PDO pgsql) and to Redis with phpredis.

use App\Standin\App;

return [
    'default' => App::env('DB_CONNECTION', 'mysql'),
    'connections' => [
        'pgsql' => [
            'driver' => 'pgsql',
            'host' => App::env('DB_HOST', '127.0.0.1'),
            'port' => App::env('DB_PORT', '5432'),
            'database' => App::env('DB_DATABASE', 'forge'),
            'username' => App::env('DB_USERNAME', 'forge'),
            'password' => App::env('DB_PASSWORD', ''),
            'charset' => 'utf8',
            'schema' => 'public',
        ],
    ],
    'migrations' => 'migrations',
    'redis' => [
        'client' => App::env('REDIS_CLIENT', 'predis'),
        'options' => ['prefix' => App::env('REDIS_PREFIX', '')],
        'default' => [
            'scheme' => App::env('REDIS_SCHEME', 'tcp'),
            'host' => App::env('REDIS_HOST', 'localhost'),
            'password' => App::env('REDIS_PASSWORD', null),
            'port' => App::env('REDIS_PORT', 6379),
            'database' => App::env('REDIS_DATABASE', 0),
        ],
    ],
];
