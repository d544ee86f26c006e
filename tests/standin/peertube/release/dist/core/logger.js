'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// Like upstream's logger: every line to stdout (journald, SyslogIdentifier=peertube) and to
// <storage.logs>/peertube.log. No rotation (upstream rotates the file itself).

const fs = require('fs')
const path = require('path')
const util = require('util')

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 }
const PREFIX = '[stand-in peertube]'

class Logger {
  constructor () {
    this.level = 'info'
    this.file = null
  }

  // Once the configuration is read: log.level and storage.logs.
  configure (level, logDir) {
    if (level in LEVELS) this.level = level
    if (logDir) {
      fs.mkdirSync(logDir, { recursive: true })
      this.file = path.join(logDir, 'peertube.log')
    }
  }

  log (level, format, ...args) {
    if (LEVELS[level] < LEVELS[this.level]) return
    // Every physical line carries the prefix, also those of a multi-line message.
    const head = `${PREFIX} ${new Date().toISOString()} ${level}: `
    const line = util.format(format, ...args).split('\n').map((part, i) => (i === 0 ? head : `${PREFIX}   `) + part).join('\n') + '\n'
    process.stdout.write(line)
    if (this.file) {
      try {
        fs.appendFileSync(this.file, line)
      } catch (err) {
        process.stdout.write(`${PREFIX} warn: cannot write ${this.file}: ${err.message}\n`)
        this.file = null
      }
    }
  }

  debug (...args) { this.log('debug', ...args) }
  info (...args) { this.log('info', ...args) }
  warn (...args) { this.log('warn', ...args) }
  error (...args) { this.log('error', ...args) }
}

const logger = new Logger()

module.exports = { logger, PREFIX }
