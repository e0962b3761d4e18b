package fleet

import "github.com/redis/go-redis/v9"

// The scripts read Redis's own clock (TIME) for every expiry: one clock
// for the whole fleet, so that no proxy's clock (host or corrected) decides
// when another proxy's lease has lapsed. Tickets are the proxies'
// corrected wall time in microseconds (exact in a double until 2255).

// acquireScript tries to take one slot of a semaphore for a waiter.
//
// KEYS: leases, waiters, waitexp, aimd (semKeys.list).
// ARGV: id, ticket (µs), configured limit (0 = none), lease TTL (ms),
// waiter TTL (ms), id of a waiter to drop first ("" = none), key TTL (ms).
//
// It forgets lapsed leases and waiters, registers the waiter (keeping its
// first ticket), and grants when the waiter is among the oldest that fit
// in the free slots of the effective limit and no Retry-After pause is on.
// Returns {granted 0|1, leases held, effective limit (0 = none), AIMD
// epoch, pause left (ms)}. A waiter that already holds its lease (the
// answer to an earlier call was lost) is granted again.
var acquireScript = redis.NewScript(`
local leases, waiters, waitexp, aimd = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, ticket, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local leaseTTL, waitTTL, drop, keyTTL = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', waitexp, '-inf', now)
for i = 1, #dead do redis.call('ZREM', waiters, dead[i]) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', waitexp, '-inf', now) end
if drop ~= '' then
  redis.call('ZREM', waiters, drop)
  redis.call('ZREM', waitexp, drop)
end

local st = redis.call('HMGET', aimd, 'limited', 'eff', 'epoch', 'paused_until', 'peak')
local eff = limit
if st[1] == '1' then eff = tonumber(st[2]) end
local epoch = tonumber(st[3]) or 0
local held = redis.call('ZCARD', leases)

if redis.call('ZSCORE', leases, id) then
  redis.call('ZADD', leases, now + leaseTTL, id)
  return {1, held, eff, epoch, 0}
end

redis.call('ZADD', waiters, 'NX', ticket, id)
redis.call('ZADD', waitexp, now + waitTTL, id)
redis.call('PEXPIRE', waiters, keyTTL)
redis.call('PEXPIRE', waitexp, keyTTL)

local pause = (tonumber(st[4]) or 0) - now
if pause > 0 then return {0, held, eff, epoch, pause} end
if eff > 0 then
  local rank = redis.call('ZRANK', waiters, id)
  if held + rank >= eff then return {0, held, eff, epoch, 0} end
end

redis.call('ZREM', waiters, id)
redis.call('ZREM', waitexp, id)
redis.call('ZADD', leases, now + leaseTTL, id)
redis.call('PEXPIRE', leases, keyTTL)
held = held + 1
if held > (tonumber(st[5]) or 0) then redis.call('HSET', aimd, 'peak', held) end
redis.call('PEXPIRE', aimd, keyTTL)
return {1, held, eff, epoch, 0}
`)

// releaseScript ends one lease and feeds its outcome to the shared
// adaptive limit, as lambdalimit does locally (see Limiter.adapt): a
// throttle halves the limit in force (base: the leases held, this one
// included), once per epoch; every effective-limit's worth of successes
// adds one until the configured limit (or, with none, the peak) is back;
// a Retry-After pauses grants fleet-wide.
//
// KEYS: leases, aimd. ARGV: id, outcome ("t" throttle, "s" success, "-"
// neither), epoch at grant, configured limit, Retry-After (ms, 0 = none),
// key TTL (ms), channel to publish on ("" = none), message.
// Returns 1 when the lease was held, else 0.
var releaseScript = redis.NewScript(`
local leases, aimd = KEYS[1], KEYS[2]
local id, outcome, epoch, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local retry, keyTTL, channel, msg = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if outcome == 't' then
  local st = redis.call('HMGET', aimd, 'limited', 'eff', 'epoch', 'paused_until')
  local cur = tonumber(st[3]) or 0
  if epoch == cur then
    local base = redis.call('ZCARD', leases)
    local lim = limit
    if st[1] == '1' then lim = tonumber(st[2]) end
    if lim > 0 and lim < base then base = lim end
    redis.call('HSET', aimd, 'limited', 1, 'eff', math.max(math.floor(base / 2), 1), 'successes', 0, 'epoch', cur + 1)
  end
  if retry > 0 and now + retry > (tonumber(st[4]) or 0) then
    redis.call('HSET', aimd, 'paused_until', now + retry)
  end
  redis.call('PEXPIRE', aimd, keyTTL)
elseif outcome == 's' then
  local st = redis.call('HMGET', aimd, 'limited', 'eff', 'successes', 'peak')
  if st[1] == '1' then
    local eff, succ = tonumber(st[2]), (tonumber(st[3]) or 0) + 1
    if succ < eff then
      redis.call('HSET', aimd, 'successes', succ)
    else
      eff = eff + 1
      local peak = tonumber(st[4]) or 0
      if (limit > 0 and eff >= limit) or (limit == 0 and eff > peak) then
        redis.call('HSET', aimd, 'limited', 0, 'eff', 0, 'successes', 0)
      else
        redis.call('HSET', aimd, 'eff', eff, 'successes', 0)
      end
    end
    redis.call('PEXPIRE', aimd, keyTTL)
  end
end

local removed = redis.call('ZREM', leases, id)
if channel ~= '' then redis.call('PUBLISH', channel, msg) end
return removed
`)

// renewScript extends leases still running by one TTL. With mode "XX" it
// extends only the leases Redis holds (one released meanwhile stays
// released); with "ADD" it also registers again the leases Redis has lost
// (restarted, or lapsed while this proxy could not reach Redis): their
// invokes still run, so they count.
//
// KEYS: leases. ARGV: lease TTL (ms), key TTL (ms), mode, ids...
// Returns how many leases were not there before.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, keyTTL, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local added = 0
for i = 4, #ARGV do
  if mode == 'XX' then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  else
    added = added + redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], keyTTL)
return added
`)

// dropScript removes a waiter that left before it was granted.
//
// KEYS: waiters, waitexp. ARGV: id.
var dropScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZREM', KEYS[2], ARGV[1])
`)

// heartbeatScript says this proxy is alive and counts the live ones.
//
// KEYS: instances. ARGV: instance id, TTL (ms), "0" to leave instead.
// Returns {live proxies, 1 if this proxy's entry was not there}.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = 0
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  added = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
return {redis.call('ZCARD', KEYS[1]), added}
`)
