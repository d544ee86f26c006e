'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: the tables of the v8.2.4 stand-in, a tiny subset of
// PeerTube's (same table and column names where they exist upstream). On an empty database
// the installer runs every migration script at once; this one is the whole v8.2.4 schema.
// It needs pg_trgm (the gin trigram index) and unaccent (immutable_unaccent(), created at
// every start before migrations run, as upstream's createFunctions()).

exports.up = `
CREATE TABLE "application" (
  "id" serial PRIMARY KEY,
  "migrationVersion" integer NOT NULL DEFAULT 0,
  "nodeVersion" varchar(255),
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "user" (
  "id" serial PRIMARY KEY,
  "username" varchar(255) NOT NULL UNIQUE,
  "password" varchar(255) NOT NULL,
  "email" varchar(400) NOT NULL,
  "emailVerified" boolean NOT NULL DEFAULT false,
  "role" integer NOT NULL,
  "videoQuota" bigint NOT NULL DEFAULT -1,
  "videoQuotaDaily" bigint NOT NULL DEFAULT -1,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "account" (
  "id" serial PRIMARY KEY,
  "name" varchar(255) NOT NULL,
  "preferredUsername" varchar(255) NOT NULL UNIQUE,
  "publicKey" text,
  "privateKey" text,
  "userId" integer REFERENCES "user" ("id") ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "videoChannel" (
  "id" serial PRIMARY KEY,
  "name" varchar(255) NOT NULL,
  "preferredUsername" varchar(255) NOT NULL UNIQUE,
  "accountId" integer NOT NULL REFERENCES "account" ("id") ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "video" (
  "id" serial PRIMARY KEY,
  "uuid" uuid NOT NULL UNIQUE,
  "name" varchar(255) NOT NULL,
  "channelId" integer NOT NULL REFERENCES "videoChannel" ("id") ON DELETE CASCADE,
  "state" integer NOT NULL,
  "privacy" integer NOT NULL DEFAULT 1,
  "duration" integer NOT NULL DEFAULT 0,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now(),
  "publishedAt" timestamptz
);
CREATE INDEX "video_name_trigram" ON "video" USING gin (lower(immutable_unaccent("name")) gin_trgm_ops);

CREATE TABLE "videoStreamingPlaylist" (
  "id" serial PRIMARY KEY,
  "type" integer NOT NULL DEFAULT 1,
  "playlistFilename" varchar(255) NOT NULL,
  "playlistUrl" varchar(2000),
  "videoId" integer NOT NULL REFERENCES "video" ("id") ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "videoFile" (
  "id" serial PRIMARY KEY,
  "resolution" integer NOT NULL,
  "size" bigint NOT NULL,
  "extname" varchar(255) NOT NULL,
  "filename" varchar(255) NOT NULL,
  "fps" integer NOT NULL DEFAULT -1,
  "videoStreamingPlaylistId" integer REFERENCES "videoStreamingPlaylist" ("id") ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "oAuthClient" (
  "id" serial PRIMARY KEY,
  "clientId" varchar(255) NOT NULL,
  "clientSecret" varchar(255) NOT NULL,
  "grants" varchar(255)[],
  "redirectUris" varchar(255)[],
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE "oAuthToken" (
  "id" serial PRIMARY KEY,
  "accessToken" varchar(255) NOT NULL UNIQUE,
  "accessTokenExpiresAt" timestamptz NOT NULL,
  "refreshToken" varchar(255) NOT NULL UNIQUE,
  "refreshTokenExpiresAt" timestamptz NOT NULL,
  "oAuthClientId" integer NOT NULL REFERENCES "oAuthClient" ("id") ON DELETE CASCADE,
  "userId" integer NOT NULL REFERENCES "user" ("id") ON DELETE CASCADE,
  "createdAt" timestamptz NOT NULL DEFAULT now(),
  "updatedAt" timestamptz NOT NULL DEFAULT now()
);
`
