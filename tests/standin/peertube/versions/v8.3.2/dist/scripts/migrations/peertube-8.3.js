'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: the manual script of the 8.3 upgrade notes.
//
//   cd /var/www/peertube/peertube-latest
//   sudo -u peertube NODE_CONFIG_DIR=/var/www/peertube/config NODE_ENV=production \
//     node dist/scripts/migrations/peertube-8.3.js
//
// Run it once PeerTube 8.3 logged "Migrations finished. New migration version schema: 1125"
// (while it runs, as upstream asks). It backfills "videoStreamingPlaylist"."storageBytes",
// which the 1125 migration added empty, from the HLS files on disk. Idempotent: a second run
// finds nothing to do. Exit 1 when the schema has not been migrated yet.

const fs = require('fs')
const { openForScript } = require('../../core/boot')
const { hlsDirectory, directoryBytes } = require('../../core/videos')
const { logger } = require('../../core/logger')

async function main () {
  const { config, db } = openForScript()
  const app = await db.one('SELECT "migrationVersion" FROM "application" LIMIT 1').catch(() => null)
  if (!app || app.migrationVersion < 1125) {
    logger.error('peertube-8.3: the database is at schema %s, not 1125 yet: start PeerTube 8.3 first so that its migrations run.', app ? app.migrationVersion : 'none')
    process.exit(1)
  }
  const rows = await db.query(`SELECT p."id", v."uuid", p."storageBytes" FROM "videoStreamingPlaylist" p JOIN "video" v ON v."id" = p."videoId" ORDER BY p."id"`)
  const todo = rows.filter((r) => r.storageBytes === null)
  logger.info('peertube-8.3: %d streaming playlists, %d without storageBytes.', rows.length, todo.length)
  for (const row of todo) {
    const dir = hlsDirectory(config, row.uuid)
    let bytes = 0
    if (fs.existsSync(dir)) bytes = directoryBytes(dir)
    else logger.warn('peertube-8.3: %s is missing; storageBytes of playlist %d set to 0.', dir, row.id)
    await db.run(`UPDATE "videoStreamingPlaylist" SET "storageBytes" = ${bytes} WHERE "id" = ${row.id} AND "storageBytes" IS NULL;`)
    logger.info('peertube-8.3: playlist %d of video %s: storageBytes = %d.', row.id, row.uuid, bytes)
  }
  logger.info('peertube-8.3: backfilled %d streaming playlists (%d already done).', todo.length, rows.length - todo.length)
}

main().catch((err) => {
  logger.error('peertube-8.3 failed: %s', err.message || err)
  process.exit(1)
})
