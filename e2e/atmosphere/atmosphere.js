'use strict'

// A local AT Protocol "atmosphere": a PLC directory and a PDS on localhost,
// with a few accounts, for ioproxy's end-to-end tests (e2e/atmo starts it)
// and for the one-command local run.
//
// Usage (Node 20):
//
//   node -r ./hosts-preload.js atmosphere.js \
//     --plc-port 2582 --pds-port 2583 --data-dir ./data \
//     --account alice.test:hunter22 --account bob.test:hunter22
//
// Every flag has an environment twin: ATMO_PLC_PORT, ATMO_PDS_PORT,
// ATMO_DATA_DIR and ATMO_ACCOUNTS (a JSON array of {handle, password, email}).
// Port 0 (the default) picks a free port.
//
// When everything is up it prints exactly one JSON line on stdout:
//
//   {"ready":true,"plc":"http://localhost:P","pds":"http://localhost:Q",
//    "accounts":[{"handle":"alice.test","did":"did:plc:…","password":"…",
//    "email":"…"}],"adminPassword":"…","dataDir":"…"}
//
// or {"ready":false,"error":"…"} and exits with status 1. It then runs until
// SIGTERM, SIGINT or the end of stdin, so that a Go test that dies without
// cleaning up (its end of the pipe closes) never leaves it running. Pass
// --no-stdin to run it in the background with stdin from /dev/null.
//
// The data directory survives restarts: the PDS keeps its SQLite files there,
// the secrets are generated once and stored in secrets.json, and, because
// @did-plc/server only has an in-memory database for local use, every PLC
// operation is appended to plc-operations.jsonl and replayed at the next
// start. When the PDS comes back on another port, the DID documents of its
// accounts are updated to point at the new URL.

// Some libraries print to stdout with console.log. stdout carries the one
// ready line that the Go side waits for, so all other output goes to stderr.
console.log = console.error
console.info = console.error
console.debug = console.error
// The PDS logs through pino, to stdout, when LOG_ENABLED is set. Send those
// logs to stderr too.
if (process.env.LOG_ENABLED && !process.env.LOG_DESTINATION) {
  process.env.LOG_DESTINATION = '/dev/stderr'
}

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const net = require('node:net')
const { parseArgs } = require('node:util')

const pds = require('@atproto/pds')
const plc = require('@did-plc/server')

function usage(message) {
  throw new Error(
    `${message}\nusage: node -r ./hosts-preload.js atmosphere.js ` +
      '[--plc-port N] [--pds-port N] --data-dir DIR ' +
      '[--account handle:password[:email]]... [--no-stdin]',
  )
}

function parsePort(value, name) {
  if (value === undefined || value === '') return 0
  const port = Number(value)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    usage(`${name}: ${JSON.stringify(value)} is not a port number`)
  }
  return port
}

function parseConfig() {
  const { values } = parseArgs({
    options: {
      'plc-port': { type: 'string' },
      'pds-port': { type: 'string' },
      'data-dir': { type: 'string' },
      account: { type: 'string', multiple: true },
      'no-stdin': { type: 'boolean' },
    },
    strict: true,
  })
  const env = process.env

  const dataDir = values['data-dir'] ?? env.ATMO_DATA_DIR
  if (!dataDir) usage('a data directory is required (--data-dir or ATMO_DATA_DIR)')

  const accounts = []
  if (env.ATMO_ACCOUNTS) {
    let parsed
    try {
      parsed = JSON.parse(env.ATMO_ACCOUNTS)
    } catch (err) {
      usage(`ATMO_ACCOUNTS is not JSON: ${err.message}`)
    }
    if (parsed !== null && !Array.isArray(parsed)) {
      usage('ATMO_ACCOUNTS must be a JSON array')
    }
    accounts.push(...(parsed ?? []))
  }
  for (const spec of values.account ?? []) {
    // A handle has no colon, so the first one ends it; the password may have
    // colons, the email may not.
    const i = spec.indexOf(':')
    if (i <= 0) usage(`--account ${JSON.stringify(spec)}: write handle:password[:email]`)
    const handle = spec.slice(0, i)
    let password = spec.slice(i + 1)
    let email
    const j = password.lastIndexOf(':')
    if (j >= 0 && password.slice(j + 1).includes('@')) {
      email = password.slice(j + 1)
      password = password.slice(0, j)
    }
    accounts.push({ handle, password, email })
  }
  for (const a of accounts) {
    if (!a || typeof a.handle !== 'string' || !a.handle.endsWith('.test')) {
      usage(`account ${JSON.stringify(a)}: the handle must end with .test (the PDS serves only .test handles)`)
    }
    if (typeof a.password !== 'string' || a.password === '') {
      usage(`account ${a.handle}: a password is required`)
    }
    a.handle = a.handle.toLowerCase()
    a.email ||= `${a.handle.replace(/\.test$/, '').replace(/\./g, '-')}@mail.example.com`
  }

  return {
    plcPort: parsePort(values['plc-port'] ?? env.ATMO_PLC_PORT, 'PLC port'),
    pdsPort: parsePort(values['pds-port'] ?? env.ATMO_PDS_PORT, 'PDS port'),
    dataDir: path.resolve(dataDir),
    accounts,
    watchStdin: !values['no-stdin'],
  }
}

// freePort asks the kernel for a free port. The PDS must know its port before
// it starts, because its public URL (and so its OAuth issuer) contains it.
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// loadSecrets returns the PDS secrets of this data directory, generating them
// on the first run. They must not change across restarts: the PLC rotation
// key signs the updates of existing DIDs, and the JWT secret signs existing
// sessions.
function loadSecrets(dataDir) {
  const file = path.join(dataDir, 'secrets.json')
  if (fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  }
  const hex = (n) => crypto.randomBytes(n).toString('hex')
  const secrets = {
    jwtSecret: hex(32),
    adminPassword: hex(16),
    dpopSecret: hex(32),
    plcRotationKeyK256PrivateKeyHex: hex(32),
  }
  fs.writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 })
  return secrets
}

// persistentPlcDatabase is the in-memory PLC database, with every accepted
// operation appended to a file and replayed on start.
async function persistentPlcDatabase(dataDir) {
  const file = path.join(dataDir, 'plc-operations.jsonl')
  const db = plc.Database.mock()
  if (fs.existsSync(file)) {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)
    for (const [n, line] of lines.entries()) {
      let entry
      try {
        entry = JSON.parse(line)
      } catch (err) {
        // A crash can cut the last line short; everything before it is good.
        if (n === lines.length - 1) break
        throw new Error(`${file}:${n + 1}: ${err.message}`)
      }
      await db.validateAndAddOp(entry.did, entry.operation)
    }
  }
  const validateAndAddOp = db.validateAndAddOp.bind(db)
  db.validateAndAddOp = async (did, operation) => {
    await validateAndAddOp(did, operation)
    fs.appendFileSync(file, JSON.stringify({ did, operation }) + '\n')
  }
  return db
}

// repointDids makes the DID documents of the accounts created by an earlier
// run point at this run's PDS URL. The PLC log holds one entry per DID that
// this PDS ever created.
async function repointDids(db, server) {
  const { publicUrl } = server.ctx.cfg.service
  for (const did of Object.keys(db.contents)) {
    const last = await db.lastOpForDid(did)
    if (!last || last.type === 'plc_tombstone') continue
    const endpoint =
      last.services?.atproto_pds?.endpoint ?? // plc_operation
      last.service // legacy create
    if (endpoint === publicUrl) continue
    await server.ctx.plcClient.updatePds(did, server.ctx.plcRotationKey, publicUrl)
    // The PDS caches DID documents in its data directory; refresh it.
    await server.ctx.idResolver.did.resolve(did, true).catch(() => {})
  }
}

async function xrpc(base, method, { body, query } = {}) {
  const url = new URL(`/xrpc/${method}`, base)
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v)
  const res = await fetch(url, {
    method: body ? 'POST' : 'GET',
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = { message: text }
  }
  return { ok: res.ok, status: res.status, json }
}

// ensureAccount creates the account, or, on a reused data directory, checks
// that the existing one still takes this password.
async function ensureAccount(pdsUrl, account) {
  const { handle, email, password } = account
  const created = await xrpc(pdsUrl, 'com.atproto.server.createAccount', {
    body: { handle, email, password },
  })
  if (created.ok) return created.json.did

  const session = await xrpc(pdsUrl, 'com.atproto.server.createSession', {
    body: { identifier: handle, password },
  })
  if (session.ok) return session.json.did

  const exists = await xrpc(pdsUrl, 'com.atproto.identity.resolveHandle', {
    query: { handle },
  })
  if (exists.ok) {
    throw new Error(
      `account ${handle} (${exists.json.did}) already exists in this data ` +
        `directory with another password: ${session.status} ${JSON.stringify(session.json)}`,
    )
  }
  throw new Error(
    `create account ${handle}: ${created.status} ${JSON.stringify(created.json)}`,
  )
}

async function main() {
  const cfg = parseConfig()
  fs.mkdirSync(cfg.dataDir, { recursive: true })
  const pdsDir = path.join(cfg.dataDir, 'pds')
  const blobDir = path.join(cfg.dataDir, 'blobs')
  fs.mkdirSync(pdsDir, { recursive: true })
  fs.mkdirSync(blobDir, { recursive: true })
  const secrets = loadSecrets(cfg.dataDir)

  const stoppers = []
  let stopping = null
  const stop = (code) => {
    stopping ??= (async () => {
      // Stop in reverse order of start: the PDS first, as it talks to PLC.
      for (const s of stoppers.reverse()) {
        await s().catch((err) => console.error('atmosphere: stop:', err))
      }
      process.exit(code)
    })()
    // Never hang on the way out.
    setTimeout(() => process.exit(code), 5000).unref()
    return stopping
  }
  process.on('SIGTERM', () => stop(0))
  process.on('SIGINT', () => stop(0))
  if (cfg.watchStdin) {
    process.stdin.on('data', () => {})
    process.stdin.on('end', () => stop(0))
    process.stdin.on('error', () => stop(0))
    process.stdin.resume()
  }

  try {
    const db = await persistentPlcDatabase(cfg.dataDir)
    const plcServer = plc.PlcServer.create({ db, port: cfg.plcPort })
    const plcHttp = await plcServer.start()
    stoppers.push(() => plcServer.destroy())
    const plcUrl = `http://localhost:${plcHttp.address().port}`

    const pdsPort = cfg.pdsPort || (await freePort())
    const env = {
      port: pdsPort,
      hostname: 'localhost',
      devMode: true,
      dataDirectory: pdsDir,
      blobstoreDiskLocation: blobDir,
      didPlcUrl: plcUrl,
      serviceHandleDomains: ['.test'],
      inviteRequired: false,
      ...secrets,
    }
    const server = await pds.PDS.create(pds.envToCfg(env), pds.envToSecrets(env))
    await repointDids(db, server)
    await server.start()
    stoppers.push(() => server.destroy())
    const pdsUrl = server.ctx.cfg.service.publicUrl

    const accounts = []
    for (const a of cfg.accounts) {
      const did = await ensureAccount(pdsUrl, a)
      accounts.push({ handle: a.handle, did, password: a.password, email: a.email })
    }

    process.stdout.write(
      JSON.stringify({
        ready: true,
        plc: plcUrl,
        pds: pdsUrl,
        accounts,
        adminPassword: secrets.adminPassword,
        dataDir: cfg.dataDir,
      }) + '\n',
    )
  } catch (err) {
    console.error('atmosphere:', err)
    process.stdout.write(
      JSON.stringify({ ready: false, error: String(err?.message ?? err) }) + '\n',
    )
    await stop(1)
  }
}

main().catch((err) => {
  // A bad flag or environment variable: nothing runs yet.
  console.error('atmosphere:', err.message ?? err)
  process.stdout.write(
    JSON.stringify({ ready: false, error: String(err?.message ?? err) }) + '\n',
  )
  process.exit(2)
})
