'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: the migration of the broken v8.3.3 stand-in. It runs
// (and is committed) before the release crashes at start, so a rollback has to restore the
// database dump: after a correct rollback there is no "video"."v833Marker" column and the
// schema version is back at 1125.

exports.up = `
ALTER TABLE "video" ADD COLUMN "v833Marker" integer NOT NULL DEFAULT 833;
`
