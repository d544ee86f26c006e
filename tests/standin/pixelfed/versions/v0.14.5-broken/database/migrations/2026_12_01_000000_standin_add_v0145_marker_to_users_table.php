<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. v0.14.5-broken's migration runs (a nullable
// column v0.14.4 does not mind), then the release fails on purpose.

return new class {
    public function up(\PDO $db): void
    {
        $db->exec('ALTER TABLE users ADD COLUMN standin_v0145_marker varchar(255)');
    }
};
