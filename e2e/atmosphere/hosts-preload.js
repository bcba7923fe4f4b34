'use strict'

// Loaded with `node -r ./hosts-preload.js` before the PDS. It makes the host
// names listed in ATMO_HOST_ALIASES (comma separated) resolve to 127.0.0.1,
// the way an /etc/hosts entry would, without touching the machine. The PDS
// fetches discoverable OAuth client metadata from
// https://statusphere.ioproxy.dev:<port>/@/client-metadata.json, a name that
// must not exist in real DNS and that the PDS refuses to take as an IP
// address, so the test proxy can only be reached through a name like this.
//
// Node's net and tls modules, and undici behind global fetch, look names up
// through the `lookup` property of the dns module at connect time, so
// replacing that property is enough. dns.promises.lookup is replaced too for
// code that resolves names itself.

const dns = require('node:dns')

const LOOPBACK = '127.0.0.1'

function normalize(name) {
  return String(name).trim().toLowerCase().replace(/\.$/, '')
}

const aliases = new Set(
  (process.env.ATMO_HOST_ALIASES || '')
    .split(',')
    .map(normalize)
    .filter((name) => name !== ''),
)

function isAlias(hostname) {
  return typeof hostname === 'string' && aliases.has(normalize(hostname))
}

// The answer has the shape that the caller asked for: with {all: true} an
// array of {address, family}, otherwise (address, family). The alias always
// maps to IPv4 loopback; test servers listen on 127.0.0.1.
function answer(options) {
  if (options && typeof options === 'object' && options.all) {
    return [[{ address: LOOPBACK, family: 4 }]]
  }
  return [LOOPBACK, 4]
}

if (aliases.size > 0) {
  const originalLookup = dns.lookup

  // dns.lookup(hostname[, options], callback) where options is a number (the
  // family) or an object ({family, all, hints, order, verbatim}).
  dns.lookup = function lookup(hostname, options, callback) {
    if (typeof options === 'function') {
      callback = options
      options = undefined
    }
    if (!isAlias(hostname) || typeof callback !== 'function') {
      return originalLookup.apply(this, arguments)
    }
    const args = answer(options)
    // Callbacks of dns.lookup never run synchronously.
    process.nextTick(() => callback(null, ...args))
    return {}
  }

  const originalPromiseLookup = dns.promises.lookup
  dns.promises.lookup = async function lookup(hostname, options) {
    if (!isAlias(hostname)) {
      return originalPromiseLookup.apply(this, arguments)
    }
    if (options && typeof options === 'object' && options.all) {
      return [{ address: LOOPBACK, family: 4 }]
    }
    return { address: LOOPBACK, family: 4 }
  }
}
