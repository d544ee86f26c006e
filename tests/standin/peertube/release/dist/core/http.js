'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// The HTTP API: the part of upstream's REST API, ActivityPub and well-known endpoints that
// fedictl's roles and checks use. Every answer carries "X-Powered-By: PeerTube" (upstream's
// security.powered_by_header, on by default), so a file that nginx served from storage (the
// static bypass) can be told from one the application served.

const fs = require('fs')
const path = require('path')
const { lit } = require('./database')
const auth = require('./auth')
const videos = require('./videos')

const MARK = '(fedictl test stand-in, not PeerTube)'
const MAX_UPLOAD_BYTES = 512 * 1024 * 1024
const MAX_BODY_BYTES = 1024 * 1024
const ACTIVITY_TYPES = /application\/(activity\+json|ld\+json)/
const STATIC_TYPES = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.ts': 'video/mp2t',
  '.mp4': 'video/mp4',
  '.m4s': 'video/iso.segment',
  '.json': 'application/json'
}

function createHandler ({ db, config, logger, version, web, releaseName }) {
  const instanceName = `${config.instance.name} ${MARK}`
  const poweredBy = !(config.security && config.security.powered_by_header && config.security.powered_by_header.enabled === false)

  function send (res, status, body, type) {
    const data = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')
    const headers = { 'Content-Type': type, 'Content-Length': data.length }
    if (poweredBy) headers['X-Powered-By'] = 'PeerTube'
    res.writeHead(status, headers)
    res.end(data)
  }
  const json = (res, status, value, type = 'application/json; charset=utf-8') => send(res, status, JSON.stringify(value), type)
  // Upstream's res.fail(): a problem document.
  const fail = (res, status, detail, extra = {}) => json(res, status, { status, detail, error: detail, ...extra }, 'application/problem+json; charset=utf-8')

  function readBody (req, limit) {
    return new Promise((resolve, reject) => {
      const chunks = []
      let size = 0
      req.on('data', (chunk) => {
        size += chunk.length
        if (size > limit) {
          reject(Object.assign(new Error('Request entity too large'), { status: 413 }))
          req.destroy()
          return
        }
        chunks.push(chunk)
      })
      req.on('end', () => resolve(Buffer.concat(chunks)))
      req.on('error', reject)
    })
  }

  function actorUrl (name) {
    return `${web.url}/accounts/${name}`
  }

  async function account (name) {
    return db.one(`SELECT a."id", a."name", a."preferredUsername", a."publicKey", a."createdAt" FROM "account" a WHERE a."preferredUsername" = ${lit(name)}`)
  }

  async function serverConfig () {
    return {
      serverVersion: version,
      serverCommit: `standin-${releaseName}`,
      instance: {
        name: instanceName,
        shortDescription: config.instance.short_description,
        defaultClientRoute: config.instance.default_client_route || '/videos/browse',
        isNSFW: Boolean(config.instance.is_nsfw),
        defaultNSFWPolicy: config.instance.default_nsfw_policy || 'do_not_list'
      },
      signup: { allowed: Boolean(config.signup.enabled), requiresEmailVerification: Boolean(config.signup.requires_email_verification) },
      transcoding: {
        hls: { enabled: Boolean(config.transcoding.hls.enabled) },
        web_videos: { enabled: Boolean(config.transcoding.web_videos.enabled) },
        remoteRunners: { enabled: Boolean(config.transcoding.remote_runners && config.transcoding.remote_runners.enabled) }
      },
      objectStorage: { enabled: Boolean(config.object_storage.enabled) },
      webadmin: { configuration: { edition: { allowed: Boolean(config.webadmin && config.webadmin.configuration.edition.allowed) } } },
      federation: { enabled: Boolean(config.federation.enabled) }
    }
  }

  async function nodeinfo () {
    const users = await db.one('SELECT count(*)::int AS n FROM "user"')
    const posts = await db.one('SELECT count(*)::int AS n FROM "video"')
    return {
      version: '2.0',
      software: { name: 'peertube', version },
      protocols: ['activitypub'],
      services: { inbound: [], outbound: ['atom1.0', 'rss2.0'] },
      openRegistrations: Boolean(config.signup.enabled),
      usage: { users: { total: users.n, activeMonth: users.n, activeHalfyear: users.n }, localPosts: posts.n, localComments: 0 },
      metadata: { taxonomy: { postsName: 'Videos' }, nodeName: instanceName, nodeDescription: config.instance.short_description }
    }
  }

  function serveStatic (res, root, rel) {
    const base = path.resolve(root)
    const file = path.resolve(base, rel)
    if (!file.startsWith(base + path.sep)) return fail(res, 404, 'Not found')
    let data
    try {
      data = fs.readFileSync(file)
    } catch {
      return fail(res, 404, 'Not found')
    }
    return send(res, 200, data, STATIC_TYPES[path.extname(file)] || 'application/octet-stream')
  }

  async function route (req, res, url) {
    const method = req.method
    const p = url.pathname
    const get = method === 'GET' || method === 'HEAD'

    if (get && p === '/api/v1/ping') return send(res, 200, 'pong', 'text/html; charset=utf-8')
    if (get && p === '/api/v1/config') return json(res, 200, await serverConfig())
    if (get && p === '/.well-known/nodeinfo') {
      return json(res, 200, { links: [{ rel: 'http://nodeinfo.diaspora.software/ns/schema/2.0', href: `${web.url}/nodeinfo/2.0.json` }] })
    }
    if (get && p === '/nodeinfo/2.0.json') {
      return json(res, 200, await nodeinfo(), 'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.0#"; charset=utf-8')
    }
    if (get && p === '/.well-known/webfinger') {
      const resource = url.searchParams.get('resource') || ''
      const m = /^(?:acct:)?([^@]+)@(.+)$/.exec(resource)
      if (!m || m[2] !== web.host) return fail(res, 404, 'Unknown resource')
      const actor = await account(m[1])
      if (actor) {
        return json(res, 200, {
          subject: `acct:${m[1]}@${web.host}`,
          aliases: [actorUrl(m[1])],
          links: [
            { rel: 'self', type: 'application/activity+json', href: actorUrl(m[1]) },
            { rel: 'http://ostatus.org/schema/1.0/subscribe', template: `${web.url}/remote-interaction?uri={uri}` }
          ]
        }, 'application/jrd+json; charset=utf-8')
      }
      return fail(res, 404, 'Unknown resource')
    }
    const accountPage = /^\/(?:accounts|a)\/([^/]+)$/.exec(p)
    if (get && accountPage) {
      const actor = await account(decodeURIComponent(accountPage[1]))
      if (!actor) return fail(res, 404, 'Account not found')
      const id = actorUrl(actor.preferredUsername)
      if (ACTIVITY_TYPES.test(req.headers.accept || '')) {
        return json(res, 200, {
          '@context': ['https://www.w3.org/ns/activitystreams', 'https://w3id.org/security/v1'],
          type: 'Person',
          id,
          following: `${id}/following`,
          followers: `${id}/followers`,
          inbox: `${id}/inbox`,
          outbox: `${id}/outbox`,
          preferredUsername: actor.preferredUsername,
          url: id,
          name: actor.name,
          endpoints: { sharedInbox: `${web.url}/inbox` },
          publicKey: { id: `${id}#main-key`, owner: id, publicKeyPem: actor.publicKey },
          published: actor.createdAt,
          summary: `${MARK}`
        }, 'application/activity+json; charset=utf-8')
      }
      return send(res, 200, htmlPage(`${actor.name} - ${instanceName}`), 'text/html; charset=utf-8')
    }
    if (get && p === '/api/v1/oauth-clients/local') {
      // Upstream refuses unless Host is webserver.hostname (with :port unless 80/443).
      if (req.headers.host !== web.host) {
        logger.info('Getting client tokens for host %s is forbidden (expected %s).', req.headers.host, web.host)
        return fail(res, 403, `Getting client tokens for host ${req.headers.host} is forbidden`)
      }
      const client = await auth.localClient(db)
      return json(res, 200, { client_id: client.clientId, client_secret: client.clientSecret })
    }
    if (method === 'POST' && p === '/api/v1/users/token') {
      const form = Object.fromEntries(new URLSearchParams((await readBody(req, MAX_BODY_BYTES)).toString('utf8')))
      const result = await auth.grantToken(db, config, form)
      if (result.error) return fail(res, 400, result.detail, { code: result.error })
      return json(res, 200, result.token)
    }
    if (get && (p === '/api/v1/videos' || p === '/api/v1/search/videos')) {
      const search = url.searchParams.get('search')
      const start = Math.max(0, Number(url.searchParams.get('start')) || 0)
      const count = Math.min(100, Math.max(0, Number(url.searchParams.get('count')) || 15))
      // The search uses both extensions: unaccent (immutable_unaccent) and pg_trgm (%).
      const where = search
        ? `WHERE lower(immutable_unaccent(v."name")) % lower(immutable_unaccent(${lit(search)})) OR lower(immutable_unaccent(v."name")) LIKE '%' || lower(immutable_unaccent(${lit(search)})) || '%'`
        : ''
      const rows = await db.query(`${videos.VIDEO_SELECT} ${where} ORDER BY v."publishedAt" DESC NULLS LAST, v."id" DESC`)
      return json(res, 200, { total: rows.length, data: rows.slice(start, start + count).map((r) => videos.formatVideo(r, web.host, web.url)) })
    }
    const videoPage = /^\/api\/v1\/videos\/([^/]+)$/.exec(p)
    if (get && videoPage && videoPage[1] !== 'upload') {
      const row = await videos.findVideo(db, decodeURIComponent(videoPage[1]))
      if (!row) return fail(res, 404, 'Video not found')
      return json(res, 200, await videos.videoDetails(db, row, web.host, web.url))
    }
    if (p === '/api/v1/videos/upload' && method === 'POST') {
      const user = await auth.authenticate(db, req.headers.authorization)
      if (!user) return fail(res, 401, 'Token is invalid', { code: 'invalid_token' })
      const body = await readBody(req, MAX_UPLOAD_BYTES)
      try {
        const video = await videos.upload({ db, config, logger, user, body, contentType: req.headers['content-type'], webserverUrl: web.url })
        return json(res, 200, { video })
      } catch (err) {
        if (err instanceof videos.UploadError) return fail(res, err.status, err.message)
        throw err
      }
    }
    if (get && p === '/api/v1/users/me') {
      const user = await auth.authenticate(db, req.headers.authorization)
      if (!user) return fail(res, 401, 'Token is invalid', { code: 'invalid_token' })
      const acc = await db.one(`SELECT "id", "name", "preferredUsername" FROM "account" WHERE "userId" = ${user.id}`)
      const channels = await db.query(`SELECT "id", "preferredUsername" AS "name", "name" AS "displayName" FROM "videoChannel" WHERE "accountId" = ${acc.id} ORDER BY "id"`)
      return json(res, 200, {
        id: user.id,
        username: user.username,
        email: user.email,
        role: { id: user.role, label: user.role === 0 ? 'Administrator' : 'User' },
        account: { id: acc.id, name: acc.preferredUsername, displayName: acc.name, host: web.host },
        videoChannels: channels.map((c) => ({ ...c, host: web.host }))
      })
    }
    const hls = /^\/static\/streaming-playlists\/hls\/(.+)$/.exec(p)
    if (get && hls) return serveStatic(res, path.join(config.storage.streaming_playlists, 'hls'), decodeURIComponent(hls[1]))
    const webVideo = /^\/static\/(?:web-videos|webseed)\/(.+)$/.exec(p)
    if (get && webVideo) return serveStatic(res, config.storage.web_videos, decodeURIComponent(webVideo[1]))
    if (get && (p === '/' || p.startsWith('/videos') || p.startsWith('/about'))) {
      return send(res, 200, htmlPage(instanceName), 'text/html; charset=utf-8')
    }
    return fail(res, 404, 'Not found')
  }

  return async function handler (req, res) {
    const url = new URL(req.url, 'http://stand-in.invalid')
    const started = Date.now()
    res.on('finish', () => {
      const ping = url.pathname === '/api/v1/ping'
      if (config.log.log_http_requests === false || (ping && config.log.log_ping_requests === false)) return
      logger.info('%s %s %s %d ms', req.method, url.pathname, res.statusCode, Date.now() - started)
    })
    try {
      await route(req, res, url)
    } catch (err) {
      logger.error('Error in %s %s: %s', req.method, url.pathname, err.stack || err.message)
      if (!res.headersSent) fail(res, err.status || 500, err.status ? err.message : 'Internal server error')
      else res.destroy()
    }
  }
}

function htmlPage (title) {
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]))
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>\n<body><h1>${esc(title)}</h1><p>This is not PeerTube: it is fedictl's test stand-in.</p></body></html>\n`
}

module.exports = { createHandler, MARK }
