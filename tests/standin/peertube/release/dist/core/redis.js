'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// A small Redis client over node's `net` (RESP2). Upstream uses ioredis/BullMQ with
// redis.hostname/port (or redis.socket), redis.auth (password) and redis.db; the stand-in
// connects the same way, AUTHs, SELECTs the database, PINGs, and keeps a heartbeat key there
// (standin:peertube:heartbeat, 60 s TTL) so a test can see which database it uses.

const net = require('net')

class RedisError extends Error {}

function encode (args) {
  const parts = [`*${args.length}\r\n`]
  for (const arg of args) {
    const buf = Buffer.from(String(arg), 'utf8')
    parts.push(`$${buf.length}\r\n`, buf, '\r\n')
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'))))
}

// Parse one reply at `pos`; returns [value, nextPos] or null when more bytes are needed.
function decode (buf, pos) {
  const end = buf.indexOf('\r\n', pos)
  if (end === -1) return null
  const type = String.fromCharCode(buf[pos])
  const line = buf.toString('utf8', pos + 1, end)
  const next = end + 2
  if (type === '+') return [line, next]
  if (type === '-') return [new RedisError(line), next]
  if (type === ':') return [Number(line), next]
  if (type === '$') {
    const len = Number(line)
    if (len === -1) return [null, next]
    if (buf.length < next + len + 2) return null
    return [buf.toString('utf8', next, next + len), next + len + 2]
  }
  if (type === '*') {
    const count = Number(line)
    if (count === -1) return [null, next]
    const items = []
    let at = next
    for (let i = 0; i < count; i++) {
      const item = decode(buf, at)
      if (!item) return null
      items.push(item[0])
      at = item[1]
    }
    return [items, at]
  }
  throw new RedisError(`unexpected reply from Redis: ${JSON.stringify(buf.toString('utf8', pos, end))}`)
}

class Redis {
  constructor (config) {
    const r = config.redis
    this.target = r.socket ? { path: String(r.socket) } : { host: String(r.hostname), port: Number(r.port) }
    this.where = r.socket ? String(r.socket) : `${r.hostname}:${r.port}`
    this.auth = r.auth
    this.db = Number(r.db || 0)
    this.socket = null
    this.pending = []
    this.buffer = Buffer.alloc(0)
  }

  connect (timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.target)
      const timer = setTimeout(() => socket.destroy(new RedisError(`timed out after ${timeoutMs} ms`)), timeoutMs)
      socket.once('connect', () => {
        clearTimeout(timer)
        this.socket = socket
        resolve()
      })
      socket.on('data', (chunk) => this.onData(chunk))
      socket.on('error', (err) => {
        clearTimeout(timer)
        this.failAll(err)
        reject(err)
      })
      socket.on('close', () => {
        this.socket = null
        this.failAll(new RedisError('connection closed'))
      })
    })
  }

  onData (chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk])
    for (;;) {
      if (!this.pending.length || !this.buffer.length) return
      const reply = decode(this.buffer, 0)
      if (!reply) return
      this.buffer = this.buffer.subarray(reply[1])
      const { resolve, reject } = this.pending.shift()
      if (reply[0] instanceof RedisError) reject(reply[0])
      else resolve(reply[0])
    }
  }

  failAll (err) {
    const pending = this.pending
    this.pending = []
    for (const { reject } of pending) reject(err)
  }

  command (...args) {
    if (!this.socket) return Promise.reject(new RedisError('not connected'))
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject })
      this.socket.write(encode(args))
    })
  }

  // Connect, AUTH (when redis.auth is set), SELECT redis.db and PING.
  async open () {
    await this.connect()
    if (this.auth !== null && this.auth !== undefined && this.auth !== '') await this.command('AUTH', this.auth)
    if (this.db) await this.command('SELECT', this.db)
    const pong = await this.command('PING')
    if (pong !== 'PONG') throw new RedisError(`PING answered ${JSON.stringify(pong)}`)
  }

  close () {
    if (this.socket) this.socket.end()
  }
}

module.exports = { Redis, RedisError }
