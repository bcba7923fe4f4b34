package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts of the writes that must be atomic across replicas.
// Redis runs a script alone: no other command runs while it does. Every
// script takes the prefix as ARGV[1], and the invalidation channel and
// this replica's instance name where it deletes sessions.

// dropSession deletes the session of ref id with its proxy key and its
// places in the sets, and tells the other replicas. (Every "id" and
// "state" in the scripts is a ref.)
const dropSession = `
local function drop(prefix, id, channel, instance)
  local skey = prefix .. 's:' .. id
  local f = redis.call('HMGET', skey, 'p', 'a')
  redis.call('DEL', skey)
  if f[1] then redis.call('DEL', prefix .. 'p:' .. f[1]) end
  if f[2] then redis.call('ZREM', prefix .. 'a:' .. f[2], id) end
  redis.call('ZREM', prefix .. 'all', id)
  redis.call('PUBLISH', channel, instance .. ' ' .. id)
end
`

// createScript stores a new session, after deleting the oldest sessions
// of its account on its host beyond the per-account limit, unless the
// store is full. The account's set gets the TTL of its longest-lived
// session (PEXPIRETIME: Redis 7). It returns {"ok", then the id and the
// sealed value of each evicted session}, {"full", count} or {"exists"}.
//
// KEYS: session, proxy, account, all.
// ARGV: prefix, channel, instance, id, sealed session, proxy key,
// account hash, created score, expire-at millis ("" for never), expiry
// score, max per account, max sessions.
var createScript = redis.NewScript(dropSession + `
local prefix, channel, instance = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return {'exists'}
end
-- The account's sessions, oldest first; ids whose session Redis expired
-- are dropped from the sets here.
local mine = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('EXISTS', prefix .. 's:' .. m) == 1 then
    table.insert(mine, m)
  else
    redis.call('ZREM', KEYS[3], m)
    redis.call('ZREM', KEYS[4], m)
  end
end
local evict = #mine - (tonumber(ARGV[11]) - 1)
if evict < 0 then evict = 0 end
local total = redis.call('ZCARD', KEYS[4]) - evict
if total >= tonumber(ARGV[12]) then
  return {'full', tostring(total)}
end
local out = {'ok'}
for i = 1, evict do
  table.insert(out, mine[i])
  table.insert(out, redis.call('HGET', prefix .. 's:' .. mine[i], 'v'))
  drop(prefix, mine[i], channel, instance)
end
-- The account's set expires with the last of its sessions: Redis
-- expires a session's hash before the sweep comes, and the sweep, which
-- learns the account from the hash, cannot clean the set then.
local forever, last = ARGV[9] == '', tonumber(ARGV[9]) or 0
for i = evict + 1, #mine do
  local at = redis.call('PEXPIRETIME', prefix .. 's:' .. mine[i])
  if at < 0 then forever = true elseif at > last then last = at end
end
redis.call('HSET', KEYS[1], 'v', ARGV[5], 'p', ARGV[6], 'a', ARGV[7])
redis.call('SET', KEYS[2], ARGV[4])
if ARGV[9] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[9])
  redis.call('PEXPIREAT', KEYS[2], ARGV[9])
end
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[4])
if forever then
  redis.call('PERSIST', KEYS[3])
else
  redis.call('PEXPIREAT', KEYS[3], last)
end
redis.call('ZADD', KEYS[4], ARGV[10], ARGV[4])
return out
`)

// deleteScript deletes one session.
//
// ARGV: prefix, channel, instance, id.
var deleteScript = redis.NewScript(dropSession + `
drop(ARGV[1], ARGV[4], ARGV[2], ARGV[3])
return 1
`)

// expireSessionsScript deletes up to ARGV[5] sessions whose expiry is
// before ARGV[4] and returns their ids.
//
// KEYS: all. ARGV: prefix, channel, instance, now score, limit.
var expireSessionsScript = redis.NewScript(dropSession + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  drop(ARGV[1], id, ARGV[2], ARGV[3])
end
return ids
`)

// dropPending deletes the pending sign-in state and its places in the
// sets, and returns its sealed value (false when there was none).
const dropPending = `
local function take(prefix, state)
  local qkey = prefix .. 'q:' .. state
  local f = redis.call('HMGET', qkey, 'v', 'c', 'i')
  redis.call('DEL', qkey)
  redis.call('ZREM', prefix .. 'qall', state)
  if f[2] and f[2] ~= '' then redis.call('ZREM', prefix .. 'qc:' .. f[2], state) end
  if f[3] then redis.call('ZREM', prefix .. 'qi:' .. f[3], state) end
  return f[1]
end
`

// putPendingScript stores a pending sign-in unless that would go over a
// limit: in all, for its client, for its issuer group. Places of expired
// sign-ins in the client's and the issuer's sets are freed first; the
// total frees them when the sweep deletes them. It returns {"ok"},
// {"exists"} or {"full", which, count}.
//
// KEYS: pending, pending all, client set ("" without a client), issuer
// set. ARGV: prefix, state, sealed value, client hash, issuer hash, now
// score, expiry score, expire-at millis, max pending, max per client,
// max per issuer.
var putPendingScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local now = '(' .. ARGV[6]
local total = redis.call('ZCARD', KEYS[2])
if total >= tonumber(ARGV[9]) then return {'full', 'all', tostring(total)} end
if ARGV[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local n = redis.call('ZCARD', KEYS[3])
  if n >= tonumber(ARGV[10]) then return {'full', 'client', tostring(n)} end
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local n = redis.call('ZCARD', KEYS[4])
if n >= tonumber(ARGV[11]) then return {'full', 'issuer', tostring(n)} end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'c', ARGV[4], 'i', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[2])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[2])
  redis.call('PEXPIREAT', KEYS[3], ARGV[8], 'GT')
  if redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIREAT', KEYS[3], ARGV[8]) end
end
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[2])
redis.call('PEXPIREAT', KEYS[4], ARGV[8], 'GT')
if redis.call('PTTL', KEYS[4]) < 0 then redis.call('PEXPIREAT', KEYS[4], ARGV[8]) end
return {'ok'}
`)

// takePendingScript deletes and returns a pending sign-in.
//
// ARGV: prefix, state.
var takePendingScript = redis.NewScript(dropPending + `
return take(ARGV[1], ARGV[2])
`)

// expirePendingScript deletes up to ARGV[3] pending sign-ins whose
// expiry is before ARGV[2], and says how many.
//
// KEYS: pending all. ARGV: prefix, now score, limit.
var expirePendingScript = redis.NewScript(dropPending + `
local states = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, state in ipairs(states) do
  take(ARGV[1], state)
end
return #states
`)

// releaseScript frees a lock if the caller's token still holds it.
//
// KEYS: lock. ARGV: token.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// resealSecretScript replaces a secret's sealed value (ARGV[1]) with the
// same secret sealed anew (ARGV[2]), unless it changed meanwhile.
var resealSecretScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
end
return 0
`)
