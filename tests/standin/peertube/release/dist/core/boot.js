'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// What the server and the scripts do first, in upstream's order: read the configuration
// (node-config rules), refuse missing keys, check it (checkConfig()), then the database.

const fs = require('fs')
const path = require('path')
const { loadConfig, missingKeys, ConfigError } = require('./config')
const { logger } = require('./logger')
const { Database } = require('./database')

const PACKAGE = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'))
const VERSION = PACKAGE.version

class StartError extends Error {}

function readConfig (env = process.env) {
  let loaded
  try {
    loaded = loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) throw new StartError(err.message)
    throw err
  }
  const miss = missingKeys(loaded.config)
  if (miss.length !== 0) {
    // upstream: console.error('Your configuration files miss keys: ' + missed)
    const dirs = env.NODE_CONFIG_DIR || path.join(process.cwd(), 'config')
    throw new StartError(`Your configuration files miss keys: ${miss.join(',')} ` +
      `(read from ${loaded.sources.join(', ') || 'no file'} in NODE_CONFIG_DIR=${dirs}, NODE_ENV=${loaded.nodeEnv})`)
  }
  return loaded
}

// Upstream's checkConfig(), for the keys the stand-in reads.
function checkConfig (config, nodeEnv) {
  if (!config.secrets.peertube) {
    throw new StartError('secrets.peertube is missing in config. Generate one using `openssl rand -hex 32`')
  }
  if (config.transcoding.enabled && !config.transcoding.hls.enabled && !config.transcoding.web_videos.enabled) {
    throw new StartError('You need to enable at least Web Video transcoding or HLS transcoding.')
  }
  if (config.object_storage.enabled) {
    throw new StartError('object_storage.enabled is true, but the fedictl stand-in has no object storage support')
  }
  if (nodeEnv === 'production') {
    for (const [key, dir] of Object.entries(config.storage)) {
      if (typeof dir === 'string' && dir.startsWith('storage/')) {
        logger.warn('Directory of %s should not be in the production directory of PeerTube. Please check your production configuration file.', key)
      }
    }
  }
}

// Upstream's checkNodeVersion(). PEERTUBE_STANDIN_ALLOW_OLD_NODE=1 (stand-in only) turns the
// refusal into a warning, for tests that run the stand-in on Debian's Node 20.
function checkNodeVersion (env = process.env) {
  const [major, minor] = process.versions.node.split('.').map(Number)
  let problem = null
  if (major < 22) problem = `Your NodeJS version ${process.version} is not supported. Please upgrade to NodeJS 22 or NodeJS 24`
  else if (major === 22 && minor < 12) problem = 'NodeJS >= v22.12 or NodeJS 24 is required'
  if (!problem) return
  if (env.PEERTUBE_STANDIN_ALLOW_OLD_NODE === '1') logger.warn('%s (ignored: PEERTUBE_STANDIN_ALLOW_OLD_NODE=1)', problem)
  else throw new StartError(problem)
}

// For the scripts: configuration and database, no checks of the server's own.
function openForScript (env = process.env) {
  const { config } = readConfig(env)
  logger.configure(config.log.level, null)
  return { config, db: new Database(config) }
}

module.exports = { VERSION, PACKAGE, StartError, readConfig, checkConfig, checkNodeVersion, openForScript }
