<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed.

namespace App\Standin;

/** What differs between the stand-in releases besides config/pixelfed.php's version. */
final class Release
{
    /** v0.14.5-broken replaces this file: migrations run, web requests and Horizon fail. */
    public const BROKEN = false;

    /** v0.14.4 also writes media.sha256 (added by its migration): it needs a migrated schema. */
    public const MEDIA_COLUMNS = ['profile_id', 'media_path', 'thumbnail_path', 'mime', 'size', 'sha256'];
}
