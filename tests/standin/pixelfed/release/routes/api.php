<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. [method, path regex, App\Standin\Http handler]

return [
    ['GET', '#^/api/nodeinfo/2\.0\.json$#', 'nodeinfo'],
    ['GET', '#^/api/v1/instance$#', 'instance'],
    ['GET', '#^/api/v1/accounts/verify_credentials$#', 'verifyCredentials'],
    ['POST', '#^/api/v1/media$#', 'uploadMedia'],
];
