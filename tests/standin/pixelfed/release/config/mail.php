<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ mail.php (not used by the stand-in: it sends no mail).

use App\Standin\App;

return [
    'driver' => App::env('MAIL_DRIVER', 'smtp'),
    'host' => App::env('MAIL_HOST', 'smtp.mailgun.org'),
    'port' => App::env('MAIL_PORT', 587),
    'from' => ['address' => App::env('MAIL_FROM_ADDRESS', 'hello@example.com'), 'name' => App::env('MAIL_FROM_NAME', 'Example')],
    'encryption' => App::env('MAIL_ENCRYPTION', 'tls'),
    'username' => App::env('MAIL_USERNAME'),
    'password' => App::env('MAIL_PASSWORD'),
];
