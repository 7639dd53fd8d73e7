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
// A bound for a loaded 2-core machine, not an exact duration.
const MARGIN_MS = 150

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
  for (const id of [B, C, D, E]) stalled.push(await write(id))
  t.ok(stalled.every((w) => w.status === 200 || w.status === 201), `the writes are served (${stalled.map((w) => w.status).join(', ')})`)
  t.ok((stalled[0]?.ms ?? Infinity) <= TIMEOUT_MS + MARGIN_MS, `the first waits one timeout at most (${stalled[0]?.ms} ms; before: ~2 timeouts)`)
  t.ok(stalled.slice(1).every((w) => w.ms < MARGIN_MS), `the later ones do not wait (${stalled.slice(1).map((w) => w.ms).join(', ')} ms; before: ~1 timeout each)`)

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
  for (const url of [...reads, ...reads]) stalled.push({ url, ...await timed(app, { url }) })
  for (const r of stalled) {
    t.equal(r.status, 503, `${r.url}: 503 (before: 500 GW_INTERNAL)`)
    t.equal(r.code, 'GW_UNAVAILABLE')
    t.equal(r.retryAfter, '1')
  }
  t.ok((stalled[0]?.ms ?? Infinity) <= TIMEOUT_MS + MARGIN_MS, `the first waits one timeout at most (${stalled[0]?.ms} ms)`)
  t.ok(stalled.slice(1).every((r) => r.ms < MARGIN_MS), `the others answer at once (${stalled.slice(1).map((r) => r.ms).join(', ')} ms; before: ~1 timeout each)`)

  redis.resume()
  isPaused = false
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  for (const url of reads) t.equal((await timed(app, { url })).status, 200, `${url} after`)
})
