// Counters over fixed calendar windows (UTC days, UTC hours): the one contract behind daily object
// units and the upstream share, in memory or in Redis. A charge is all or nothing: one that would pass
// the limit is refused whole and adds nothing, so a refused batch never eats budget.
import type { Redis, Result } from 'ioredis'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    agwWindowCharge (key: string, units: number, limit: number, period: number, nowMs: string, block: number): Result<[number, number, number, number], Context>
  }
}

export interface WindowCharge {
  isAllowed: boolean
  /** Units used in the current window after this call. */
  used: number
  /** Seconds until the current window ends, rounded up (at least 1): Retry-After. */
  resetSeconds: number
  /** Milliseconds until the current window ends, as the store saw it: how long a lease may last. */
  resetMs: number
}

export interface WindowStore {
  /**
   * Adds `units` to `key` unless that would pass `limit`; `units = 0` only reads; negative units give
   * back what was charged in the current window (never below 0; a charge of an ended window stays).
   */
  charge (key: string, units: number, limit: number, periodSeconds: number): Promise<WindowCharge>
  /**
   * A charge of at least `units` and, while more than twice `block` is left, up to `block` (a lease:
   * quota/lease.ts spends it locally). `granted` is what was added: 0 when refused.
   */
  lease (key: string, units: number, block: number, limit: number, periodSeconds: number): Promise<WindowCharge & { granted: number }>
}

/**
 * What a lease grants: `units`, or more (up to `block`) while plenty is left. Never more than half of
 * what is left beyond `units`, so the last units of a window go out a few at a time and no replica holds
 * many of them unused while another is refused. Never more than the limit in total.
 */
export function grantOf (units: number, block: number, used: number, limit: number): number {
  return block <= units ? units : Math.max(units, Math.min(block, Math.floor((limit - used) / 2)))
}

/** Milliseconds since the epoch; injected by tests to cross a UTC midnight without sleeping. */
export type Clock = () => number

// Windows are aligned to multiples of the period since the epoch, which for 86400 s are UTC days
// (Unix time has no leap seconds) and for 3600 s UTC hours. The Redis server's clock decides (TIME, to
// the millisecond), so every replica agrees on when a day ends. ARGV[4] overrides the time in
// milliseconds; only tests pass it. The time left is answered in milliseconds: a lease spent locally
// (quota/lease.ts) lasts exactly that long from when it was asked for, so it ends before the window
// does and still covers the window's last second. A window never goes back to an older one: after the
// clock steps back across a window's start (NTP step, VM resume), the later window stored keeps its
// count until it ends (its time left is then longer than the period), or an older window read as 0
// would overwrite it and admit its limit again.
const CHARGE_LUA = `
local units = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3]) * 1000
local now = tonumber(ARGV[4])
local block = tonumber(ARGV[5]) or 0
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local window = math.floor(now / period)
local stored = redis.call('HMGET', KEYS[1], 'w', 'n')
local stored_window = tonumber(stored[1])
if stored_window and stored_window > window then window = stored_window end
local reset = (window + 1) * period - now
local used = 0
if stored_window == window then used = tonumber(stored[2]) or 0 end
if units == 0 then return {1, used, reset, 0} end
if units < 0 then
  if used == 0 then return {1, 0, reset, 0} end
  used = math.max(0, used + units)
  redis.call('HSET', KEYS[1], 'w', window, 'n', used)
  return {1, used, reset, 0}
end
if used + units > limit then return {0, used, reset, 0} end
local grant = units
if block > units then grant = math.max(units, math.min(block, math.floor((limit - used) / 2))) end
used = used + grant
redis.call('HSET', KEYS[1], 'w', window, 'n', used)
redis.call('PEXPIRE', KEYS[1], reset + 60000)
return {1, used, reset, grant}
`

/** A window's time left in milliseconds, and in whole seconds rounded up (at least 1). */
function resetOf (resetMs: number): { resetSeconds: number, resetMs: number } {
  return { resetSeconds: Math.max(1, Math.ceil(resetMs / 1000)), resetMs }
}

export function createRedisWindowStore (redis: Redis, opts: { now?: Clock } = {}): WindowStore {
  // defineCommand loads the script once and then calls it by SHA (EVALSHA, falling back to EVAL).
  redis.defineCommand('agwWindowCharge', { numberOfKeys: 1, lua: CHARGE_LUA })
  const now = opts.now
  return {
    async charge (key, units, limit, periodSeconds) {
      const at = now === undefined ? '' : String(Math.floor(now()))
      const [allowed, used, reset] = await redis.agwWindowCharge(key, units, limit, periodSeconds, at, 0)
      return { isAllowed: allowed === 1, used, ...resetOf(reset) }
    },
    async lease (key, units, block, limit, periodSeconds) {
      const at = now === undefined ? '' : String(Math.floor(now()))
      const [allowed, used, reset, granted] = await redis.agwWindowCharge(key, units, limit, periodSeconds, at, block)
      return { isAllowed: allowed === 1, used, ...resetOf(reset), granted }
    }
  }
}

export function createMemoryWindowStore (opts: { now?: Clock } = {}): WindowStore {
  const now = opts.now ?? Date.now
  const counters = new Map<string, { window: number, used: number }>()
  // Synchronous, like the Redis script is atomic: a lease reads and charges with no await between, so
  // concurrent leases cannot both be granted the last unit.
  function chargeNow (key: string, units: number, limit: number, periodSeconds: number): WindowCharge {
    const at = Math.floor(now())
    const periodMs = periodSeconds * 1000
    const entry = counters.get(key)
    // Never back to an older window (a clock stepping back): see the Redis script.
    const window = Math.max(Math.floor(at / periodMs), entry?.window ?? -Infinity)
    const reset = resetOf((window + 1) * periodMs - at)
    const used = entry?.window === window ? entry.used : 0
    if (units === 0) return { isAllowed: true, used, ...reset }
    if (units < 0) {
      if (used > 0) counters.set(key, { window, used: Math.max(0, used + units) })
      return { isAllowed: true, used: Math.max(0, used + units), ...reset }
    }
    if (used + units > limit) return { isAllowed: false, used, ...reset }
    counters.set(key, { window, used: used + units })
    return { isAllowed: true, used: used + units, ...reset }
  }
  return {
    async lease (key, units, block, limit, periodSeconds) {
      const read = chargeNow(key, 0, limit, periodSeconds)
      if (read.used + units > limit) return { ...read, isAllowed: false, granted: 0 }
      const granted = grantOf(units, block, read.used, limit)
      return { ...chargeNow(key, granted, limit, periodSeconds), granted }
    },
    async charge (key, units, limit, periodSeconds) {
      return chargeNow(key, units, limit, periodSeconds)
    }
  }
}
