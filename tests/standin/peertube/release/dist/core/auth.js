'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// Users, passwords and OAuth, as upstream's installer and OAuth server behave. Passwords are
// hashed with scrypt ("scrypt$N$r$p$salt$hash", base64); upstream uses bcrypt.

const crypto = require('crypto')
const { lit } = require('./database')
const { durationMs } = require('./config')

const SCRYPT = { N: 16384, r: 8, p: 1 }
const PASSWORD_MAX_LENGTH = 50 // upstream: max 50 characters and 72 bytes (bcrypt's limit)
const ROLE_ADMINISTRATOR = 0

function hashPassword (password) {
  const salt = crypto.randomBytes(16)
  const hash = crypto.scryptSync(password, salt, 32, SCRYPT)
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$')
}

function verifyPassword (password, stored) {
  const parts = String(stored).split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [, N, r, p, salt, hash] = parts
  const expected = Buffer.from(hash, 'base64')
  const actual = crypto.scryptSync(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(N), r: Number(r), p: Number(p) })
  return crypto.timingSafeEqual(expected, actual)
}

// Upstream's isUserPasswordValid(): user.password_constraints.min_length .. 50 characters.
function passwordProblem (password, config) {
  const min = Number(config.user.password_constraints.min_length)
  const length = [...password].length
  if (length < min || length > PASSWORD_MAX_LENGTH || Buffer.byteLength(password) > 72) {
    return `${length} characters, must be ${min}..${PASSWORD_MAX_LENGTH} characters (72 bytes at most)`
  }
  return null
}

// Like upstream's generatePassword(): random lowercase letters.
function randomPassword (length = 16) {
  const letters = 'abcdefghijklmnopqrstuvwxyz'
  return Array.from(crypto.randomBytes(length), (b) => letters[b % letters.length]).join('')
}

function randomToken (alphabet, length) {
  return Array.from(crypto.randomBytes(length), (b) => alphabet[b % alphabet.length]).join('')
}

async function createOAuthClientIfNotExist (db, logger) {
  const row = await db.one('SELECT count(*)::int AS n FROM "oAuthClient"')
  if (row.n !== 0) return
  logger.info('Creating a default OAuth Client.')
  const id = randomToken('abcdefghijklmnopqrstuvwxyz0123456789', 32)
  const secret = randomToken('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 32)
  await db.run(`INSERT INTO "oAuthClient" ("clientId", "clientSecret", "grants") VALUES (${lit(id)}, ${lit(secret)}, ARRAY['password', 'refresh_token']);`)
  logger.info('Client id: ' + id)
  logger.info('Client secret: ' + secret)
}

// Upstream's createOAuthAdminIfNotExist(): only when there is no user at all. Like upstream,
// the password is logged, also when it came from PT_INITIAL_ROOT_PASSWORD.
async function createOAuthAdminIfNotExist (db, config, logger, env = process.env) {
  const row = await db.one('SELECT count(*)::int AS n FROM "user"')
  if (row.n !== 0) return
  logger.info('Creating the administrator.')
  let password = env.PT_INITIAL_ROOT_PASSWORD
  if (password) {
    const problem = passwordProblem(password, config)
    if (problem) throw new Error(`PT_INITIAL_ROOT_PASSWORD is not a valid password: ${problem}`)
  } else {
    password = randomPassword()
  }
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
  })
  await db.run(`
WITH u AS (
  INSERT INTO "user" ("username", "password", "email", "emailVerified", "role")
  VALUES ('root', ${lit(hashPassword(password))}, ${lit(config.admin.email)}, TRUE, ${ROLE_ADMINISTRATOR})
  RETURNING "id"
), a AS (
  INSERT INTO "account" ("name", "preferredUsername", "publicKey", "privateKey", "userId")
  SELECT 'root', 'root', ${lit(publicKey)}, ${lit(privateKey)}, u."id" FROM u
  RETURNING "id"
)
INSERT INTO "videoChannel" ("name", "preferredUsername", "accountId")
SELECT 'Main root channel', 'root_channel', a."id" FROM a;`, { single: true })
  logger.info('Username: root')
  logger.info('User password: ' + password)
}

async function localClient (db) {
  return db.one('SELECT "id", "clientId", "clientSecret" FROM "oAuthClient" ORDER BY "id" LIMIT 1')
}

// POST /api/v1/users/token, grant_type=password (and refresh_token).
async function grantToken (db, config, form) {
  const client = await db.one(`SELECT "id" FROM "oAuthClient" WHERE "clientId" = ${lit(form.client_id || '')} AND "clientSecret" = ${lit(form.client_secret || '')}`)
  if (!client) return { error: 'invalid_client', detail: 'Invalid client: client is invalid' }
  let user
  if (form.grant_type === 'password') {
    user = await db.one(`SELECT "id", "username", "password" FROM "user" WHERE lower("username") = lower(${lit(form.username || '')}) OR lower("email") = lower(${lit(form.username || '')}) LIMIT 1`)
    if (!user || !form.password || !verifyPassword(form.password, user.password)) {
      return { error: 'invalid_grant', detail: 'Invalid grant: user credentials are invalid' }
    }
  } else if (form.grant_type === 'refresh_token') {
    user = await db.one(`SELECT "userId" AS "id" FROM "oAuthToken" WHERE "refreshToken" = ${lit(form.refresh_token || '')} AND "refreshTokenExpiresAt" > now() AND "oAuthClientId" = ${client.id}`)
    if (!user) return { error: 'invalid_grant', detail: 'Invalid grant: refresh token is invalid' }
  } else {
    return { error: 'unsupported_grant_type', detail: 'Unsupported grant type: grant_type is invalid' }
  }
  const access = crypto.randomBytes(20).toString('hex')
  const refresh = crypto.randomBytes(20).toString('hex')
  const accessMs = durationMs(config.oauth2.token_lifetime.access_token)
  const refreshMs = durationMs(config.oauth2.token_lifetime.refresh_token)
  const now = Date.now()
  await db.run(`INSERT INTO "oAuthToken" ("accessToken", "accessTokenExpiresAt", "refreshToken", "refreshTokenExpiresAt", "oAuthClientId", "userId")
VALUES (${lit(access)}, ${lit(new Date(now + accessMs))}, ${lit(refresh)}, ${lit(new Date(now + refreshMs))}, ${client.id}, ${user.id});`)
  return {
    token: {
      token_type: 'Bearer',
      access_token: access,
      refresh_token: refresh,
      expires_in: Math.round(accessMs / 1000),
      refresh_token_expires_in: Math.round(refreshMs / 1000)
    }
  }
}

// The user behind "Authorization: Bearer <token>", or null.
async function authenticate (db, header) {
  const m = /^Bearer (\S+)$/i.exec(header || '')
  if (!m) return null
  return db.one(`SELECT u."id", u."username", u."email", u."role" FROM "oAuthToken" t JOIN "user" u ON u."id" = t."userId"
WHERE t."accessToken" = ${lit(m[1])} AND t."accessTokenExpiresAt" > now()`)
}

module.exports = {
  hashPassword, verifyPassword, passwordProblem, randomPassword, createOAuthClientIfNotExist,
  createOAuthAdminIfNotExist, localClient, grantToken, authenticate
}
