// The cache paths seen from a consumer, through the whole app against the sandbox. Freshness windows
// are set through CACHE_FRESHNESS so that an entry is stale at once (no sleeping, no clock games).
import { test } from 'tap'
import type { Redis } from 'ioredis'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { connectTestRedis } from '../fixtures/redis-keys.js'

/** Keys matching `pattern` on a single Redis server. */
async function scanKeys (redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    keys.push(...batch)
    cursor = next
  } while (cursor !== '0')
  return keys
}

const LIST = '/v1/lists/good/objects'

test('stale-while-revalidate: served STALE, exactly one background refresh', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { CACHE_FRESHNESS: '{"lists":{"freshS":0,"swrS":3600,"sieS":0}}' } })
  sandbox.resetCalls()
  t.equal((await app.inject({ url: LIST, headers: demoAuth(app) })).headers['x-cache'], 'MISS')
  const stale = await Promise.all(Array.from({ length: 10 }, () => app.inject({ url: LIST, headers: demoAuth(app) })))
  t.ok(stale.every((r) => r.statusCode === 200 && r.headers['x-cache'] === 'STALE'))
  await app.cache.drain()
  t.equal(sandbox.calls.get('objectlist'), 2, 'the first fill, then one refresh for ten stale reads')
})

test('stale-if-error: the upstream fails, the stale answer is served with X-Cache: STALE', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { CACHE_FRESHNESS: '{"lists":{"freshS":0,"swrS":0,"sieS":3600}}', UPSTREAM_RETRIES: 0 } })
  const first = await app.inject({ url: LIST, headers: demoAuth(app) })
  t.equal(first.headers['x-cache'], 'MISS')
  sandbox.inject({ kind: 'html500', times: 5 })
  const second = await app.inject({ url: LIST, headers: demoAuth(app) })
  t.equal(second.statusCode, 200)
  t.equal(second.headers['x-cache'], 'STALE')
  t.equal(second.body, first.body)
})

test('errors are never stored: after an upstream failure the next read goes upstream again', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_RETRIES: 0 } })
  sandbox.inject({ kind: 'html500', endpoint: 'objectlist' })
  t.equal((await app.inject({ url: LIST, headers: demoAuth(app) })).statusCode, 502)
  sandbox.resetCalls()
  const next = await app.inject({ url: LIST, headers: demoAuth(app) })
  t.equal(next.statusCode, 200)
  t.equal(next.headers['x-cache'], 'MISS')
  t.equal(sandbox.calls.get('objectlist'), 1)
})

test('writes are never cached: the same write twice reaches the upstream twice', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  sandbox.resetCalls()
  for (let i = 0; i < 2; i++) {
    await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: demoAuth(app), payload: { id: FIXTURE_IDS.A, rank: 1 } })
  }
  t.equal(sandbox.calls.get('vrarank'), 2)
})

test('unknown ids are cached as missing for a short time', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  t.equal((await app.inject({ url: `/v1/objects/${FIXTURE_IDS.U}`, headers: demoAuth(app) })).statusCode, 404)
  sandbox.resetCalls()
  t.equal((await app.inject({ url: `/v1/objects/${FIXTURE_IDS.U}`, headers: demoAuth(app) })).statusCode, 404)
  t.equal(sandbox.calls.get('objects') ?? 0, 0, 'the second 404 came from the negative cache')
})

test('Redis tag sets hold the entries that live, not every key a route ever stored', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL' : false }, async (t) => {
  const { app, config } = await buildTestApp(t, { useRedis: true, config: { CACHE_MAX_BYTES: 0 } })
  const redis = await connectTestRedis(t, config.REDIS_URL)
  const entryPattern = `${config.REDIS_KEY_PREFIX}{c}:k:*`
  const cones = 15
  for (const round of [0, 1]) {
    // The first round's entries go as expiry or Redis's eviction takes them (here: at once).
    for (const key of await scanKeys(redis, entryPattern)) await redis.unlink(key)
    for (let k = 0; k < cones; k++) {
      const res = await app.inject({ url: `/v1/cone?ra=${10 + round * cones + k}&dec=10&radius=30`, headers: demoAuth(app) })
      t.equal(res.statusCode, 200)
    }
    await app.cache.drain()
  }
  const live = (await scanKeys(redis, entryPattern)).length
  let largest = 0
  for (const tag of await scanKeys(redis, `${config.REDIS_KEY_PREFIX}{c}:t:*`)) largest = Math.max(largest, await redis.scard(tag))
  // Before: route:cone held both rounds' 30 keys, its lifetime renewed by every fill: one more key for
  // each distinct cone read, for as long as any cone entry lived.
  t.ok(largest <= live, `the largest tag set holds ${largest} keys, ${live} entries live`)
})
