'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: the v8.3 migration. It adds a nullable column that
// v8.3.x fills for new uploads; existing rows stay NULL until the manual script
// `node dist/scripts/migrations/peertube-8.3.js` backfills them from the files on disk (as
// upstream's 8.3 notes ask for a manual script after "Migrations finished. New migration
// version schema: 1125"). v8.2.4 ignores the column, so it can still run on this schema.

exports.up = `
ALTER TABLE "videoStreamingPlaylist" ADD COLUMN "storageBytes" bigint;
`
