<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. php-fpm's front controller (nginx:
// root public/; try_files $uri $uri/ /index.php?$query_string).

define('LARAVEL_START', microtime(true));

require __DIR__ . '/../bootstrap/app.php';

App\Standin\Http::handle();
