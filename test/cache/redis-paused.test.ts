// A stalled Redis (SIGSTOP on a redis-server this test started; never the shared one) must not take
// reads down: L1 still answers, misses go to the loader, failures are counted, and after SIGCONT and
// the cool-down of the Redis health (driven by an injected clock; no background probe here, so the
// first call after the cool-down is the probe) L2 is used again. Statuses and values are asserted,
// not durations (test/faults/redis-stall.test.ts bounds them for the whole app).
import { test } from 'tap'
import { createCache } from '../../src/cache/cache.js'
import { createMemoryStore } from '../../src/cache/memory-store.js'
import { createRedisStore } from '../../src/cache/redis-store.js'
import { createRedisHealth } from '../../src/lib/redis-health.js'
import { FRESHNESS, countingLoader, manualClock } from './cache-fixture.js'
import { CAN_START_REDIS, connectRedis, startRedisServer } from './redis-fixture.js'

test('Redis paused: reads answer from L1 or the loader; Redis comes back after SIGCONT', { skip: CAN_START_REDIS ? false : 'needs REDIS_URL and redis-server' }, async (t) => {
  const server = await startRedisServer(t)
  // The client's own command timeout is long, so the health's timeout is the one that bounds each call.
  const { redis, prefix } = await connectRedis(t, server.url, 10_000)
  const clock = manualClock()
  const errors: unknown[] = []
  const skips: string[] = []
  const health = createRedisHealth({ timeoutMs: 200, cooldownMs: 1000, now: clock.now, onFailure: (err) => errors.push(err), onSkip: (user) => skips.push(user) })
  const l2 = createRedisStore({ redis, prefix, guard: health.guard('cache') })
  const makeCache = () => createCache({
    l1: createMemoryStore({ maxBytes: 1 << 20, now: clock.now }), l2, now: clock.now, lock: { redis, prefix, guard: health.guard('lock') }
  })
  const cache = makeCache()
  const loader = countingLoader(() => 'value')

  t.equal((await cache.fetch('warm', FRESHNESS, loader.fn)).status, 'MISS')
  t.ok(await redis.getBuffer(`${prefix}{c}:k:warm`), 'stored in L2 while Redis runs')

  server.pause()
  t.teardown(() => server.resume())
  const hit = await cache.fetch('warm', FRESHNESS, loader.fn)
  t.equal(hit.status, 'HIT', 'L1 answers without Redis')
  t.equal(hit.entry.body.toString(), 'value')

  const miss = await cache.fetch('cold', FRESHNESS, loader.fn)
  t.equal(miss.status, 'MISS', 'a miss goes to the loader')
  t.equal(miss.entry.body.toString(), 'value')
  t.equal(errors.length, 1, 'one stall reported: calls after it were skipped or released')
  t.equal(health.state, 'down')
  t.notOk(health.isAvailable, 'Redis is skipped during the cool-down')
  t.ok(skips.includes('cache') && skips.includes('lock'), `store and lock skipped Redis (${[...new Set(skips)].join(', ')})`)

  // A replica with an empty L1 still answers through its loader.
  const other = makeCache()
  t.equal((await other.fetch('warm', FRESHNESS, loader.fn)).status, 'MISS')
  t.equal((await other.getEntries(['warm']))[0]?.body.toString(), 'value', 'its own L1 was filled')
  await other.invalidate(['anything'])
  t.equal(loader.calls, 3)

  server.resume()
  // Let the stalled commands drain now that Redis runs again (each was already answered by the guard).
  await redis.ping()
  clock.advance(1000)
  t.ok(health.isAvailable, 'after the cool-down the next call probes Redis')
  t.equal((await cache.fetch('after', FRESHNESS, loader.fn)).status, 'MISS')
  t.equal(health.state, 'up', 'the probe answered')
  t.ok(await redis.getBuffer(`${prefix}{c}:k:after`), 'fills reach L2 again')
  const third = makeCache()
  const fromL2 = await third.fetch('after', FRESHNESS, loader.fn)
  t.equal(fromL2.status, 'HIT', 'a fresh L1 is served from L2 again')
  t.equal(loader.calls, 4)
})
