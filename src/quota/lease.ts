// Limits counted in the process, reconciled with the shared store (Redis) by leases: a replica takes a
// block of units from the store's counter in one call and spends it locally, so most requests make no
// Redis call at all. The store only ever grants what is left under the limit, and a replica spends
// only what it was granted, so the sum over replicas never exceeds the limit.
// - Small limits lease one unit at a time (block 1): every charge is a store call, exact across
//   replicas, as before leases.
// - Larger limits lease min(limit / LIMIT_LEASE_DIVISOR, LIMIT_LEASE_MAX) units. A unit leased but
//   not spent is lost when its window ends (the store counted it), and may make another replica refuse
//   a little early: at most one block per replica, less near the limit (grantOf halves the block as
//   the window fills up). Units given back (a 5xx) stay with the replica up to one block; the rest go
//   back to the store, and so does every unspent unit when the app closes.
// A lease's local end is taken from when its store call was sent plus the time left that the store
// answered, to the millisecond: it never outlives the store's window (but for a rate's window that a
// reload cut: see RATE_LEASE_LUA), and it lasts into the window's last second (where a lease cut to
// whole seconds would end as it is granted, so that each charge leased a new block and each refund
// was dropped).
import type { Redis, Result } from 'ioredis'
import { grantOf, type Clock, type WindowStore } from './window-store.js'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    agwRateLease (key: string, units: number, block: number, limit: number, periodMs: number, windowEndAt: number | ''): Result<[number, number, number, number?], Context>
  }
}

/** The store's answer: `granted` units (0: refused, or a read or a give-back), the counter after it. */
export interface LeaseGrant {
  granted: number
  used: number
  /** Milliseconds until the counter's window ends, as the store saw it: Retry-After, and how long a lease granted now may be spent. */
  resetMs: number
  /** When the counter's window ends on the store's own clock (rate stores): a lease's give-back passes it back. */
  windowEndAt?: number
}

/**
 * One counter kind in the shared store: `units` > 0 leases (grant at least `units`, up to `block`), 0 reads,
 * < 0 gives back. A lease's give-back passes `windowEndAt`, its grant's: a rate store then gives back only
 * into the window the lease was taken in (see RATE_LEASE_LUA).
 */
export interface LeaseStore {
  lease: (key: string, units: number, block: number, limit: number, periodMs: number, windowEndAt?: number) => Promise<LeaseGrant>
}

export interface LimitCharge {
  isAllowed: boolean
  /** Units used in the window, as this replica knows it (exact when the limit leases one at a time). */
  used: number
  /** Seconds until the window ends (at least 1). */
  resetSeconds: number
  /** Local time by which the charge's window has surely ended: pass it to refund, which drops a late one. */
  windowEnd: number
}

// How far a window's end, as a lease's grant and a give-back each read it on the store's clock, may
// differ in a window never cut: the time left is read to the millisecond, the clock (TIME) too, and a
// script runs for microseconds between. The app's clock is not compared at all: it may step (NTP, VM
// resume) between a lease and its give-back, and a call may reach Redis up to REDIS_COMMAND_TIMEOUT_MS
// after it was sent (a give-back compared on the app's clock with a 1 s slack was dropped then).
const WINDOW_MATCH_SLACK_MS = 100

// Request-rate windows start at a consumer's first request and last the rate's period, on a plain
// string counter with a TTL: the same key and shape as @fastify/rate-limit's Redis store used, so
// replicas of either kind count together during a rolling deploy. A window longer than the period (a
// consumers reload shortened it) is cut to the period: it ends when the new rate says, not the old one.
// A lease may then outlive its window, and a replica that has not reloaded yet holds one that does: its
// give-back goes back only while the window still ends when the lease's grant said: a lease's answer
// carries the window's end on the Redis server's clock (TIME plus the time left), and its give-back
// passes it back (ARGV[5]). A window that ends sooner or later was cut, or is a new one after the cut one
// ended, which never counted the lease's units: given back there, they were admitted twice (299
// requests in one window of 200/minute). The two cannot be told apart, so a cut window keeps its
// leases' units until it ends.
const RATE_LEASE_LUA = `
local units = tonumber(ARGV[1])
local block = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local period = tonumber(ARGV[4])
local lease_end = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local used = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local ttl = period
if used > 0 then
  ttl = redis.call('PTTL', KEYS[1])
  if units < 0 and lease_end and math.abs(now + ttl - lease_end) > ${WINDOW_MATCH_SLACK_MS} then return {0, used, ttl, now + ttl} end
  if ttl < 0 or ttl > period then
    redis.call('PEXPIRE', KEYS[1], period)
    ttl = period
  end
end
if units == 0 then return {0, used, ttl} end
if units < 0 then
  if used == 0 then return {0, 0, ttl} end
  used = math.max(0, used + units)
  redis.call('SET', KEYS[1], used, 'KEEPTTL')
  return {0, used, ttl}
end
if used + units > limit then return {0, used, ttl, now + ttl} end
local grant = units
if block > units then grant = math.max(units, math.min(block, math.floor((limit - used) / 2))) end
local after = redis.call('INCRBY', KEYS[1], grant)
if after == grant then redis.call('PEXPIRE', KEYS[1], period) end
return {grant, after, ttl, now + ttl}
`

export function createRedisRateStore (redis: Redis): LeaseStore {
  redis.defineCommand('agwRateLease', { numberOfKeys: 1, lua: RATE_LEASE_LUA })
  return {
    async lease (key, units, block, limit, periodMs, windowEndAt) {
      const [granted, used, resetMs, endAt] = await redis.agwRateLease(key, units, block, limit, periodMs, windowEndAt ?? '')
      return { granted, used, resetMs, windowEndAt: endAt }
    }
  }
}

// Ended windows are swept out once the map has doubled since the last sweep: keys by client address
// (auth-token/) are as many as the addresses that called, and an ended window counts as no entry.
const SWEEP_MIN_ENTRIES = 1024

export function createMemoryRateStore (now: Clock = Date.now): LeaseStore {
  const counters = new Map<string, { end: number, used: number }>()
  let sweepAt = SWEEP_MIN_ENTRIES
  function sweep (at: number): void {
    for (const [key, entry] of counters) if (at >= entry.end) counters.delete(key)
    sweepAt = Math.max(SWEEP_MIN_ENTRIES, counters.size * 2)
  }
  return {
    async lease (key, units, block, limit, periodMs, windowEndAt) {
      const at = now()
      let entry = counters.get(key)
      if (entry === undefined || at >= entry.end) {
        if (units <= 0) return { granted: 0, used: 0, resetMs: periodMs }
        if (counters.size >= sweepAt) sweep(at)
        entry = { end: at + periodMs, used: 0 }
        counters.set(key, entry)
      }
      // As in Redis: a lease gives back only into its own window, compared on this store's clock.
      if (units < 0 && windowEndAt !== undefined && Math.abs(entry.end - windowEndAt) > WINDOW_MATCH_SLACK_MS) {
        return { granted: 0, used: entry.used, resetMs: entry.end - at }
      }
      // As in Redis: a period shortened by a reload cuts the running window to it.
      if (entry.end > at + periodMs) entry.end = at + periodMs
      const resetMs = entry.end - at
      if (units < 0) entry.used = Math.max(0, entry.used + units)
      if (units <= 0 || entry.used + units > limit) return { granted: 0, used: entry.used, resetMs }
      const granted = grantOf(units, block, entry.used, limit)
      entry.used += granted
      return { granted, used: entry.used, resetMs, windowEndAt: entry.end }
    }
  }
}

/**
 * Calendar windows (UTC hours, UTC days) of a WindowStore, as a LeaseStore. A give-back needs no
 * `windowEndAt`: calendar windows are never cut, so one sent before its lease ends is in the lease's window.
 */
export function calendarLeaseStore (store: WindowStore): LeaseStore {
  return {
    async lease (key, units, block, limit, periodMs) {
      const period = Math.round(periodMs / 1000)
      const charge = units > 0 ? await store.lease(key, units, block, limit, period) : { ...(await store.charge(key, units, limit, period)), granted: 0 }
      return { granted: charge.granted, used: charge.used, resetMs: charge.resetMs }
    }
  }
}

export interface LeasedCounterOptions {
  store: LeaseStore
  /** Runs a store call under the Redis policy: undefined when it was skipped or failed (open policy). */
  run: <T>(op: () => Promise<T>) => Promise<T | undefined>
  /** Units leased per store call for a limit: 1 keeps the limit exact across replicas. */
  blockFor: (limit: number) => number
  now?: Clock
}

interface Lease {
  /** Units granted to this replica and not spent yet. */
  left: number
  /** The store's counter after the last grant (it includes `left`). */
  used: number
  /** Local time the lease ends (before the store's window does). */
  end: number
  /** The window's end on the store's clock, as the last grant answered it (rate stores). */
  windowEndAt: number | undefined
  /** The store call in flight for this key, which the other charges wait for. */
  pending: Promise<unknown> | undefined
  limit: number
  periodMs: number
}

export type LeasedCounter = ReturnType<typeof createLeasedCounter>

export function createLeasedCounter (opts: LeasedCounterOptions) {
  const { store, run, blockFor } = opts
  const now = opts.now ?? Date.now
  const leases = new Map<string, Lease>()

  function seconds (ms: number): number {
    return ms < 1000 ? 1 : Math.ceil(ms / 1000)
  }

  /** One store call per key at a time; the charges that meet it wait for it and try again. */
  /**
   * A consumer's limit changed (a consumers reload): what this replica leased under the old one goes back
   * to the store, so the new limit applies at once. Kept, it would be spent past a lowered limit, or stay
   * counted against a limit that no longer leases.
   */
  async function dropChangedLease (key: string, limit: number, periodMs: number): Promise<void> {
    const old = leases.get(key)
    if (old === undefined || (old.limit === limit && old.periodMs === periodMs)) return
    await dropLease(key, old)
  }

  async function dropLease (key: string, old: Lease): Promise<void> {
    leases.delete(key)
    await giveBack(key, old)
  }

  async function giveBack (key: string, lease: Lease): Promise<void> {
    const left = now() < lease.end ? lease.left : 0
    lease.left = 0
    if (left > 0) await run(() => store.lease(key, -left, 0, lease.limit, lease.periodMs, lease.windowEndAt))
  }

  /**
   * A lease dropped while its refill was out to the store (a reload changed the limit, or every lease was
   * given back) held nothing to give back then: what the call left in it goes back now, or nothing would
   * ever spend it nor give it back. The charge stands whatever the give-back meets; units that cannot go
   * back end with their window, as any unspent lease's do.
   */
  async function settleDropped (key: string, lease: Lease): Promise<void> {
    if (leases.get(key) !== lease) await giveBack(key, lease).catch(() => {})
  }

  async function refill (key: string, lease: Lease, units: number, block: number, limit: number, periodMs: number): Promise<LimitCharge | undefined> {
    const sent = now()
    // What is left of the lease goes into this charge: taken now, so no other charge spends it too.
    const have = sent < lease.end ? lease.left : 0
    lease.left = 0
    const call = run(() => store.lease(key, units - have, Math.max(block, units - have), limit, periodMs))
    lease.pending = call
    let grant: LeaseGrant | undefined
    try {
      grant = await call
    } finally {
      lease.pending = undefined
      // Not spent (skipped, failed or refused): it is still this replica's while its window lasts.
      if (grant === undefined || grant.granted === 0) lease.left += have
    }
    if (grant === undefined) {
      await settleDropped(key, lease)
      return undefined
    }
    if (grant.granted === 0) {
      const refused = { isAllowed: false, used: grant.used - lease.left, resetSeconds: seconds(grant.resetMs), windowEnd: sent + grant.resetMs }
      await settleDropped(key, lease)
      return refused
    }
    // Charges that found the lease empty waited for this call; only a refund can have added to it since.
    lease.left += have + grant.granted - units
    lease.used = grant.used
    lease.limit = limit
    lease.periodMs = periodMs
    lease.end = sent + grant.resetMs
    lease.windowEndAt = grant.windowEndAt
    const charged = { isAllowed: true, used: lease.used - lease.left, resetSeconds: seconds(grant.resetMs), windowEnd: lease.end }
    await settleDropped(key, lease)
    return charged
  }

  return {
    /**
     * Counts `units` (> 0) all or nothing: from this replica's lease when it holds enough, else with one
     * store call. undefined when the store call was skipped under the open policy.
     */
    async charge (key: string, units: number, limit: number, periodMs: number): Promise<LimitCharge | undefined> {
      await dropChangedLease(key, limit, periodMs)
      const block = blockFor(limit)
      if (block <= 1) {
        const sent = now()
        const grant = await run(() => store.lease(key, units, units, limit, periodMs))
        if (grant === undefined) return undefined
        return { isAllowed: grant.granted > 0, used: grant.used, resetSeconds: seconds(grant.resetMs), windowEnd: sent + grant.resetMs }
      }
      for (;;) {
        // Looked up again after each wait: the lease waited on may have been dropped meanwhile.
        let lease = leases.get(key)
        if (lease === undefined) {
          lease = { left: 0, used: 0, end: 0, windowEndAt: undefined, pending: undefined, limit, periodMs }
          leases.set(key, lease)
        }
        const at = now()
        if (at < lease.end && lease.left >= units) {
          lease.left -= units
          return { isAllowed: true, used: lease.used - lease.left, resetSeconds: seconds(lease.end - at), windowEnd: lease.end }
        }
        if (lease.pending === undefined) return await refill(key, lease, units, block, limit, periodMs)
        await lease.pending.catch(() => {})
      }
    },
    /**
     * Gives back units charged in the current window: kept by this replica up to one block (0 round
     * trips), the rest to the store. Units of an ended window stay spent: pass the charge's `windowEnd`,
     * or a refund that comes after its window would be credited to the next one.
     */
    async refund (key: string, units: number, limit: number, periodMs: number, windowEnd?: number): Promise<void> {
      if (windowEnd !== undefined && now() >= windowEnd) return
      const block = blockFor(limit)
      const lease = leases.get(key)
      if (block <= 1 || lease === undefined) {
        await run(() => store.lease(key, -units, 0, limit, periodMs))
        return
      }
      if (now() >= lease.end) return
      lease.left += units
      const extra = lease.left - block
      if (extra <= 0) return
      lease.left -= extra
      lease.used -= extra
      await run(() => store.lease(key, -extra, 0, limit, periodMs))
    },
    /** Units used in the current window (the store's count less what this replica holds unspent); undefined when skipped. */
    async used (key: string, limit: number, periodMs: number): Promise<LimitCharge | undefined> {
      const read = await run(() => store.lease(key, 0, 0, limit, periodMs))
      if (read === undefined) return undefined
      const lease = leases.get(key)
      const held = lease !== undefined && now() < lease.end ? lease.left : 0
      return { isAllowed: read.used <= limit, used: Math.max(0, read.used - held), resetSeconds: seconds(read.resetMs), windowEnd: now() + read.resetMs }
    },
    /**
     * Gives back the leases whose limit is no longer `limitOf(key)` (undefined: the key has no limit any
     * more), after a consumers reload. Left to the next charge of the consumer on this replica, a lease
     * taken under a higher limit would stay counted in the store and make every other replica refuse the
     * consumer, until its window ended if this replica never saw the consumer again.
     */
    async dropChanged (limitOf: (key: string) => { limit: number, periodMs: number } | undefined): Promise<void> {
      const drops: Array<Promise<void>> = []
      for (const [key, lease] of leases) {
        const current = limitOf(key)
        if (current === undefined || current.limit !== lease.limit || current.periodMs !== lease.periodMs) drops.push(dropLease(key, lease))
      }
      await Promise.allSettled(drops)
    },
    /** Gives every unspent unit back to the store (on close), so that no replica strands them. */
    async release (): Promise<void> {
      const at = now()
      const returns: Array<Promise<unknown>> = []
      for (const [key, lease] of leases) {
        if (lease.left > 0 && at < lease.end) {
          const left = lease.left
          lease.left = 0
          returns.push(run(() => store.lease(key, -left, 0, lease.limit, lease.periodMs, lease.windowEndAt)))
        }
      }
      leases.clear()
      await Promise.allSettled(returns)
    }
  }
}
