<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. [method, path regex, App\Standin\Http handler]
// (`php artisan route:cache` writes these to bootstrap/cache/routes-v7.php, read from then on.)

return [
    ['GET', '#^/$#', 'home'],
    ['GET', '#^/\.well-known/nodeinfo$#', 'nodeinfoWellKnown'],
    ['GET', '#^/\.well-known/webfinger$#', 'webfinger'],
    ['GET', '#^/users/(?<username>[A-Za-z0-9_.-]+)$#', 'user'],
    ['GET', '#^/i/actor$#', 'instanceActor'],
];
