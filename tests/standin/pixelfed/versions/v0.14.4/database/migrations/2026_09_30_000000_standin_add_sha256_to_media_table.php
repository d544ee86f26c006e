<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. v0.14.4's code writes media.sha256.

return new class {
    public function up(\PDO $db): void
    {
        $db->exec('ALTER TABLE media ADD COLUMN sha256 varchar(64)');
    }
};
