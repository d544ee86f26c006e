'use strict'
// fedictl TEST STAND-IN, NOT PeerTube: upstream's reset-password script.
//
//   cd /var/www/peertube/peertube-latest
//   sudo -u peertube NODE_CONFIG_DIR=/var/www/peertube/config NODE_ENV=production \
//     npm run reset-password -- -u root
//
// Like upstream it prints "New password?", reads ONE line from standard input (typed at a
// terminal, without echo, or piped: `printf '%s\n' "$pw" | npm run reset-password -- -u root`),
// checks it (user.password_constraints.min_length .. 50 characters), stores it, and prints
// "User password updated.". Unknown user, invalid password or no line: a message on stderr
// and exit 1 (upstream exits -1, i.e. 255).

const readline = require('readline')
const { Writable } = require('stream')
const { openForScript } = require('../core/boot')
const { lit } = require('../core/database')
const { hashPassword, passwordProblem } = require('../core/auth')

function parseArgs (argv) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '-u' || arg === '--user') return argv[i + 1]
    if (arg.startsWith('--user=')) return arg.slice('--user='.length)
  }
  return undefined
}

function die (message) {
  console.error(message)
  process.exit(1)
}

async function main () {
  const username = parseArgs(process.argv.slice(2))
  if (!username) die('All parameters are mandatory.')
  const { config, db } = openForScript()
  const user = await db.one(`SELECT "id" FROM "user" WHERE "username" = ${lit(username)}`)
  if (!user) die('Unknown user.')

  const mute = new Writable({ write (_chunk, _encoding, callback) { callback() } })
  const rl = readline.createInterface({ input: process.stdin, output: mute, terminal: Boolean(process.stdin.isTTY) })
  console.log('New password?')
  let answered = false
  rl.once('line', (password) => {
    answered = true
    rl.close()
    const problem = passwordProblem(password, config)
    if (problem) die('New password is invalid.')
    db.run(`UPDATE "user" SET "password" = ${lit(hashPassword(password))}, "updatedAt" = now() WHERE "id" = ${user.id};`)
      .then(() => {
        console.log('User password updated.')
        process.exit(0)
      })
      .catch((err) => die(String(err.message || err)))
  })
  rl.once('close', () => {
    if (!answered) die('No password given on standard input.')
  })
}

main().catch((err) => die(String((err && err.message) || err)))
