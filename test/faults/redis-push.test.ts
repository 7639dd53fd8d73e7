// Push through a stalled or dead Redis (a redis-server this test starts, freezes with SIGSTOP or kills;
// never the shared one). The push store is one more user of the shared Redis health: while Redis is
// down, an event stream's open is refused at once (503, Retry-After) instead of waiting its own
// timeout, a stream slot claimed by an open that timed out is given back once Redis answers, and the
// fan-out and poll loops skip Redis quietly, logging changes of state only.
import { test } from 'tap'
import { buildTestApp, demoAuth } from '../helper.js'
import { startRedisServer } from '../fixtures/redis-server.js'
import { waitFor } from '../fixtures/wait.js'
import { openSse, type SseClient } from '../push/sse-client.js'

const TIMEOUT_MS = 300
const EVENTS = '/v1/lists/good/events'

test('Redis stalled as streams open: 503 at once after the first, and no slot is left held once Redis answers', async (t) => {
  const redis = await startRedisServer(t)
  let isPaused = false
  t.teardown(() => { if (isPaused) redis.resume() })
  const { app } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, PUSH_MAX_STREAMS_PER_CONSUMER: 2, PREFETCH_ENABLED: false } })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const auth = demoAuth(app)
  const streamsKey = `${app.config.REDIS_KEY_PREFIX}{push-streams:demo}`
  const open = async (): Promise<{ client: SseClient, ms: number }> => {
    const started = performance.now()
    const client = await openSse(base + EVENTS, auth)
    return { client, ms: Math.round(performance.now() - started) }
  }
  // One stream first, so that Redis holds the claim script and runs a stalled claim by its SHA.
  const first = await open()
  t.equal(first.client.status, 200)
  await first.client.close()
  await waitFor('the first stream\'s slot to be given back', async () => await app.redis!.zcard(streamsKey) === 0)

  redis.pause()
  isPaused = true
  const skipped = (await app.metrics.redisSkipped.get()).values.find((v) => v.labels.user === 'push')?.value ?? 0
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ url: EVENTS, headers: { ...auth, accept: 'text/event-stream' } })
    t.equal(res.statusCode, 503)
    t.equal(res.headers['retry-after'], '1')
  }
  // The first open finds Redis stalled; the later ones do not try it (before: each waited a timeout).
  const opensSkipped = ((await app.metrics.redisSkipped.get()).values.find((v) => v.labels.user === 'push')?.value ?? 0) - skipped
  t.ok(opensSkipped >= 2, `later opens skip Redis, known down (${opensSkipped} push calls skipped)`)

  redis.resume()
  isPaused = false
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  await waitFor('the slots of refused opens to be given back', async () => await app.redis!.zcard(streamsKey) === 0, { timeoutMs: 3000 })
  const streams = [await open(), await open()]
  t.same(streams.map((s) => s.client.status), [200, 200], 'the key holds its two streams (before: 429, its slots held by opens refused with 503)')
  for (const s of streams) await s.client.close()
})

test('Redis dead while a stream is open: push logs the change, not every retry, and carries on after', async (t) => {
  const redis = await startRedisServer(t)
  const { app, logs } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: TIMEOUT_MS, PREFETCH_ENABLED: false } })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const stream = await openSse(base + EVENTS, demoAuth(app))
  t.equal(stream.status, 200)
  t.teardown(async () => { await stream.close() })
  await waitFor('the source to be polled', () => app.push.leading().length === 1)
  const mark = logs().length
  await redis.kill()
  // The fan-out reads every 200 ms and the poll loop ticks every third of PUSH_LEADER_TTL_MS.
  await new Promise((resolve) => setTimeout(resolve, 4000))
  const pushLines = logs().slice(mark).split('\n').filter((l) => l.includes('"component":"push"') && /"level":(40|50)/.test(l))
  const byMsg = new Map<string, number>()
  for (const line of pushLines) {
    const msg = String((JSON.parse(line) as { msg?: unknown }).msg)
    byMsg.set(msg, (byMsg.get(msg) ?? 0) + 1)
  }
  const counts = [...byMsg].map(([msg, n]) => `${msg} ×${n}`).join('; ')
  t.ok(pushLines.length <= 2, `push warns once per loop as Redis goes (${pushLines.length} lines: ${counts})`)

  await startRedisServer(t, { port: redis.port })
  await waitFor('Redis back', () => app.redisHealth.state === 'up', { timeoutMs: 10_000 })
  await waitFor('the source to be polled again', () => app.push.leading().length === 1, { timeoutMs: 10_000 })
  t.match(logs().slice(mark), /push: reading new events again/, 'the recovery is logged')
})
