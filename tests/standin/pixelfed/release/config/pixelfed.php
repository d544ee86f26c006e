<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ pixelfed.php.

use App\Standin\App;

return [
    // Pixelfed's version; the stand-in builder writes the release's number here
    'version' => '@STANDIN_VERSION@',
    'domain' => [
        'admin' => App::env('ADMIN_DOMAIN'),
        'app' => App::env('APP_DOMAIN'),
    ],
    'open_registration' => (bool) App::env('OPEN_REGISTRATION', true),
    'max_users' => (int) App::env('PF_MAX_USERS', 1000),
    'enforce_max_users' => (bool) App::env('PF_ENFORCE_MAX_USERS', true),
    'enforce_email_verification' => (bool) App::env('ENFORCE_EMAIL_VERIFICATION', true),
    'oauth_enabled' => (bool) App::env('OAUTH_ENABLED', true),
    'max_photo_size' => (int) App::env('MAX_PHOTO_SIZE', 15000), // KB
    'media_types' => App::env('MEDIA_TYPES', 'image/jpeg,image/png,image/gif'),
    'image_quality' => (int) App::env('IMAGE_QUALITY', 80),
    'cloud_storage' => (bool) App::env('PF_ENABLE_CLOUD', false),
];
