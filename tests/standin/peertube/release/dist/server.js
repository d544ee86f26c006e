'use strict'
// fedictl TEST STAND-IN, NOT PeerTube. Started like upstream's release:
//
//   cd /var/www/peertube/peertube-latest
//   NODE_ENV=production NODE_CONFIG_DIR=/var/www/peertube/config /usr/bin/node dist/server
//
// Start-up follows upstream's server.ts: configuration checks, database connection, PostgreSQL
// extensions and functions, migrations, installer (schema, OAuth client, root user), storage
// directories, Redis, then HTTP on listen.hostname:listen.port. Any failure before listening
// ends the process with exit code 1 and a line saying why.

const fs = require('fs')
const http = require('http')
const path = require('path')
const { logger } = require('./core/logger')
const boot = require('./core/boot')
const { webserver } = require('./core/config')
const database = require('./core/database')
const auth = require('./core/auth')
const { Redis } = require('./core/redis')
const { createHandler } = require('./core/http')
const hooks = require('./core/release-hooks')

const RELEASE = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).standin.release
const HEARTBEAT_MS = 10e3

function ensureStorage (config) {
  for (const dir of Object.values(config.storage)) {
    if (typeof dir === 'string' && dir) fs.mkdirSync(dir, { recursive: true })
  }
  fs.mkdirSync(path.join(config.storage.streaming_playlists, 'hls'), { recursive: true })
  // Upstream empties storage.tmp at every start.
  for (const entry of fs.readdirSync(config.storage.tmp)) {
    fs.rmSync(path.join(config.storage.tmp, entry), { recursive: true, force: true })
  }
}

async function checkDatabase (db, version) {
  let info
  try {
    info = await db.one('SELECT current_setting(\'server_version_num\')::int AS num, current_setting(\'server_version\') AS text')
  } catch (err) {
    throw new boot.StartError(`Unable to connect to PostgreSQL database. ${err.message}`)
  }
  logger.debug('Connection to PostgreSQL %s has been established successfully.', info.text)
  const [major, minor] = version.split('.').map(Number)
  if ((major > 8 || (major === 8 && minor >= 3)) && info.num < 140000) {
    throw new boot.StartError(`PostgreSQL ${info.text} is too old: PeerTube ${major}.${minor} needs PostgreSQL >= 14`)
  }
  // Upstream tries CREATE EXTENSION itself first; the stand-in only checks (see README).
  const rows = await db.query("SELECT name FROM pg_available_extensions WHERE name IN ('pg_trgm', 'unaccent') AND installed_version IS NOT NULL")
  for (const extension of ['pg_trgm', 'unaccent']) {
    if (!rows.some((r) => r.name === extension)) {
      throw new boot.StartError(`You need to enable ${extension} extension in PostgreSQL. ` +
        `You can do so by running 'CREATE EXTENSION ${extension};' as a PostgreSQL super user in ${db.name} database.`)
    }
  }
  await db.run(database.FUNCTIONS)
}

async function start () {
  logger.info('fedictl TEST STAND-IN for PeerTube %s (%s), not PeerTube.', boot.VERSION, RELEASE)
  const { config, sources, nodeEnv } = boot.readConfig()
  logger.configure(config.log.level, config.storage.logs)
  boot.checkNodeVersion()
  boot.checkConfig(config, nodeEnv)
  logger.info('Using following configuration file hierarchy: %s.', sources.join(' -> '))
  const web = webserver(config)

  const db = new database.Database(config)
  await checkDatabase(db, boot.VERSION)
  logger.info('Database %s is ready.', db.name)

  let result
  try {
    result = await database.migrate(db, logger)
  } catch (err) {
    if (err instanceof database.DowngradeError) throw new boot.StartError(err.message)
    throw new boot.StartError(`Cannot execute migrations: ${err.message}`)
  }
  if (result.fresh) {
    logger.info('Creating application account.')
    await db.run(database.schemaScript(), { single: true })
  }
  await auth.createOAuthClientIfNotExist(db, logger)
  try {
    await auth.createOAuthAdminIfNotExist(db, config, logger)
  } catch (err) {
    throw new boot.StartError(`Cannot install application. ${err.message}`)
  }
  ensureStorage(config)

  const redis = new Redis(config)
  try {
    await redis.open()
  } catch (err) {
    throw new boot.StartError(`Cannot connect to Redis at ${redis.where} (db ${redis.db}): ${err.message}`)
  }
  logger.info('Connected to Redis at %s, database %d.', redis.where, redis.db)

  hooks.afterMigrations()

  const heartbeat = async () => {
    const value = JSON.stringify({ version: boot.VERSION, release: RELEASE, pid: process.pid, at: new Date().toISOString() })
    try {
      if (!redis.socket) await redis.open()
      await redis.command('SET', 'standin:peertube:heartbeat', value, 'EX', 60)
    } catch (err) {
      logger.error('Redis heartbeat failed (%s): %s', redis.where, err.message)
    }
  }
  await heartbeat()
  const timer = setInterval(heartbeat, HEARTBEAT_MS)

  const server = http.createServer(createHandler({ db, config, logger, version: boot.VERSION, web, releaseName: RELEASE }))
  const hostname = config.listen.hostname
  const port = Number(config.listen.port)
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, hostname, resolve)
  }).catch((err) => { throw new boot.StartError(`Cannot listen on ${hostname}:${port}: ${err.message}`) })
  logger.info('HTTP server listening on %s:%d', hostname, port)
  logger.info('Web server: %s', web.url)

  const stop = (signal) => {
    logger.info('Received %s, stopping.', signal)
    clearInterval(timer)
    redis.close()
    server.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 3000).unref()
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

start().catch((err) => {
  logger.error(err instanceof boot.StartError ? err.message : (err.stack || String(err)))
  process.exit(1)
})
