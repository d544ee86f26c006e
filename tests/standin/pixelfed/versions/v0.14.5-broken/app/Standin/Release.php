<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed.

namespace App\Standin;

/** v0.14.5-broken: `migrate --force` works, then every web request and `horizon` fail. */
final class Release
{
    public const BROKEN = true;

    public const MEDIA_COLUMNS = ['profile_id', 'media_path', 'thumbnail_path', 'mime', 'size', 'sha256'];
}
