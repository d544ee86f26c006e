'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// PostgreSQL through `psql` child processes (Debian's postgresql-client). Upstream uses
// Sequelize and node-postgres with the same settings: database.hostname/port/username/password,
// database.ssl (+ ssl_settings), and the database name database.name or 'peertube' + suffix.
// Credentials reach psql only through its environment (PGPASSWORD ...), SQL through its
// standard input: nothing secret is ever on a command line.

const { spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const { databaseName } = require('./config')

class DatabaseError extends Error {}

// A SQL literal. Strings travel hex-encoded, so no quoting or psql variable rule can bite.
function lit (value) {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE'
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new DatabaseError(`not a finite number: ${value}`)
    return String(value)
  }
  if (value instanceof Date) return `${lit(value.toISOString())}::timestamptz`
  const hex = Buffer.from(String(value), 'utf8').toString('hex')
  return `convert_from(decode('${hex}', 'hex'), 'UTF8')`
}

class Database {
  constructor (config) {
    const db = config.database
    this.name = databaseName(config)
    const env = {}
    for (const [key, value] of Object.entries(process.env)) {
      if (!key.startsWith('PG')) env[key] = value
    }
    if (db.hostname) env.PGHOST = String(db.hostname)
    if (db.port) env.PGPORT = String(db.port)
    env.PGUSER = String(db.username)
    if (db.password !== null && db.password !== undefined && db.password !== '') {
      env.PGPASSWORD = String(db.password)
    }
    env.PGDATABASE = this.name
    env.PGAPPNAME = 'peertube-standin'
    env.PGCONNECT_TIMEOUT = '10'
    const ssl = db.ssl_settings || {}
    if (db.ssl) {
      env.PGSSLMODE = ssl.reject_unauthorized ? 'verify-full' : 'require'
      if (ssl.ca) env.PGSSLROOTCERT = String(ssl.ca)
      if (ssl.cert) env.PGSSLCERT = String(ssl.cert)
      if (ssl.key) env.PGSSLKEY = String(ssl.key)
    } else {
      env.PGSSLMODE = 'disable'
    }
    this.env = env
  }

  // Run a SQL script; `single` wraps it in one transaction. Resolves with psql's stdout.
  run (sql, { single = false } = {}) {
    const args = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...(single ? ['-1'] : []), '-f', '-']
    return new Promise((resolve, reject) => {
      let child
      try {
        child = spawn('psql', args, { env: this.env, stdio: ['pipe', 'pipe', 'pipe'] })
      } catch (err) {
        reject(new DatabaseError(`cannot run psql: ${err.message}`))
        return
      }
      const out = []
      const err = []
      child.stdout.on('data', (chunk) => out.push(chunk))
      child.stderr.on('data', (chunk) => err.push(chunk))
      child.on('error', (e) => {
        reject(new DatabaseError(e.code === 'ENOENT'
          ? 'psql is missing: install postgresql-client (the stand-in talks to PostgreSQL through psql)'
          : `cannot run psql: ${e.message}`))
      })
      child.on('close', (code) => {
        if (code === 0) resolve(Buffer.concat(out).toString('utf8'))
        else reject(new DatabaseError(Buffer.concat(err).toString('utf8').trim() || `psql exited with ${code}`))
      })
      child.stdin.on('error', () => {}) // psql may exit before reading everything
      child.stdin.end(`SET standard_conforming_strings = on;\n${sql}\n`)
    })
  }

  // Rows of a SELECT, as objects (through json_agg, so types survive).
  async query (select) {
    const out = await this.run(`SELECT coalesce(json_agg(q), '[]'::json) FROM (${select}) q;`)
    return JSON.parse(out.trim() || '[]')
  }

  // Rows an INSERT/UPDATE ... RETURNING gives back (data-modifying WITH must be top level).
  async returning (statement) {
    const out = await this.run(`WITH r AS (${statement}) SELECT coalesce(json_agg(r), '[]'::json) FROM r;`)
    return JSON.parse(out.trim() || '[]')
  }

  async one (select) {
    const rows = await this.query(select)
    return rows.length ? rows[0] : null
  }
}

// ---- migrations (upstream: server/core/initializers/migrator.ts) ---------------------------

const MIGRATIONS_DIR = path.join(__dirname, 'migrations')

// "1125-some-name.js" -> { version: 1125, file, up }; each module exports `up`, a SQL script.
function migrationScripts () {
  return fs.readdirSync(MIGRATIONS_DIR)
    .filter((file) => /^\d+-.+\.js$/.test(file))
    .map((file) => ({ version: parseInt(file, 10), file, up: require(path.join(MIGRATIONS_DIR, file)).up }))
    .sort((a, b) => a.version - b.version)
}

const LAST_MIGRATION_VERSION = Math.max(...migrationScripts().map((m) => m.version))

class DowngradeError extends Error {}

async function tablesExist (db) {
  const row = await db.one("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")
  return row.n > 0
}

// Pending migrations, each in its own transaction with the version bump, as upstream.
// An empty database is left to the installer (upstream: "The installer will do that").
async function migrate (db, logger) {
  if (!(await tablesExist(db))) return { fresh: true }
  let row = await db.one('SELECT "migrationVersion" FROM "application" LIMIT 1')
  if (!row) {
    await db.run('INSERT INTO "application" ("migrationVersion") VALUES (0);')
    row = { migrationVersion: 0 }
  }
  const actual = row.migrationVersion
  if (actual > LAST_MIGRATION_VERSION) {
    // Stricter than upstream, which starts on a newer schema: see the stand-in's README.
    throw new DowngradeError(
      `Database schema version ${actual} is newer than this release's (${LAST_MIGRATION_VERSION}). ` +
      'PeerTube does not migrate down: restore the database dump taken before the upgrade.')
  }
  if (actual >= LAST_MIGRATION_VERSION) return { fresh: false, from: actual, to: actual }
  logger.info('Begin migrations.')
  for (const script of migrationScripts()) {
    if (script.version <= actual) continue
    logger.info('Executing %s migration script.', script.file)
    await db.run(`${script.up}\nUPDATE "application" SET "migrationVersion" = ${script.version};`, { single: true })
  }
  logger.info('Migrations finished. New migration version schema: %s', LAST_MIGRATION_VERSION)
  return { fresh: false, from: actual, to: LAST_MIGRATION_VERSION }
}

// The whole schema of this release at once, for an empty database (upstream: sequelize.sync()
// then createApplicationIfNotExist() with migrationVersion = LAST_MIGRATION_VERSION).
function schemaScript () {
  return migrationScripts().map((m) => m.up).join('\n') +
    `\nINSERT INTO "application" ("migrationVersion", "nodeVersion") VALUES (${LAST_MIGRATION_VERSION}, ${lit(process.version)});`
}

// Upstream's createFunctions(): search uses it, and so do the trigram indexes.
const FUNCTIONS = `CREATE OR REPLACE FUNCTION immutable_unaccent(text)
  RETURNS text AS
$func$
SELECT public.unaccent('public.unaccent', $1::text)
$func$  LANGUAGE sql IMMUTABLE;`

module.exports = {
  Database, DatabaseError, DowngradeError, lit, migrate, migrationScripts, schemaScript,
  LAST_MIGRATION_VERSION, FUNCTIONS
}
