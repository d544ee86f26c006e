<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Shared by artisan and public/index.php.

$autoload = dirname(__DIR__) . '/vendor/autoload.php';
if (!is_file($autoload)) { // as upstream, the release needs `composer install` first
    fwrite(STDERR, "[stand-in pixelfed] vendor/autoload.php is missing: run composer install --no-dev first\n");
    http_response_code(500);
    exit(1);
}
require $autoload;

App\Standin\App::boot(dirname(__DIR__));
