// Usage per consumer per UTC day: counted in memory, written in batches (on a timer, on demand and when
// the gateway closes), read back by GET /v1/admin/usage with filters and cursor pages. The days follow
// the app's clock (deps.now). test/quota/redis-round-trips.test.ts shows a hit still makes no Redis call.
import { test } from 'tap'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import type { UsageRow } from '../../src/usage/report.js'
import { createRedisUsageStore } from '../../src/usage/store.js'
import { buildTestApp, FIXTURE_IDS, TEST_REDIS_URL, UNUSED_UPSTREAM } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import { clearOfMidnight, waitFor } from '../fixtures/wait.js'
import { REDIS_SERVER_SKIP, startRedisServer } from '../fixtures/redis-server.js'
import { testKeyPrefix } from '../fixtures/redis-keys.js'

const { A, B, C } = FIXTURE_IDS

async function usage (app: FastifyInstance, key: string, query: string) {
  const res = await app.inject({ url: `/v1/admin/usage?${query}`, headers: bearer(key) })
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`)
  return res.json() as { rows: UsageRow[], next_cursor: string | null }
}

test('counts per consumer per day: route classes, units, upstream calls, cache, writes, errors, rejections', async (t) => {
  let now = Date.parse('2026-11-15T10:00:00Z')
  const alice = makeConsumer('alice', { scopes: ['read', 'write:vra'] })
  const tiny = makeConsumer('tiny', { rate: '1/hour' })
  const old = makeConsumer('old', { expires: '2026-11-01' })
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, tiny, old, admin]) }, deps: { now: () => now } })
  const get = async (url: string, key: string) => await app.inject({ url, headers: bearer(key) })

  for (let k = 0; k < 3; k++) t.equal((await get(`/v1/objects/${A}`, alice.key)).statusCode, 200)
  t.equal((await get(`/v1/objects?ids=${A},${B}`, alice.key)).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(alice.key), payload: { id: B } })).statusCode, 201)
  t.equal((await get('/v1/custom-lists/nope/objects', alice.key)).statusCode, 404)
  t.equal((await app.inject({ method: 'PUT', url: `/v1/objects/${A}/detection-list`, headers: bearer(alice.key), payload: { list: 'possible' } })).statusCode, 403)
  t.equal((await app.inject({ url: '/atlas/api/vratodolist/', headers: { authorization: `Token ${alice.key}` } })).statusCode, 200)
  t.equal((await get('/v1/me', tiny.key)).statusCode, 200)
  t.equal((await get('/v1/me', tiny.key)).statusCode, 429)
  t.equal((await get('/v1/me', old.key)).statusCode, 401)
  now = Date.parse('2026-11-16T00:00:01Z')
  t.equal((await get('/v1/me', alice.key)).statusCode, 200, 'the next UTC day')

  const { rows } = await usage(app, admin.key, 'month=2026-11')
  const row = (day: string, consumer: string) => rows.find((r) => r.day === day && r.consumer === consumer)
  t.match(row('2026-11-15', 'alice'), {
    requests: 8,
    // The detection-list move is under /v1/objects/:id.
    requests_by_class: { objects: 5, vra: 1, 'custom-lists': 1, 'compat-read': 1 },
    units: 5,
    writes: 1,
    client_errors: 1,
    errors: 0,
    rejections: { forbidden: 1 }
  })
  const alice15 = row('2026-11-15', 'alice') as UsageRow
  t.ok(alice15.upstream_calls >= 2, `the misses caused upstream calls (${alice15.upstream_calls})`)
  t.ok(alice15.cache_hits >= 2 && alice15.cache_hits < alice15.cache_lookups, `hits ${alice15.cache_hits} of ${alice15.cache_lookups}`)
  t.equal(alice15.cache_hit_ratio, Math.round(alice15.cache_hits / alice15.cache_lookups * 10000) / 10000)
  t.match(row('2026-11-15', 'tiny'), { requests: 2, rejections: { rate: 1 } })
  t.match(row('2026-11-15', 'old'), { requests: 1, rejections: { expired: 1 } })
  t.match(row('2026-11-16', 'alice'), { requests: 1, requests_by_class: { me: 1 } })

  // Filters and pages, in (day, consumer) order.
  // The admin's own reads are counted too, as they come: leave them out of the comparison.
  const all = rows.filter((r) => r.consumer !== 'ops').map((r) => `${r.day}|${r.consumer}`)
  t.strictSame(all, [...all].sort())
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const page: { rows: UsageRow[], next_cursor: string | null } = await usage(app, admin.key, `month=2026-11&limit=2${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`)
    t.ok(page.rows.length <= 2)
    seen.push(...page.rows.filter((r) => r.consumer !== 'ops').map((r) => `${r.day}|${r.consumer}`))
    cursor = page.next_cursor
  } while (cursor !== null)
  t.strictSame(seen, all, 'pages cover every row once')
  t.strictSame((await usage(app, admin.key, 'month=2026-11&consumer=alice')).rows.map((r) => r.day), ['2026-11-15', '2026-11-16'])
  t.strictSame((await usage(app, admin.key, 'from=2026-11-16&to=2026-11-30&consumer=alice')).rows.map((r) => r.day), ['2026-11-16'])
  t.equal((await usage(app, admin.key, 'month=2026-10')).rows.length, 0)
  for (const bad of ['month=2026-13', 'month=2026-11&from=2026-11-01&to=2026-11-02', 'from=2026-11-01', 'to=2026-11-01', '', 'from=2026-11-02&to=2026-11-01', 'from=2000-01-01&to=2026-11-01', 'from=2026-02-30&to=2026-03-01']) {
    t.equal((await get(`/v1/admin/usage?${bad}`, admin.key)).statusCode, 400, `400 for "${bad}"`)
  }
})

test('an objects/ call that serves several requests is counted once, on the request that paid for it', async (t) => {
  const now = Date.parse('2026-11-15T10:00:00Z')
  const alice = makeConsumer('alice')
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const { app, sandbox, logs } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]), PREFETCH_ENABLED: false }, deps: { now: () => now } })
  // Slow enough that the three misses gather into one call.
  sandbox.setOptions({ latencyMs: 50 })
  const answers = await Promise.all([A, B, C].map(async (id) => await app.inject({ url: `/v1/objects/${id}`, headers: bearer(alice.key) })))
  t.strictSame(answers.map((r) => r.statusCode), [200, 200, 200])
  const calls = sandbox.calls.get('objects') ?? 0
  t.ok(calls < 3, `the misses shared calls (${calls} objects/ calls)`)
  const logged = logs().split('\n').filter((l) => l.includes('"request completed"')).map((l) => JSON.parse(l) as { route: string, upstream_calls: number })
    .filter((l) => l.route === '/v1/objects/:id').reduce((sum, l) => sum + l.upstream_calls, 0)
  t.equal(logged, calls, 'the access lines count each call once')
  const { rows } = await usage(app, admin.key, 'from=2026-11-15&to=2026-11-15&consumer=alice')
  t.equal(rows[0]?.upstream_calls, calls, 'and so does usage')
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).json().usage.upstream_share_used, calls, 'as the share was charged')
})

test('a background refresh is counted in usage as the upstream call its read caused, as the share is charged for it', async (t) => {
  let now = Date.parse('2026-11-15T10:00:00Z')
  const alice = makeConsumer('alice')
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const { app, sandbox } = await buildTestApp(t, {
    config: {
      CONSUMERS_FILE: consumersFile(t, [alice, admin]),
      PREFETCH_ENABLED: false,
      CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 60, swrS: 600 }, lists: { freshS: 60, swrS: 600 } })
    },
    deps: { now: () => now }
  })
  const urls = [`/v1/objects/${A}`, '/v1/lists/good/objects']
  for (const url of urls) t.equal((await app.inject({ url, headers: bearer(alice.key) })).headers['x-cache'], 'MISS', `${url} loaded`)
  // Past fresh, inside stale-while-revalidate: each answer is STALE, and its refresh runs after it.
  now += 4 * 60_000
  for (const url of urls) {
    const res = await app.inject({ url, headers: bearer(alice.key) })
    t.equal(res.headers['x-cache'], 'STALE', url)
    t.equal(res.headers['x-cache-reason'], undefined, `${url}: being refreshed`)
  }
  await app.cache.drain()
  t.equal(sandbox.totalCalls(), 4, `two loads and two refreshes (${[...sandbox.calls].join(' ')})`)
  const share = (await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).json().usage.upstream_share_used
  t.equal(share, 4, 'the refreshes were charged to alice\'s share')
  const { rows } = await usage(app, admin.key, 'from=2026-11-15&to=2026-11-15&consumer=alice')
  t.equal(rows[0]?.upstream_calls, share, 'and usage counts them')
})

test('units are counted on the day the quota charged them, though the answer goes out on the next', async (t) => {
  const alice = makeConsumer('alice', { daily_objects: 10 })
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  let now = Date.parse('2026-11-30T23:59:59Z')
  // Without Redis: the quota's days follow the app's clock, as usage's do (with Redis, the server's).
  const { app } = await buildTestApp(t, {
    useRedis: false,
    config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) },
    deps: { now: () => now },
    register: (app) => {
      // The handler runs across midnight.
      app.post('/t/units', { config: { scope: 'read', units: () => 10 } }, async () => { now += 2000; return { ok: true } })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/t/units', headers: bearer(alice.key), payload: {} })).statusCode, 200, 'charged at 23:59:59, answered at 00:00:01')
  t.equal((await app.inject({ method: 'POST', url: '/t/units', headers: bearer(alice.key), payload: {} })).statusCode, 200, 'the new day\'s 10 units')
  const { rows } = await usage(app, admin.key, 'from=2026-11-30&to=2026-12-01&consumer=alice')
  t.strictSame(rows.map((r) => [r.day, r.units]), [['2026-11-30', 10], ['2026-12-01', 10]], 'each day within daily_objects, as the quota counted them')
})

test('units are counted on the quota\'s day after the clock steps back across midnight (the quota keeps the later day)', async (t) => {
  const cases = [
    { name: 'memory, one unit a store call', useRedis: false, config: {} },
    { name: 'memory, leased', useRedis: false, config: { LIMIT_LEASE_DIVISOR: 2 } },
    { name: 'Redis, one unit a store call', useRedis: true, config: {} },
    { name: 'Redis, leased', useRedis: true, config: { LIMIT_LEASE_DIVISOR: 2 } }
  ]
  for (const { name, useRedis, config } of cases) {
    await t.test(name, { skip: useRedis && TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
      const alice = makeConsumer('alice', { daily_objects: 20 })
      const admin = makeConsumer('ops', { scopes: ['admin'] })
      let now = Date.parse('2026-11-30T23:59:00Z')
      // With Redis the injected clock is passed to its script: the quota's days follow it there too.
      const { app } = await buildTestApp(t, {
        useRedis,
        config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]), ...config },
        deps: { now: () => now },
        register: (app) => {
          app.post('/t/units', { config: { scope: 'read', units: (r) => Number(r.headers['x-units']) } }, async () => ({ ok: true }))
        }
      })
      const post = async (units: number) => (await app.inject({ method: 'POST', url: '/t/units', headers: { ...bearer(alice.key), 'x-units': String(units) }, payload: {} })).statusCode
      t.equal(await post(20), 200, 'Nov 30: 20 units')
      now = Date.parse('2026-12-01T00:00:05Z')
      t.equal(await post(10), 200, 'Dec 1: 10 units')
      now = Date.parse('2026-11-30T23:59:50Z')
      t.equal(await post(10), 200, 'the clock stepped back to Nov 30 23:59:50: 10 more, which the quota counts on Dec 1')
      t.equal(await post(1), 429, 'Dec 1 is full')
      now = Date.parse('2026-12-01T00:00:30Z')
      const { rows } = await usage(app, admin.key, 'from=2026-11-30&to=2026-12-01&consumer=alice')
      // Before: [['2026-11-30', 30], ['2026-12-01', 10]], past Nov 30's daily_objects.
      t.strictSame(rows.map((r) => [r.day, r.units]), [['2026-11-30', 20], ['2026-12-01', 20]], 'each day as the quota counted it')
    })
  }
})

test('a flush on the timer, with Redis: one hash per day with its retention', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  await clearOfMidnight()
  const alice = makeConsumer('alice')
  const { app, config } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice]), USAGE_FLUSH_MS: 50, USAGE_RETENTION_DAYS: 30 } })
  const redis = new Redis(TEST_REDIS_URL)
  t.teardown(() => redis.disconnect())
  const day = new Date().toISOString().slice(0, 10)
  const key = `${config.REDIS_KEY_PREFIX}usage:{${day}}`
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).statusCode, 200)
  await waitFor('the timer to flush', async () => await redis.hget(key, 'alice|requests') === '1')
  const ttl = await redis.pttl(key)
  t.ok(ttl > 29 * 86400000 && ttl <= 32 * 86400000, `kept for the retention (${ttl} ms)`)
  const lastUsed = await redis.hgetall(`${config.REDIS_KEY_PREFIX}last-used`)
  t.ok(Number(lastUsed['consumer:alice']) > 0, 'last_used of the consumer')
  t.equal(Object.keys(lastUsed).filter((k) => k.startsWith('key:')).length, 1, 'and of its key, by hash')
  t.notOk(JSON.stringify(lastUsed).includes(alice.key), 'never the key itself')
})

// A day's hash expires at the start of the day USAGE_RETENTION_DAYS + 1 later, so today and the
// USAGE_RETENTION_DAYS days before it are all kept: a range that many days apart is answerable. It was
// refused with a 400 saying "at most USAGE_RETENTION_DAYS days apart" (the range check was one day short).
test('a range exactly USAGE_RETENTION_DAYS apart is answered whole, with Redis', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  await clearOfMidnight()
  const DAY = 86_400_000
  const retention = 3
  const alice = makeConsumer('alice')
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  // The app's clock picks the day counted; Redis expires the hashes by its own clock, today's.
  let now = Date.now() - retention * DAY
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]), USAGE_RETENTION_DAYS: retention }, deps: { now: () => now } })
  const first = new Date(now).toISOString().slice(0, 10)
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).statusCode, 200)
  await app.usage.flush()
  now = Date.now()
  const today = new Date(now).toISOString().slice(0, 10)
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).statusCode, 200)
  const res = await app.inject({ url: `/v1/admin/usage?from=${first}&to=${today}&consumer=alice`, headers: bearer(admin.key) })
  t.equal(res.statusCode, 200, `from ${first} to ${today}, ${retention} days apart: ${res.body}`)
  t.strictSame(res.statusCode === 200 ? (res.json() as { rows: UsageRow[] }).rows.map((r) => [r.day, r.requests]) : [], [[first, 1], [today, 1]], 'both ends still kept')
  const before = new Date(now - (retention + 1) * DAY).toISOString().slice(0, 10)
  const longer = await app.inject({ url: `/v1/admin/usage?from=${before}&to=${today}`, headers: bearer(admin.key) })
  t.equal(longer.statusCode, 400, 'a day more is refused')
  t.match(longer.json(), { code: 'GW_VALIDATION', detail: /at most USAGE_RETENTION_DAYS \(3\) days apart/ })
})

test('without Redis: counts reach the usage file when the gateway closes', async (t) => {
  await clearOfMidnight()
  const alice = makeConsumer('alice')
  const { app, config } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [alice]) } })
  for (let k = 0; k < 4; k++) await app.inject({ url: '/v1/me', headers: bearer(alice.key) })
  await app.close()
  const data = JSON.parse(readFileSync(config.USAGE_FILE, 'utf8')) as { days: Record<string, Record<string, Record<string, number>>>, last_used: Record<string, number> }
  const day = new Date().toISOString().slice(0, 10)
  t.equal(data.days[day]?.alice?.requests, 4)
  t.ok((data.last_used['consumer:alice'] ?? 0) > 0)
})

test('the final flush comes after the upstream calls still pending at close are abandoned: the write they end counts', async (t) => {
  await clearOfMidnight()
  const alice = makeConsumer('alice', { scopes: ['read', 'write:vra'] })
  const { app, config, sandbox } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [alice]) } })
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'vrascores', kind: 'hang' })
  const pending = app.inject({ method: 'POST', url: '/v1/vra/scores', headers: bearer(alice.key), payload: { id: B, preal: 0.2 } })
  await waitFor('the score upstream', () => (sandbox.calls.get('vrascores') ?? 0) >= 1)
  // Nothing waits for an injected request: the close abandons its upstream call, and it ends as a lost reply.
  await app.close()
  const answer = await pending
  // No file: the flush found nothing to write.
  const data = (existsSync(config.USAGE_FILE) ? JSON.parse(readFileSync(config.USAGE_FILE, 'utf8')) : { days: {} }) as { days: Record<string, Record<string, Record<string, number>>> }
  const counts = data.days[new Date().toISOString().slice(0, 10)]?.alice
  const audit = readFileSync(config.AUDIT_FILE, 'utf8').split('\n').filter(Boolean)
  t.comment(`answer ${answer.statusCode}; ${audit.length} audit record(s); usage ${JSON.stringify(counts)}`)
  t.equal(audit.length, 1, 'the audit keeps the write')
  // The request itself counts when its answer is sent, which nothing waits for here (a listening server
  // answers every request before its plugins close).
  t.match(counts, { writes: 1 }, 'and so does usage')
})

test('a store that cannot be written: the write is served and logged in full; usage waits for the next flush', async (t) => {
  await clearOfMidnight()
  const alice = makeConsumer('alice', { scopes: ['read', 'write:vra'] })
  const dir = join(t.testdir(), 'not-yet')
  const { app, config, logs } = await buildTestApp(t, {
    useRedis: false,
    config: { CONSUMERS_FILE: consumersFile(t, [alice]), AUDIT_FILE: join(dir, 'audit.jsonl'), USAGE_FILE: join(dir, 'usage.json') }
  })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(alice.key), payload: { id: B } })
  t.equal(res.statusCode, 201, 'the write is answered')
  const line = logs().split('\n').find((l) => l.includes('the audit store failed'))
  t.match(JSON.parse(line ?? '{}'), { level: 50, audit: { consumer: 'alice', endpoint: 'vratodo', request_id: res.headers['x-request-id'] } })
  await app.usage.flush()
  t.match(logs(), /usage flush failed; the counts are kept for the next/)
  mkdirSync(dir)
  await app.usage.flush()
  const data = JSON.parse(readFileSync(config.USAGE_FILE, 'utf8')) as { days: Record<string, Record<string, Record<string, number>>> }
  const day = new Date().toISOString().slice(0, 10)
  t.match(data.days[day]?.alice, { requests: 1, writes: 1 }, 'the counts of the failed flush arrive with the next')
})

test('units given back after a 5xx are not counted: usage matches what the quota kept', async (t) => {
  await clearOfMidnight()
  const reader = makeConsumer('reader')
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const { app } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [reader, admin]), ATLAS_BASE_URL: UNUSED_UPSTREAM } })
  const failed = await app.inject({ url: `/v1/objects?ids=${A},${B}`, headers: bearer(reader.key) })
  t.ok(failed.statusCode >= 500, `the upstream is down: ${failed.statusCode}`)
  await waitFor('the quota to give the units back', async () =>
    (await app.inject({ url: '/v1/me', headers: bearer(reader.key) })).json().usage.units_today === 0)
  const { rows } = await usage(app, admin.key, `month=${new Date().toISOString().slice(0, 7)}&consumer=reader`)
  t.match(rows, [{ requests_by_class: { objects: 1 }, units: 0, errors: 1 }], 'and usage counts none')
})

test('a flush whose reply is lost after Redis applied it is not counted twice when sent again', { skip: REDIS_SERVER_SKIP }, async (t) => {
  await clearOfMidnight()
  const server = await startRedisServer(t)
  const alice = makeConsumer('alice')
  const prefix = testKeyPrefix('usage-lost')
  // The timer is out of the way: the test flushes.
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice]), REDIS_URL: server.url, REDIS_KEY_PREFIX: prefix, REDIS_COMMAND_TIMEOUT_MS: 200, USAGE_FLUSH_MS: 600000 } })
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const key = `${prefix}usage:{${new Date().toISOString().slice(0, 10)}}`
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).statusCode, 200)
  // Redis is frozen while the batch is sent: the flush times out, and Redis applies it once it runs again.
  server.pause()
  let isPaused = true
  t.teardown(() => { if (isPaused) server.resume() })
  await app.usage.flush()
  server.resume()
  isPaused = false
  await waitFor('Redis to apply the batch', async () => await redis.hget(key, 'alice|requests') === '1')
  // Flushes skip Redis until the shared health sees it answer again.
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  await app.usage.flush()
  await app.usage.flush()
  t.equal(await redis.hget(key, 'alice|requests'), '1', 'the batch sent again counts once')
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).statusCode, 200)
  await app.usage.flush()
  t.equal(await redis.hget(key, 'alice|requests'), '2', 'and later counts still arrive')
})

test('last_used with Redis never goes back when replicas flush out of order', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const redis = new Redis(TEST_REDIS_URL)
  const prefix = testKeyPrefix('last-used')
  t.teardown(async () => {
    await redis.del(`${prefix}last-used`)
    await redis.quit()
  })
  const store = createRedisUsageStore(redis, prefix, 30)
  const noon = Date.parse('2026-12-01T12:00:00Z')
  // Replica A saw the consumer at 12:00 and flushes first; replica B saw it at 11:59 and flushes after.
  await store.add({ id: 'a', delta: new Map(), lastUsed: new Map([['consumer:c', noon], ['key:k', noon]]) })
  await store.add({ id: 'b', delta: new Map(), lastUsed: new Map([['consumer:c', noon - 60_000], ['key:k', noon + 1]]) })
  t.same(await store.lastUsed(), { 'consumer:c': noon, 'key:k': noon + 1 }, 'the latest of both, whatever the order')
})
