<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. Keys and defaults as upstream's config/ instance.php.

use App\Standin\App;

return [
    'email' => App::env('INSTANCE_CONTACT_EMAIL'),
    // ENABLE_CONFIG_CACHE: settings in the config_cache table override .env (see README)
    'enable_cc' => (bool) App::env('ENABLE_CONFIG_CACHE', true),
    'stories' => ['enabled' => (bool) App::env('STORIES_ENABLED', false)],
];
