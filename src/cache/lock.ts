// The cross-replica fill lock: when several replicas miss the same key at once, one takes a short Redis
// lock (SET NX PX) and calls the upstream; the others poll L2 for its fill with bounded backoff, and load
// themselves only if the holder gives up (lock gone, nothing stored) or the wait passes its bound. The
// lock lives `ttlMs` (10 s), so that a replica that dies while holding it frees it soon, and its holder
// extends it every third of that while its load runs: an upstream call may take minutes (the upstream
// allows 600 s), and a lock that ran out under a live holder would send every later miss of the same key
// upstream again, each spending a call of the shared budget. The lock is an optimisation, never a
// dependency: when Redis fails or is being skipped after a failure, every replica just loads, without
// waiting on Redis.
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { createRedisHealth, type RedisGuard } from '../lib/redis-health.js'
import { createTurnBatch } from '../lib/turn-batch.js'

export interface FillLockOptions {
  redis: Redis
  /**
   * The gateway's key prefix (REDIS_KEY_PREFIX); locks live under `<prefix>{c}:l:`, in the cache's hash
   * slot: on a Redis Cluster one replica's claims for a batch (pipelined) then reach one node in order,
   * so replicas missing the same ids at once do not split the batch between them (one call, not two).
   */
  prefix: string
  /** Lock lifetime, extended by a live holder every third of it: a holder that dies frees the key after this long (default 10 s). */
  ttlMs?: number
  /**
   * Longest wait for another replica's fill before loading anyway (default 130 s, the default
   * UPSTREAM_TIMEOUT_MS with room for the holder's wait for a connection). A waiter stops sooner when
   * the lock goes without a fill: the holder's load failed or the holder died.
   */
  waitMs?: number
  /** The app's shared Redis health, so the lock skips a failing Redis with every other user. */
  guard?: RedisGuard
}

export type Acquired = { isAcquired: true, release: () => Promise<void> } | { isAcquired: false, isBusy: boolean }

export interface FillLock {
  /** isBusy: another replica holds it; not busy and not acquired: Redis is unavailable. */
  acquire: (key: string) => Promise<Acquired>
  /** Waits until `found` returns a value, the lock is released without one, or the wait bound passes. */
  waitFor: <T>(key: string, found: () => Promise<T | undefined>) => Promise<T | undefined>
}

export const DEFAULT_LOCK_TTL_MS = 10_000
export const DEFAULT_LOCK_WAIT_MS = 130_000
const FIRST_POLL_MS = 20
const MAX_POLL_MS = 200
// Past the first seconds the fill is a long call's: poll less often (each poll is two Redis commands a key).
const LONG_WAIT_MS = 5_000
const MAX_LONG_POLL_MS = 1_000

// Delete only our own locks: after a TTL expiry another replica may hold a key. KEYS[i] is released if
// it still holds ARGV[i]. Every lock key is in the cache's hash slot, so one script may take many.
const RELEASE_LUA = `
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then released = released + redis.call('DEL', key) end
end
return released`

// Extends the locks still held: KEYS[i] by ARGV[1] ms if it still holds ARGV[i + 1].
const EXTEND_LUA = `
local extended = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then extended = extended + redis.call('PEXPIRE', key, ARGV[1]) end
end
return extended`

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

export function createFillLock (opts: FillLockOptions): FillLock {
  const { redis } = opts
  const guard = opts.guard ?? createRedisHealth().guard('lock')
  const ttlMs = opts.ttlMs ?? DEFAULT_LOCK_TTL_MS
  const waitMs = opts.waitMs ?? DEFAULT_LOCK_WAIT_MS
  const lockKey = (key: string): string => `${opts.prefix}{c}:l:${key}`

  // Releases asked for in one event-loop turn (the locks of every request one objects/ reply answered) go
  // out as one script call (lib/turn-batch.ts).
  const releases = createTurnBatch<{ key: string, token: string }>(async (batch) => {
    await guard.run(async () => redis.eval(RELEASE_LUA, batch.length, ...batch.map((b) => b.key), ...batch.map((b) => b.token)), 0)
  })

  // The locks this replica holds (lock key → token), all extended by one script call every third of the
  // lifetime while any is held. A failed extension is not retried: the next tick tries again, and a lock
  // lost meanwhile only lets another replica load too.
  const held = new Map<string, string>()
  let extender: NodeJS.Timeout | undefined
  const extend = (): void => {
    if (held.size === 0) {
      clearInterval(extender)
      extender = undefined
      return
    }
    const keys = [...held.keys()]
    guard.run(async () => redis.eval(EXTEND_LUA, keys.length, ...keys, ttlMs, ...keys.map((k) => held.get(k) as string)), 0).catch(() => {})
  }
  const hold = (key: string, token: string): void => {
    held.set(key, token)
    if (extender === undefined) {
      extender = setInterval(extend, Math.max(1, Math.floor(ttlMs / 3)))
      extender.unref()
    }
  }

  const release = (key: string, token: string): void => {
    if (held.get(key) === token) held.delete(key)
    releases.add([{ key, token }]).catch(() => {})
  }

  return {
    async acquire (key) {
      const token = randomUUID()
      const answer = await guard.run(async () => redis.set(lockKey(key), token, 'PX', ttlMs, 'NX'), undefined)
      if (answer === 'OK') {
        const locked = lockKey(key)
        hold(locked, token)
        return {
          isAcquired: true,
          // Sent with the other releases of this turn and not waited for: the fill is already in L2 (or
          // the load failed), waiters look at L2 before the lock, and the answer it holds back is a
          // round trip on every miss.
          release: async () => { release(locked, token) }
        }
      }
      return { isAcquired: false, isBusy: answer === null }
    },
    async waitFor (key, found) {
      // The bound counts slept time rather than reading a clock, so an injected test clock cannot stall it.
      let delay = FIRST_POLL_MS
      for (let waited = 0; waited < waitMs; waited += delay, delay = Math.min(delay * 2, waited < LONG_WAIT_MS ? MAX_POLL_MS : MAX_LONG_POLL_MS)) {
        await sleep(delay)
        const value = await found()
        if (value !== undefined) return value
        const exists = await guard.run(async () => redis.exists(lockKey(key)), -1)
        // Released without a fill (the holder's load failed) or Redis unavailable: stop waiting. One more
        // look first, since the holder may have stored and released between the two reads.
        if (exists !== 1) return await found()
      }
      return undefined
    }
  }
}
