// Shared pieces of the cache tests: a manual clock, a counting loader with an optional gate, and
// caches built from real stores (memory, and Redis when REDIS_URL is set).
import type { Test } from 'tap'
import { createCache, type CacheOptions, type LoaderResult } from '../../src/cache/cache.js'
import { createMemoryStore } from '../../src/cache/memory-store.js'
import { createRedisStore } from '../../src/cache/redis-store.js'
import type { Freshness } from '../../src/cache/freshness.js'
import { TEST_STORE_TIMEOUT_MS, connectRedis } from './redis-fixture.js'

export const FRESHNESS: Freshness = { freshMs: 10_000, staleWhileRevalidateMs: 20_000, staleIfErrorMs: 60_000 }

export function manualClock (start = 1_700_000_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

export function deferred<T = void> () {
  let resolve!: (value: T) => void
  let reject!: (err: unknown) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

/**
 * A loader answering `body()` (or throwing `fail()`), counting calls; `gate` holds each call until
 * opened. `started` settles when the first call begins: await it instead of polling `calls`.
 */
export function countingLoader (body: () => string = () => 'v1', opts: { tags?: string[], fail?: () => unknown, gate?: Promise<void> } = {}) {
  const first = deferred()
  const loader = {
    calls: 0,
    started: first.promise,
    fn: async (): Promise<LoaderResult> => {
      loader.calls++
      first.resolve()
      if (opts.gate !== undefined) await opts.gate
      // Resolve on a later macrotask, as a network call would.
      await new Promise((resolve) => setImmediate(resolve))
      const failure = opts.fail?.()
      if (failure !== undefined) throw failure
      return { body: Buffer.from(body()), contentType: 'application/json', ...(opts.tags === undefined ? {} : { tags: opts.tags }) }
    }
  }
  return loader
}

export function memoryCache (clock = manualClock(), opts: CacheOptions = {}) {
  const l1 = createMemoryStore({ maxBytes: 1 << 20, now: clock.now })
  return { cache: createCache({ l1, now: clock.now, ...opts }), l1, clock }
}

/** L1 in memory + L2 on the shared Redis under a fresh prefix; `shared` reuses another's Redis space. */
export async function twoTierCache (t: Test, opts: CacheOptions & { clock?: ReturnType<typeof manualClock>, shared?: Awaited<ReturnType<typeof connectRedis>>, withLock?: boolean, lockWaitMs?: number, lockTtlMs?: number } = {}) {
  const clock = opts.clock ?? manualClock()
  const conn = opts.shared ?? await connectRedis(t)
  const l1 = createMemoryStore({ maxBytes: 1 << 20, now: clock.now })
  const l2 = createRedisStore({ redis: conn.redis, prefix: conn.prefix, timeoutMs: TEST_STORE_TIMEOUT_MS })
  const { clock: _c, shared: _s, withLock, lockWaitMs, lockTtlMs, ...cacheOpts } = opts
  const cache = createCache({
    l1,
    l2,
    now: clock.now,
    ...(withLock === true ? { lock: { redis: conn.redis, prefix: conn.prefix, waitMs: lockWaitMs ?? 10_000, ...(lockTtlMs === undefined ? {} : { ttlMs: lockTtlMs }) } } : {}),
    ...cacheOpts
  })
  return { cache, l1, l2, clock, conn }
}
