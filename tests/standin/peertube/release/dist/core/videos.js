'use strict'
// fedictl TEST STAND-IN, NOT PeerTube.
//
// Video upload and HLS transcoding with the real ffmpeg (Debian's, from PATH). Upstream
// answers an upload at once and transcodes in a job queue; the stand-in transcodes before it
// answers, so the video is already "Published" (state 1) when POST /api/v1/videos/upload
// returns. The layout on disk is upstream's: the original waits in storage.tmp, the HLS files
// go to <storage.streaming_playlists>/hls/<uuid>/ (master.m3u8, <height>.m3u8 and
// <height>-NNN.ts segments), which nginx serves under /static/streaming-playlists/hls/.

const { spawn } = require('child_process')
const crypto = require('crypto')
const fs = require('fs')
const path = require('path')
const { lit, LAST_MIGRATION_VERSION } = require('./database')

const STATES = { 1: 'Published', 2: 'To transcode', 7: 'Transcoding failed' }
const EXTENSIONS = ['.mp4', '.webm', '.ogv', '.mkv', '.mov', '.avi', '.m4v', '.ts', '.mpeg', '.mpg', '.flv', '.3gp']
const HAS_STORAGE_BYTES = LAST_MIGRATION_VERSION >= 1125 // the v8.3 migration's column

// ---- multipart/form-data (what upstream's legacy upload and `curl -F` send) ------------------

function parseMultipart (body, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || '')
  if (!m) return null
  const delimiter = Buffer.from(`--${m[1] || m[2]}`)
  const fields = {}
  const files = {}
  let pos = body.indexOf(delimiter)
  while (pos !== -1) {
    pos += delimiter.length
    if (body.subarray(pos, pos + 2).toString() === '--') break
    const headerEnd = body.indexOf('\r\n\r\n', pos)
    if (headerEnd === -1) return null
    const headers = body.toString('utf8', pos, headerEnd)
    const next = body.indexOf(delimiter, headerEnd + 4)
    if (next === -1) return null
    const content = body.subarray(headerEnd + 4, next - 2) // minus the CRLF before the delimiter
    const name = /name="([^"]*)"/i.exec(headers)
    const filename = /filename="([^"]*)"/i.exec(headers)
    if (name && filename) files[name[1]] = { filename: filename[1], data: content }
    else if (name) fields[name[1]] = content.toString('utf8')
    pos = next
  }
  return { fields, files }
}

// ---- ffprobe / ffmpeg ------------------------------------------------------------------------

function run (command, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const out = []
    const err = []
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (c) => out.push(c))
    child.stderr.on('data', (c) => err.push(c))
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(e.code === 'ENOENT' ? `${command} is missing: install ffmpeg` : e.message))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'))
      else reject(new Error(`${command} failed (${signal || 'exit ' + code}): ${Buffer.concat(err).toString('utf8').trim().slice(-500)}`))
    })
  })
}

async function probe (file) {
  const out = await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file], 60e3)
  const info = JSON.parse(out)
  const video = (info.streams || []).find((s) => s.codec_type === 'video')
  if (!video) throw new Error('no video stream')
  const [num, den] = String(video.avg_frame_rate || video.r_frame_rate || '0/1').split('/').map(Number)
  return {
    width: video.width,
    height: video.height,
    fps: den ? Math.round(num / den) : -1,
    duration: Math.round(Number((info.format && info.format.duration) || video.duration || 0))
  }
}

// One HLS variant at the original resolution (upstream's always_transcode_original_resolution).
async function transcodeToHls (input, dir, height, config) {
  const threads = String(Number(config.transcoding.threads) || 1)
  await run('ffmpeg', [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y', '-i', input,
    '-map', '0:v:0', '-map', '0:a:0?',
    '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-vf', 'scale=trunc(iw/2)*2:trunc(ih/2)*2',
    '-c:a', 'aac', '-b:a', '128k', '-threads', threads,
    '-f', 'hls', '-hls_time', '4', '-hls_playlist_type', 'vod',
    '-hls_segment_filename', path.join(dir, `${height}-%03d.ts`),
    '-master_pl_name', 'master.m3u8',
    path.join(dir, `${height}.m3u8`)
  ], 10 * 60e3)
}

function directoryBytes (dir) {
  let total = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    total += entry.isDirectory() ? directoryBytes(full) : fs.statSync(full).size
  }
  return total
}

function hlsDirectory (config, uuid) {
  return path.join(config.storage.streaming_playlists, 'hls', uuid)
}

// ---- the upload ---------------------------------------------------------------------------

class UploadError extends Error {
  constructor (status, message) {
    super(message)
    this.status = status
  }
}

async function upload ({ db, config, logger, user, body, contentType, webserverUrl }) {
  const form = parseMultipart(body, contentType)
  if (!form) throw new UploadError(400, 'Send the video as multipart/form-data with a "videofile" file field')
  const file = form.files.videofile
  if (!file || !file.data.length) throw new UploadError(400, 'Should have a videofile file')
  const name = (form.fields.name || '').trim()
  if (name.length < 3 || name.length > 120) throw new UploadError(400, 'Video name should be between 3 and 120 characters')
  const ext = (path.extname(file.filename).toLowerCase() || '.mp4')
  if (!EXTENSIONS.includes(ext)) throw new UploadError(400, `This file extension is not supported: ${ext}`)

  // Upstream requires channelId; the stand-in falls back to the user's first channel.
  const channelWhere = form.fields.channelId ? `AND c."id" = ${lit(Number(form.fields.channelId) || 0)}` : ''
  const channel = await db.one(`SELECT c."id" FROM "videoChannel" c JOIN "account" a ON a."id" = c."accountId"
WHERE a."userId" = ${user.id} ${channelWhere} ORDER BY c."id" LIMIT 1`)
  if (!channel) throw new UploadError(403, 'Cannot find this video channel or it is not yours')

  const uuid = crypto.randomUUID()
  fs.mkdirSync(config.storage.tmp, { recursive: true })
  const original = path.join(config.storage.tmp, `${uuid}-original${ext}`)
  fs.writeFileSync(original, file.data)
  try {
    return await transcodeAndPublish({ db, config, logger, original, uuid, name, channel, webserverUrl })
  } finally {
    // Upstream keeps the original only with transcoding.original_file.keep.
    if (config.transcoding.original_file.keep && fs.existsSync(original)) {
      fs.mkdirSync(config.storage.original_video_files, { recursive: true })
      fs.renameSync(original, path.join(config.storage.original_video_files, `${uuid}${ext}`))
    } else {
      fs.rmSync(original, { force: true })
    }
  }
}

async function transcodeAndPublish ({ db, config, logger, original, uuid, name, channel, webserverUrl }) {
  let info
  try {
    info = await probe(original)
  } catch (err) {
    throw new UploadError(422, `Video file unreadable: ${err.message}`)
  }

  const [video] = await db.returning(`INSERT INTO "video" ("uuid", "name", "channelId", "state", "duration")
VALUES (${lit(uuid)}::uuid, ${lit(name)}, ${channel.id}, 2, ${info.duration}) RETURNING "id"`)
  logger.info('Video %s (%s) uploaded: %sx%s, %s s; transcoding to HLS.', uuid, name, info.width, info.height, info.duration)

  const finalDir = hlsDirectory(config, uuid)
  const workDir = `${finalDir}.tmp`
  try {
    fs.rmSync(workDir, { recursive: true, force: true })
    fs.mkdirSync(workDir, { recursive: true })
    await transcodeToHls(original, workDir, info.height, config)
    fs.renameSync(workDir, finalDir)
  } catch (err) {
    fs.rmSync(workDir, { recursive: true, force: true })
    await db.run(`UPDATE "video" SET "state" = 7, "updatedAt" = now() WHERE "id" = ${video.id};`)
    logger.error('Transcoding of video %s failed: %s', uuid, err.message)
    throw new UploadError(500, `Transcoding failed: ${err.message}`)
  }

  const variant = `${info.height}.m3u8`
  const segmentsBytes = fs.readdirSync(finalDir).filter((f) => f.endsWith('.ts'))
    .reduce((sum, f) => sum + fs.statSync(path.join(finalDir, f)).size, 0)
  const playlistUrl = `${webserverUrl}/static/streaming-playlists/hls/${uuid}/master.m3u8`
  const bytesColumn = HAS_STORAGE_BYTES ? ', "storageBytes"' : ''
  const bytesValue = HAS_STORAGE_BYTES ? `, ${directoryBytes(finalDir)}` : ''
  await db.run(`WITH p AS (
  INSERT INTO "videoStreamingPlaylist" ("type", "playlistFilename", "playlistUrl", "videoId"${bytesColumn})
  VALUES (1, 'master.m3u8', ${lit(playlistUrl)}, ${video.id}${bytesValue}) RETURNING "id"
)
INSERT INTO "videoFile" ("resolution", "size", "extname", "filename", "fps", "videoStreamingPlaylistId")
SELECT ${info.height}, ${segmentsBytes}, '.ts', ${lit(variant)}, ${info.fps}, p."id" FROM p;
UPDATE "video" SET "state" = 1, "publishedAt" = now(), "updatedAt" = now() WHERE "id" = ${video.id};`, { single: true })
  logger.info('Video %s published: %s', uuid, playlistUrl)
  return { id: video.id, uuid, shortUUID: shortUUID(uuid) }
}

// ---- JSON as upstream's API shapes it (a subset) -------------------------------------------

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function shortUUID (uuid) {
  let n = BigInt('0x' + uuid.replace(/-/g, ''))
  let out = ''
  while (n > 0n) {
    out = BASE58[Number(n % 58n)] + out
    n /= 58n
  }
  return out
}

function fromShortUUID (short) {
  let n = 0n
  for (const c of short) {
    const i = BASE58.indexOf(c)
    if (i === -1) return null
    n = n * 58n + BigInt(i)
  }
  const hex = n.toString(16).padStart(32, '0')
  if (hex.length !== 32) return null
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const VIDEO_SELECT = `SELECT v."id", v."uuid", v."name", v."state", v."duration", v."privacy", v."createdAt", v."publishedAt",
  c."id" AS "channelId", c."preferredUsername" AS "channelName", c."name" AS "channelDisplayName",
  a."preferredUsername" AS "accountName"
FROM "video" v JOIN "videoChannel" c ON c."id" = v."channelId" JOIN "account" a ON a."id" = c."accountId"`

function formatVideo (row, host, url) {
  return {
    id: row.id,
    uuid: row.uuid,
    shortUUID: shortUUID(row.uuid),
    url: `${url}/videos/watch/${row.uuid}`,
    name: row.name,
    duration: row.duration,
    isLocal: true,
    privacy: { id: row.privacy, label: row.privacy === 1 ? 'Public' : 'Other' },
    state: { id: row.state, label: STATES[row.state] || 'Unknown' },
    createdAt: row.createdAt,
    publishedAt: row.publishedAt,
    account: { name: row.accountName, host },
    channel: { id: row.channelId, name: row.channelName, displayName: row.channelDisplayName, host }
  }
}

async function findVideo (db, idOrUUID) {
  let where
  if (/^\d+$/.test(idOrUUID)) where = `v."id" = ${Number(idOrUUID)}`
  else if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrUUID)) where = `v."uuid" = ${lit(idOrUUID.toLowerCase())}::uuid`
  else {
    const uuid = fromShortUUID(idOrUUID)
    if (!uuid) return null
    where = `v."uuid" = ${lit(uuid)}::uuid`
  }
  return db.one(`${VIDEO_SELECT} WHERE ${where}`)
}

async function videoDetails (db, row, host, url) {
  const bytes = HAS_STORAGE_BYTES ? ', p."storageBytes"' : ''
  const playlists = await db.query(`SELECT p."id", p."type", p."playlistUrl"${bytes},
  coalesce((SELECT json_agg(json_build_object('resolution', f."resolution", 'size', f."size", 'fps', f."fps", 'filename', f."filename") ORDER BY f."resolution" DESC)
            FROM "videoFile" f WHERE f."videoStreamingPlaylistId" = p."id"), '[]'::json) AS "files"
FROM "videoStreamingPlaylist" p WHERE p."videoId" = ${row.id} ORDER BY p."id"`)
  return {
    ...formatVideo(row, host, url),
    files: [],
    streamingPlaylists: playlists.map((p) => ({
      id: p.id,
      type: p.type,
      playlistUrl: p.playlistUrl,
      ...(HAS_STORAGE_BYTES ? { storageBytes: p.storageBytes } : {}),
      files: p.files.map((f) => ({
        resolution: { id: f.resolution, label: `${f.resolution}p` },
        size: f.size,
        fps: f.fps,
        playlistUrl: `${url}/static/streaming-playlists/hls/${row.uuid}/${f.filename}`
      }))
    }))
  }
}

module.exports = {
  parseMultipart, probe, upload, UploadError, findVideo, videoDetails, formatVideo, VIDEO_SELECT,
  hlsDirectory, directoryBytes, shortUUID, fromShortUUID, HAS_STORAGE_BYTES
}
