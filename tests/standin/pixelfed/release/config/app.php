<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ app.php.

use App\Standin\App;

return [
    'name' => App::env('APP_NAME', 'Pixelfed'),
    'short_description' => App::env('INSTANCE_DESCRIPTION', 'Pixelfed is an image sharing platform, an ethical alternative to centralized platforms'),
    'env' => App::env('APP_ENV', 'production'),
    'debug' => (bool) App::env('APP_DEBUG', false),
    'url' => App::env('APP_URL', 'https://localhost'),
    'timezone' => 'UTC',
    'locale' => App::env('APP_LOCALE', 'en'),
    'key' => App::env('APP_KEY'),
    'cipher' => 'AES-256-CBC',
];
