<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. A tiny subset of Pixelfed's schema.
// Each stand-in migration returns an object with up(PDO); the migrator runs it in a transaction
// and records its name in `migrations` (id, migration, batch), as Laravel does.

return new class {
    public function up(\PDO $db): void
    {
        $db->exec(<<<'SQL'
            CREATE TABLE users (
                id bigserial PRIMARY KEY,
                name varchar(255),
                username varchar(255) NOT NULL UNIQUE,
                email varchar(255) NOT NULL UNIQUE,
                password varchar(255) NOT NULL,
                is_admin boolean NOT NULL DEFAULT false,
                email_verified_at timestamp,
                created_at timestamp, updated_at timestamp);
            CREATE TABLE profiles (
                id bigserial PRIMARY KEY,
                user_id bigint REFERENCES users(id),
                username varchar(255) NOT NULL UNIQUE,
                name varchar(255),
                created_at timestamp, updated_at timestamp);
            CREATE TABLE media (
                id bigserial PRIMARY KEY,
                profile_id bigint NOT NULL REFERENCES profiles(id),
                media_path varchar(255) NOT NULL,
                thumbnail_path varchar(255),
                mime varchar(255),
                size bigint,
                processed_at timestamp,
                created_at timestamp, updated_at timestamp);
            CREATE TABLE instance_actors (
                id bigserial PRIMARY KEY,
                private_key text, public_key text,
                created_at timestamp, updated_at timestamp);
            CREATE TABLE places (
                id bigserial PRIMARY KEY,
                slug varchar(255), name varchar(255), country varchar(255),
                lat numeric(9,6), long numeric(9,6),
                created_at timestamp, updated_at timestamp);
            CREATE TABLE config_cache (
                id bigserial PRIMARY KEY,
                k varchar(255) NOT NULL UNIQUE, v text,
                created_at timestamp, updated_at timestamp);
            CREATE TABLE oauth_access_tokens (
                id varchar(100) PRIMARY KEY,
                user_id bigint REFERENCES users(id),
                name varchar(255), revoked boolean NOT NULL DEFAULT false,
                created_at timestamp, updated_at timestamp, expires_at timestamp);
            SQL);
    }
};
