// Writes' audit records and the admin reads through a stalled Redis (a redis-server this test starts and
// freezes with SIGSTOP; never the shared one). The audit store is one more user of the shared Redis
// health: while Redis is down a write is not held up by its audit append, the record is kept by the
// replica and appended once Redis answers (once, even when Redis ran the append that timed out), and
// the admin reads answer 503 with Retry-After at once instead of 500.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { startRedisServer } from '../fixtures/redis-server.js'
import { waitFor } from '../fixtures/wait.js'

const { A, B, C, D, E, U } = FIXTURE_IDS
const TIMEOUT_MS = 300

/** Redis calls `user` skipped because Redis was known down (they waited for nothing). */
async function skips (app: FastifyInstance, user: string): Promise<number> {
  return (await app.metrics.redisSkipped.get()).values.find((v) => v.labels.user === user)?.value ?? 0
}

async function timed (app: FastifyInstance, opts: { method?: 'GET' | 'POST', url: string, payload?: object }): Promise<{ ms: number, status: number, code: string | undefined, retryAfter: unknown }> {
  const started = performance.now()
  const res = await app.inject({ ...opts, headers: demoAuth(app) })
  const ms = Math.round(performance.now() - started)
  const code = String(res.headers['content-type']).includes('json') ? res.json<{ code?: string }>().code : undefined
  return { ms, status: res.statusCode, code, retryAfter: res.headers['retry-after'] }
}

test('Redis stalled: writes wait for their audit one timeout at most, and every record reaches the stream once after', async (t) => {
  const redis = await startRedisServer(t)
  let isPaused = false
  t.teardown(() => { if (isPaused) redis.resume() })
  const { app, logs } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, LIMITS_ON_REDIS_ERROR: 'open' } })
  const write = async (id: string) => timed(app, { method: 'POST', url: '/v1/vra/todo', payload: { id } })
  t.equal((await write(A)).status, 201, 'a write before the stall')

  redis.pause()
  isPaused = true
  const stalled = []
  const skipped = await skips(app, 'audit')
  for (const id of [B, C, D, E]) stalled.push(await write(id))
  t.ok(stalled.every((w) => w.status === 200 || w.status === 201), `the writes are served (${stalled.map((w) => w.status).join(', ')}; ${stalled.map((w) => w.ms).join(', ')} ms)`)
  // Redis is found stalled by the first write (its invalidation or its append); the later appends do
  // not try it (before: each waited a timeout).
  const appendsSkipped = await skips(app, 'audit') - skipped
  t.ok(appendsSkipped >= 3, `the later appends skip Redis, known down (${appendsSkipped} of 4 skipped)`)

  redis.resume()
  isPaused = false
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  const objectsInStream = async (): Promise<string[]> => (await app.audit.store.query({ limit: 100 })).records.flatMap((r) => r.object_ids)
  await waitFor('every record in the stream', async () => (await objectsInStream()).length >= 5, { timeoutMs: 3000 })
  // Past one resend interval: nothing comes twice.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.same((await objectsInStream()).sort(), [A, B, C, D, E].sort(), 'each write once (the append Redis ran late is not appended again)')
  t.notMatch(logs(), /its only record/, 'no log line claims to be a record\'s only trace')
})

test('Redis stalled during an audit append: the record Redis ran late is not appended again', async (t) => {
  const redis = await startRedisServer(t)
  let isPaused = false
  t.teardown(() => { if (isPaused) redis.resume() })
  const { app, sandbox, logs } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, LIMITS_ON_REDIS_ERROR: 'open' } })
  sandbox.resetCalls()
  // An unknown object: its write invalidates nothing, so the audit append is the first Redis call after
  // the upstream answers, and Redis stalls while the call is out.
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 1000 })
  const write = timed(app, { method: 'POST', url: '/v1/vra/scores', payload: { id: U } })
  await waitFor('the write to reach the upstream', () => sandbox.calls.get('vrascores') === 1)
  redis.pause()
  isPaused = true
  const res = await write
  t.equal(res.status, 404)
  t.match(logs(), /"user":"audit"[^\n]*redis unavailable/, 'the append timed out')
  redis.resume()
  isPaused = false
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  await waitFor('the record kept', () => logs().includes('audit records kept while Redis was down are in the audit now'), { timeoutMs: 3000 })
  const records = (await app.audit.store.query({ limit: 100 })).records
  t.same(records.map((r) => r.object_ids), [[U]], 'once (before the resend checked, twice)')
})

test('admin reads while Redis is down: 503 with Retry-After, at once after the first', async (t) => {
  const redis = await startRedisServer(t)
  let isPaused = false
  t.teardown(() => { if (isPaused) redis.resume() })
  const { app } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, LIMITS_ON_REDIS_ERROR: 'open' } })
  const reads = ['/v1/admin/audit', '/v1/admin/usage?month=2026-01', '/v1/admin/consumers']
  for (const url of reads) t.equal((await timed(app, { url })).status, 200, `${url} before the stall`)

  redis.pause()
  isPaused = true
  const stalled = []
  const skipped = await skips(app, 'admin')
  for (const url of [...reads, ...reads]) stalled.push({ url, ...await timed(app, { url }) })
  for (const r of stalled) {
    t.equal(r.status, 503, `${r.url}: 503 (before: 500 GW_INTERNAL; ${r.ms} ms)`)
    t.equal(r.code, 'GW_UNAVAILABLE')
    t.equal(r.retryAfter, '1')
  }
  // The first read finds Redis stalled; the others do not try it (before: each waited a timeout).
  const readsSkipped = await skips(app, 'admin') - skipped
  t.ok(readsSkipped >= stalled.length - 1, `the later reads skip Redis, known down (${readsSkipped} of ${stalled.length} skipped)`)

  redis.resume()
  isPaused = false
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  for (const url of reads) t.equal((await timed(app, { url })).status, 200, `${url} after`)
})

test('a long admin scan of a healthy Redis is not taken for Redis failing', async (t) => {
  const redis = await startRedisServer(t)
  // A command timeout of 100 ms, and 60,000 records to scan (120 XRANGE pages): the scan takes longer
  // than one timeout, each of its round trips far less.
  const { app } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: 100, LIMITS_ON_REDIS_ERROR: 'closed' } })
  const key = `${app.config.REDIS_KEY_PREFIX}audit`
  const record = { time: new Date().toISOString(), consumer: 'bot', request_id: 'r', route: 'POST /v1/vra/todo', dialect: 'v1', endpoint: 'vratodo', object_ids: [A], list: null, fields: { objectid: A }, outcome: 'queued', upstream_status: 201, error: null }
  for (let i = 0; i < 60_000; i += 5000) {
    const pipeline = app.redis!.pipeline()
    for (let k = 0; k < 5000; k++) pipeline.xadd(key, '*', 'r', JSON.stringify({ ...record, request_id: `r${i + k}` }))
    await pipeline.exec()
  }
  const started = performance.now()
  const scan = await timed(app, { url: `/v1/admin/audit?object=${U}` })
  t.comment(`the scan took ${Math.round(performance.now() - started)} ms`)
  t.equal(scan.status, 200, `answered (before: 503 GW_UNAVAILABLE, ${scan.code ?? ''})`)
  t.equal(app.redisHealth.state, 'up', 'Redis is not marked down (before: down, for the cache, limits and budget too)')
  t.equal((await timed(app, { url: `/v1/objects/${A}` })).status, 200, 'an object read right after, limits closed on a Redis error')
})
