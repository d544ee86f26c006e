'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// Configuration loading with node-config's rules, as PeerTube uses them: every directory of
// NODE_CONFIG_DIR (":"-separated, default ./config), in order, and in each of them the files
// default, <NODE_ENV>, local, local-<NODE_ENV> (NODE_ENV defaults to "development"), each as
// .json, .yaml then .yml. A later file wins key by key (deep merge; lists and nulls replace).

const fs = require('fs')
const path = require('path')
const { parseYaml } = require('./yaml')

class ConfigError extends Error {}

const EXTENSIONS = ['json', 'yaml', 'yml']

// Keys PeerTube's checkMissedConfig() requires (the part the stand-in reads or that a
// deployment must carry), plus the Redis alternatives below. They all come from default.yaml,
// so a missing one means default.yaml was not copied into NODE_CONFIG_DIR.
const REQUIRED = [
  'listen.port', 'listen.hostname',
  'webserver.https', 'webserver.hostname', 'webserver.port',
  'secrets.peertube', 'trust_proxy',
  'oauth2.token_lifetime.access_token', 'oauth2.token_lifetime.refresh_token',
  'database.hostname', 'database.port', 'database.username', 'database.password',
  'database.pool.max', 'database.ssl_settings.reject_unauthorized',
  'smtp.hostname', 'smtp.port', 'smtp.username', 'smtp.password', 'smtp.tls', 'smtp.from_address',
  'storage.avatars', 'storage.web_videos', 'storage.logs', 'storage.previews', 'storage.thumbnails',
  'storage.torrents', 'storage.cache', 'storage.redundancy', 'storage.tmp',
  'storage.streaming_playlists', 'storage.plugins', 'storage.well_known', 'storage.uploads',
  'log.level', 'user.password_constraints.min_length', 'admin.email', 'signup.enabled',
  'transcoding.enabled', 'transcoding.original_file.keep', 'transcoding.threads',
  'transcoding.hls.enabled', 'transcoding.web_videos.enabled', 'object_storage.enabled',
  'instance.name', 'instance.short_description', 'federation.enabled'
]
const REDIS_ALTERNATIVES = [['redis.hostname', 'redis.port'], ['redis.socket']]

function isPlainObject (value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function deepMerge (into, from) {
  for (const [key, value] of Object.entries(from)) {
    if (isPlainObject(value) && isPlainObject(into[key])) deepMerge(into[key], value)
    else into[key] = isPlainObject(value) ? deepMerge({}, value) : value
  }
  return into
}

function lookup (config, key) {
  let node = config
  for (const part of key.split('.')) {
    if (!isPlainObject(node) || !(part in node)) return undefined
    node = node[part]
  }
  return node
}

function has (config, key) {
  return lookup(config, key) !== undefined
}

function loadConfig (env = process.env) {
  const dirs = (env.NODE_CONFIG_DIR || path.join(process.cwd(), 'config')).split(path.delimiter)
  const nodeEnv = env.NODE_ENV || 'development'
  const names = ['default', nodeEnv, 'local', `local-${nodeEnv}`]
  const config = {}
  const sources = []
  for (const dir of dirs) {
    for (const name of names) {
      for (const ext of EXTENSIONS) {
        const file = path.join(dir, `${name}.${ext}`)
        let text
        try {
          text = fs.readFileSync(file, 'utf8')
        } catch (err) {
          if (err.code === 'ENOENT') continue
          throw new ConfigError(`Cannot read configuration file ${file}: ${err.message}`)
        }
        let parsed
        try {
          parsed = ext === 'json' ? JSON.parse(text) : parseYaml(text, file)
        } catch (err) {
          throw new ConfigError(`Cannot parse configuration file ${file}: ${err.message}`)
        }
        if (parsed === null || parsed === undefined) continue
        if (!isPlainObject(parsed)) throw new ConfigError(`${file} is not a mapping`)
        deepMerge(config, parsed)
        sources.push(file)
      }
    }
  }
  return { config, sources, nodeEnv }
}

function missingKeys (config) {
  const miss = REQUIRED.filter((key) => !has(config, key))
  if (!REDIS_ALTERNATIVES.some((set) => set.every((key) => has(config, key)))) {
    miss.push(...REDIS_ALTERNATIVES[0])
  }
  return miss
}

// Upstream's WEBSERVER.HOST / URL: the port is left out when it is 80 or 443.
function webserver (config) {
  const ws = config.webserver
  const scheme = ws.https ? 'https' : 'http'
  const port = Number(ws.port)
  const host = port === 80 || port === 443 ? ws.hostname : `${ws.hostname}:${port}`
  return { scheme, host, hostname: ws.hostname, url: `${scheme}://${host}` }
}

// Upstream: database.name, else 'peertube' + database.suffix.
function databaseName (config) {
  const db = config.database
  return db.name ? String(db.name) : `peertube${db.suffix || ''}`
}

// '1 day', '2 weeks', '30 minutes', or a number of milliseconds (upstream's parseDurationToMs).
const UNITS = {
  ms: 1, millisecond: 1, milliseconds: 1,
  s: 1e3, second: 1e3, seconds: 1e3,
  m: 60e3, minute: 60e3, minutes: 60e3,
  h: 3600e3, hour: 3600e3, hours: 3600e3,
  d: 86400e3, day: 86400e3, days: 86400e3,
  w: 604800e3, week: 604800e3, weeks: 604800e3,
  month: 2592000e3, months: 2592000e3,
  y: 31536000e3, year: 31536000e3, years: 31536000e3
}

function durationMs (value) {
  if (typeof value === 'number') return value
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/.exec(String(value))
  if (!m || !(m[2] === '' || m[2] in UNITS)) {
    throw new ConfigError(`Cannot parse duration ${JSON.stringify(value)}`)
  }
  return Number(m[1]) * (m[2] === '' ? 1 : UNITS[m[2]])
}

module.exports = { ConfigError, loadConfig, missingKeys, lookup, has, webserver, databaseName, durationMs }
