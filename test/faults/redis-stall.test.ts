// A stalled Redis: a redis-server this test starts and freezes with SIGSTOP (never the shared one).
// The gateway keeps one view of Redis health (lib/redis-health.ts): the first call that times out
// marks Redis down, every Redis user (limits, cache, fill lock, token, budget) skips it from then on,
// and a background PING brings it back after SIGCONT without a restart. So a request waits for at most
// one Redis timeout in total, and requests after the first one do not wait at all.
// Before this change, with the 300 ms timeout used here: a cache miss took ~1,520 ms (five timeouts in
// a row: rate, units, upstream share, budget, token), every cached read ~301 ms, and under
// LIMITS_ON_REDIS_ERROR=closed every request waited ~301 ms for its 503.
// Bounds, not exact durations: one timeout plus a margin for a loaded 2-core machine.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { startRedisServer } from '../fixtures/redis-server.js'
import { waitFor } from '../fixtures/wait.js'

const TIMEOUT_MS = 300
const MARGIN_MS = 150
const BOUND_MS = TIMEOUT_MS + MARGIN_MS
// The demo consumer's limits leased one request at a time, so that every request asks Redis: the
// behaviour under test (the default lease would serve 30 requests from one Redis call).
const config = { REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, LIMIT_LEASE_DIVISOR: 1000 }

interface Timed { ms: number, status: number, cache: string, code: string | undefined }

async function timedGet (app: FastifyInstance, url: string): Promise<Timed> {
  const started = performance.now()
  const res = await app.inject({ url, headers: demoAuth(app) })
  const ms = Math.round(performance.now() - started)
  const code = String(res.headers['content-type']).includes('json') ? res.json<{ code?: string }>().code : undefined
  return { ms, status: res.statusCode, cache: String(res.headers['x-cache'] ?? '-'), code }
}

const object = (id: string): string => `/v1/objects/${id}`

async function skippedBy (app: FastifyInstance): Promise<Record<string, number>> {
  const metric = await app.metrics.redisSkipped.get()
  return Object.fromEntries(metric.values.map((v) => [String(v.labels.user), v.value]))
}

async function available (app: FastifyInstance): Promise<number | undefined> {
  return (await app.metrics.redisAvailable.get()).values[0]?.value
}

/** Sum of the request-rate counters under `prefix` (only the demo consumer calls here). */
async function rateCounted (app: FastifyInstance, prefix: string): Promise<number> {
  const redis = app.redis
  if (redis === null) throw new Error('no redis')
  const keys = await redis.keys(`${prefix}rate:*`)
  const values = keys.length === 0 ? [] : await redis.mget(...keys)
  return values.reduce((sum, v) => sum + Number(v ?? 0), 0)
}

async function cacheKeys (app: FastifyInstance, prefix: string): Promise<number> {
  return (await app.redis?.keys(`${prefix}{c}:k:*`))?.length ?? 0
}

test('a stalled Redis costs a request at most one timeout, later requests none; it comes back after SIGCONT', async (t) => {
  const server = await startRedisServer(t)
  const { app, config: appConfig } = await buildTestApp(t, { config: { ...config, REDIS_URL: server.url } })
  // Registered after the app, so it runs before the app closes (teardowns run last first).
  let isPaused = false
  t.teardown(() => { if (isPaused) server.resume() })
  const prefix = appConfig.REDIS_KEY_PREFIX
  t.match(await timedGet(app, object(FIXTURE_IDS.A)), { status: 200, cache: 'MISS' })
  t.match(await timedGet(app, object(FIXTURE_IDS.A)), { status: 200, cache: 'HIT' })
  const countedBefore = await rateCounted(app, prefix)
  t.equal(countedBefore, 2, 'both requests counted in Redis')
  t.equal(await available(app), 1)

  server.pause()
  isPaused = true
  const miss = await timedGet(app, object(FIXTURE_IDS.B))
  t.comment(`first request after the stall, a cache miss: ${miss.ms} ms (${miss.status} ${miss.cache})`)
  t.match(miss, { status: 200, cache: 'MISS' }, 'the miss is served from the upstream')
  t.ok(miss.ms <= BOUND_MS, `the miss waited ${miss.ms} ms ≤ ${BOUND_MS} ms (one Redis timeout + margin)`)
  t.equal(app.redisHealth.state, 'down', 'the timeout marked Redis down for every user')
  t.equal(await available(app), 0, 'gateway_redis_available is 0')

  const later: Timed[] = []
  for (let i = 0; i < 3; i++) later.push(await timedGet(app, object(FIXTURE_IDS.A)))
  later.push(await timedGet(app, object(FIXTURE_IDS.C)))
  t.comment(`later requests while stalled (3 cached reads, 1 miss): ${later.map((r) => `${r.ms} ms ${r.cache}`).join(', ')}`)
  t.same(later.map((r) => [r.status, r.cache]), [[200, 'HIT'], [200, 'HIT'], [200, 'HIT'], [200, 'MISS']])
  for (const r of later) t.ok(r.ms <= BOUND_MS, `${r.cache} in ${r.ms} ms ≤ ${BOUND_MS} ms`)
  const skipped = await skippedBy(app)
  t.comment(`skipped Redis calls by user: ${JSON.stringify(skipped)}`)
  for (const user of ['limits', 'cache', 'lock', 'token', 'budget']) {
    t.ok((skipped[user] ?? 0) > 0, `${user} skipped Redis instead of waiting`)
  }
  t.ok(((await app.metrics.redisErrors.get()).values[0]?.value ?? 0) >= 1, 'the stall was counted as a Redis error')

  server.resume()
  isPaused = false
  await waitFor('the background probe to find Redis back', () => app.redisHealth.state === 'up')
  t.equal(await available(app), 1, 'gateway_redis_available is 1 again')
  const keysBefore = await cacheKeys(app, prefix)
  t.match(await timedGet(app, object(FIXTURE_IDS.D)), { status: 200, cache: 'MISS' })
  t.ok(await cacheKeys(app, prefix) > keysBefore, 'fills reach L2 again, without a restart')
  // The stall's first request sent its rate-limit call before timing out (Redis ran it on SIGCONT);
  // the four after it never called the rate-limit store; the request after recovery did.
  t.equal(await rateCounted(app, prefix), countedBefore + 2, 'the rate-limit store was skipped while Redis was down, and counts again after')
})

test('requests in flight when Redis stalls are released together; a cached read first after a stall waits one timeout at most', async (t) => {
  const server = await startRedisServer(t)
  const { app } = await buildTestApp(t, { config: { ...config, REDIS_URL: server.url } })
  let isPaused = false
  t.teardown(() => { if (isPaused) server.resume() })
  t.match(await timedGet(app, object(FIXTURE_IDS.A)), { status: 200, cache: 'MISS' })

  server.pause()
  isPaused = true
  const cached = await timedGet(app, object(FIXTURE_IDS.A))
  t.comment(`first request after the stall, a cached read: ${cached.ms} ms (${cached.cache})`)
  t.match(cached, { status: 200, cache: 'HIT' })
  t.ok(cached.ms <= BOUND_MS, `the cached read waited ${cached.ms} ms ≤ ${BOUND_MS} ms`)

  server.resume()
  isPaused = false
  await waitFor('the background probe to find Redis back', () => app.redisHealth.state === 'up')

  // Concurrent requests each waiting on their own Redis call when it stalls: the first timeout
  // releases all of them, instead of each waiting out its own timeout after another's.
  server.pause()
  isPaused = true
  const answers = await Promise.all([FIXTURE_IDS.A, FIXTURE_IDS.B, FIXTURE_IDS.C, FIXTURE_IDS.E].map(async (id) => timedGet(app, object(id))))
  t.comment(`4 concurrent requests at the stall: ${answers.map((r) => `${r.ms} ms ${r.cache}`).join(', ')}`)
  t.same(answers.map((r) => r.status), [200, 200, 200, 200])
  for (const r of answers) t.ok(r.ms <= BOUND_MS, `${r.cache} in ${r.ms} ms ≤ ${BOUND_MS} ms`)

  server.resume()
  isPaused = false
  await waitFor('the background probe to find Redis back', () => app.redisHealth.state === 'up')
})

test('LIMITS_ON_REDIS_ERROR=closed: 503 at once while Redis is down, served again after SIGCONT', async (t) => {
  const server = await startRedisServer(t)
  const { app } = await buildTestApp(t, { config: { ...config, REDIS_URL: server.url, LIMITS_ON_REDIS_ERROR: 'closed' } })
  let isPaused = false
  t.teardown(() => { if (isPaused) server.resume() })
  t.match(await timedGet(app, object(FIXTURE_IDS.A)), { status: 200 })

  server.pause()
  isPaused = true
  const first = await timedGet(app, object(FIXTURE_IDS.A))
  t.comment(`closed, first request after the stall: ${first.ms} ms (${first.status})`)
  t.match(first, { status: 503, code: 'GW_UNAVAILABLE' })
  t.ok(first.ms <= BOUND_MS, `the first 503 took ${first.ms} ms ≤ ${BOUND_MS} ms`)
  const next: Timed[] = []
  for (let i = 0; i < 3; i++) next.push(await timedGet(app, object(FIXTURE_IDS.A)))
  t.comment(`closed, later requests: ${next.map((r) => `${r.ms} ms ${r.status}`).join(', ')}`)
  for (const r of next) {
    t.match(r, { status: 503, code: 'GW_UNAVAILABLE' })
    t.ok(r.ms < TIMEOUT_MS, `answered in ${r.ms} ms, without waiting a Redis timeout (${TIMEOUT_MS} ms)`)
  }
  t.ok(((await skippedBy(app)).limits ?? 0) >= 3, 'the limit checks were skipped, not attempted')

  server.resume()
  isPaused = false
  await waitFor('the background probe to find Redis back', () => app.redisHealth.state === 'up')
  t.match(await timedGet(app, object(FIXTURE_IDS.A)), { status: 200 }, 'served again without a restart')
})
