// fedictl test stand-in for Mastodon's streaming server (Node, no npm dependencies), NOT Mastodon.
// Started like upstream: NODE_ENV=production PORT=4000 /usr/bin/node ./streaming
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const environment = process.env.NODE_ENV || 'development';

// The npm dotenv package's rules (upstream uses it): KEY=VALUE lines, optional `export`, quotes,
// `#` comments; only "\n" and "\r" are unescaped inside double quotes; no $VAR expansion.
// Variables already in the environment win.
const DOTENV_LINE =
  /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;

export function parseDotenv(text) {
  const result = {};
  const lines = text.replace(/\r\n?/gm, '\n');
  for (const match of lines.matchAll(DOTENV_LINE)) {
    let value = (match[2] || '').trim();
    const quote = value[0];
    value = value.replace(/^(['"`])([\s\S]*)\1$/gm, '$2');
    if (quote === '"') value = value.replace(/\\n/g, '\n').replace(/\\r/g, '\r');
    result[match[1]] = value;
  }
  return result;
}

function loadDotenv(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return;
  }
  for (const [key, value] of Object.entries(parseDotenv(text))) {
    if (!Object.prototype.hasOwnProperty.call(process.env, key)) process.env[key] = value;
  }
}

// Upstream: ../.env.production only when NODE_ENV=production, else ../.env.
loadDotenv(path.resolve(here, '..', environment === 'production' ? '.env.production' : '.env'));

// The release's package.json names the Node it runs on (engines.node, ">=N"): refuse an older one, as
// the release's own dependencies would (Mastodon 4.6 and later need Node 22; Debian 13 ships 20).
const engines = JSON.parse(fs.readFileSync(path.resolve(here, '..', 'package.json'), 'utf8')).engines || {};
const wantedMajor = parseInt(String(engines.node || '>=0').replace(/^>=\s*/, ''), 10);
if (parseInt(process.versions.node, 10) < wantedMajor) {
  console.error(`[stand-in streaming] Node ${process.versions.node} is older than this release's engines.node ${engines.node}`);
  process.exit(1);
}

const versionFile = fs.readFileSync(path.resolve(here, '..', 'lib', 'mastodon', 'version.rb'), 'utf8');
const VERSION = (versionFile.match(/STANDIN_VERSION = '([^']+)'/) || [null, 'unknown'])[1];

// streaming/redis.js: REDIS_HOST (127.0.0.1), REDIS_PORT, REDIS_DB, REDIS_PASSWORD; REDIS_URL wins
// (redis://[user[:password]@]host[:port][/db] or unix:///path).
function redisConfig(env) {
  const config = {
    host: env.REDIS_HOST || '127.0.0.1',
    port: parseInt(env.REDIS_PORT || '6379', 10),
    db: parseInt(env.REDIS_DB || '0', 10),
    username: undefined,
    password: env.REDIS_PASSWORD || undefined,
    path: undefined,
  };
  if (env.REDIS_URL && env.REDIS_URL.startsWith('unix://')) {
    config.path = env.REDIS_URL.slice(7);
  } else if (env.REDIS_URL) {
    const url = new URL(env.REDIS_URL);
    config.host = url.hostname;
    config.port = parseInt(url.port || '6379', 10);
    config.username = url.username ? decodeURIComponent(url.username) : undefined;
    config.password = url.password ? decodeURIComponent(url.password) : config.password;
    if (url.pathname.length > 1) config.db = parseInt(url.pathname.slice(1), 10);
  }
  return config;
}

const redis = redisConfig(process.env);

function resp(...args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`;
}

// AUTH (when a password is set), SELECT (when db > 0) and PING over raw RESP; resolves to true
// when every answer is a simple string (+OK, +PONG), rejects with Redis' own error otherwise.
function pingRedis(timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const commands = [];
    if (redis.password) {
      commands.push(redis.username ? resp('AUTH', redis.username, redis.password) : resp('AUTH', redis.password));
    }
    if (redis.db) commands.push(resp('SELECT', redis.db));
    commands.push(resp('PING'));
    const socket = redis.path ? net.connect(redis.path) : net.connect(redis.port, redis.host);
    let buffer = '';
    const done = (error) => {
      socket.destroy();
      if (error) reject(error);
      else resolve(true);
    };
    socket.setTimeout(timeoutMs, () => done(new Error('timeout talking to Redis')));
    socket.on('error', done);
    socket.on('connect', () => socket.write(commands.join('')));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const replies = buffer.split('\r\n').filter((line) => line.length > 0);
      // Like ioredis: AUTH against a server without a password is a warning, not a failure.
      const failed = replies.find((line) => line.startsWith('-') && !/without any password configured|no password is set/.test(line));
      if (failed) done(new Error(failed.slice(1)));
      else if (replies.length >= commands.length) done();
    });
  });
}

const metrics = { websocket: 0, messagesSent: 0 };

function metricsText() {
  return [
    '# HELP mastodon_streaming_connected_clients The number of clients connected to the streaming server',
    '# TYPE mastodon_streaming_connected_clients gauge',
    `mastodon_streaming_connected_clients{type="websocket"} ${metrics.websocket}`,
    'mastodon_streaming_connected_clients{type="eventsource"} 0',
    '# HELP mastodon_streaming_messages_sent_total The total number of messages sent to clients',
    '# TYPE mastodon_streaming_messages_sent_total counter',
    `mastodon_streaming_messages_sent_total{type="websocket"} ${metrics.messagesSent}`,
    '# HELP mastodon_streaming_redis_messages_received_total The total number of messages received from Redis',
    '# TYPE mastodon_streaming_redis_messages_received_total counter',
    'mastodon_streaming_redis_messages_received_total 0',
    '# HELP mastodon_streaming_standin_info fedictl test stand-in, not Mastodon',
    '# TYPE mastodon_streaming_standin_info gauge',
    `mastodon_streaming_standin_info{version="${VERSION}"} 1`,
    '',
  ].join('\n');
}

function log(message) {
  process.stdout.write(`[stand-in streaming] ${message}\n`);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/api/v1/streaming/health') {
    pingRedis().then(
      () => {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'private, no-store' });
        res.end('OK');
      },
      (error) => {
        log(`health: Redis unavailable: ${error.message}`);
        res.writeHead(503, { 'Content-Type': 'text/plain', 'Cache-Control': 'private, no-store' });
        res.end('Redis unavailable');
      },
    );
  } else if (url.pathname === '/metrics') {
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(metricsText());
  } else if (url.pathname.startsWith('/api/v1/streaming')) {
    res.writeHead(401, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'Missing access token' }));
  } else {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'Not found' }));
  }
});

// WebSocket on /api/v1/streaming: the RFC 6455 handshake, then ping/pong and close only.
server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  if (!new URL(req.url, 'http://localhost').pathname.startsWith('/api/v1/streaming') || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  metrics.websocket += 1;
  socket.on('data', (frame) => {
    const opcode = frame[0] & 0x0f;
    if (opcode === 0x8) socket.end(Buffer.from([0x88, 0x00]));
    else if (opcode === 0x9) socket.write(Buffer.from([0x8a, 0x00]));
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    metrics.websocket -= 1;
  });
});

const sockets = new Set();
server.on('connection', (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
});

if (process.env.SOCKET) {
  server.listen(process.env.SOCKET, () => log(`Mastodon ${VERSION} stand-in listening on ${process.env.SOCKET}`));
} else {
  const port = +(process.env.PORT || 4000);
  let bind = process.env.BIND ?? '127.0.0.1';
  if (bind.startsWith('[') && bind.endsWith(']')) bind = bind.slice(1, -1);
  server.listen(port, bind, () => log(`Mastodon ${VERSION} stand-in listening on ${bind}:${port}`));
}

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log(`${signal} received, stopping`);
    server.close(() => process.exit(0));
    for (const socket of sockets) socket.destroy();
  });
}
