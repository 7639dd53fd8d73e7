// The Idempotency-Key header on v1 writes: validation, replay of the first final outcome, 422 for the
// same key on another request, 409 or a bounded wait for a concurrent duplicate, keys per consumer,
// what is not kept, and the Redis keys (prefix, TTL). The behaviour is run on Redis and on memory.
import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import { buildTestApp, demoAuth, FIXTURE_IDS, TEST_REDIS_URL } from '../helper.js'
import { startRedisServer } from '../fixtures/redis-server.js'
import { redisCommandsDuring, startMonitor } from '../fixtures/redis-monitor.js'
import { waitFor } from '../fixtures/wait.js'
import { parseRedisUrl } from '../../src/lib/redis-url.js'

const { A, B, C, D, E, U } = FIXTURE_IDS
const KEY_HEADER = 'idempotency-key'
const DAY_MS = 24 * 60 * 60 * 1000

for (const useRedis of TEST_REDIS_URL === '' ? [false] : [true, false]) {
  const where = useRedis ? 'Redis' : 'memory'

  test(`${where}: a malformed Idempotency-Key is a 400 naming the header, before any upstream call`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis })
    const auth = demoAuth(app)
    sandbox.resetCalls()
    for (const bad of ['""', 'two words', 'x'.repeat(256), '"a", "b"', 'a,b', '"k";p=1', '"unterminated', 'back\\slash']) {
      const res = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, [KEY_HEADER]: bad }, payload: { id: A } })
      t.equal(res.statusCode, 400, bad)
      t.equal(res.json().code, 'GW_VALIDATION')
      t.equal(res.json().errors[0].path, '/headers/idempotency-key')
    }
    t.equal(sandbox.totalCalls(), 0)
  })

  test(`${where}: the first outcome is replayed; the same key on another request is a 422`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis })
    const auth = demoAuth(app)
    sandbox.resetCalls()
    // The draft's form is a quoted string; a bare value is the same key.
    const first = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, [KEY_HEADER]: '"order-1"' }, payload: { id: D } })
    t.equal(first.statusCode, 201)
    t.equal(first.headers['idempotent-replayed'], undefined)
    // The same request, with the id as a bare JSON number.
    const again = await app.inject({
      method: 'POST', url: '/v1/vra/todo', headers: { ...auth, [KEY_HEADER]: 'order-1', 'content-type': 'application/json' }, payload: `{"id":${D}}`
    })
    t.equal(again.statusCode, 201, 'not "200 already queued": the first answer')
    t.equal(again.body, first.body)
    t.equal(again.headers['content-type'], first.headers['content-type'])
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(sandbox.calls.get('vratodo'), 1)

    const otherBody = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, [KEY_HEADER]: 'order-1' }, payload: { id: E } })
    t.equal(otherBody.statusCode, 422)
    t.equal(otherBody.json().code, 'GW_IDEMPOTENCY_KEY_REUSED')
    const otherRoute = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: { ...auth, [KEY_HEADER]: 'order-1' }, payload: { id: D, rank: 1 } })
    t.equal(otherRoute.statusCode, 422)
    const otherPath = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: { ...auth, [KEY_HEADER]: 'order-1' } })
    t.equal(otherPath.statusCode, 422)
    t.equal(sandbox.totalCalls(), 1, 'nothing else reached the upstream')

    // A final refusal is an outcome too; a 204 replays empty.
    const unknown = { method: 'POST' as const, url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'unknown-object' }, payload: { id: U } }
    t.equal((await app.inject(unknown)).statusCode, 404)
    const replayed404 = await app.inject(unknown)
    t.equal(replayed404.statusCode, 404)
    t.equal(replayed404.headers['content-type'], 'application/problem+json; charset=utf-8')
    t.equal(replayed404.headers['idempotent-replayed'], 'true')
    t.equal(sandbox.calls.get('vrascores'), 1)
    t.equal((await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${E}`, headers: auth })).statusCode, 201)
    const remove = { method: 'DELETE' as const, url: `/v1/custom-lists/vra/objects/${E}`, headers: { ...auth, [KEY_HEADER]: 'remove-e' } }
    t.equal((await app.inject(remove)).statusCode, 204)
    const replayed204 = await app.inject(remove)
    t.equal(replayed204.statusCode, 204, 'not "404 not a member"')
    t.equal(replayed204.body, '')
  })

  test(`${where}: keys belong to a consumer; a refused request holds none`, async (t) => {
    const one = makeConsumer('writer-one', { scopes: ['read', 'write:vra'] })
    const two = makeConsumer('writer-two', { scopes: ['read', 'write:vra'] })
    const reader = makeConsumer('reader', { scopes: ['read'] })
    const { app, sandbox } = await buildTestApp(t, { useRedis, config: { CONSUMERS_FILE: consumersFile(t, [one, two, reader]) } })
    sandbox.resetCalls()
    const send = (key: string, id: string) => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...bearer(key), [KEY_HEADER]: 'shared-key' }, payload: { id } })
    t.equal((await send(one.key, A)).statusCode, 201)
    const other = await send(two.key, B)
    t.equal(other.statusCode, 201, 'another consumer\'s same key is another key: no 422')
    t.equal(other.headers['idempotent-replayed'], undefined)
    t.equal(sandbox.calls.get('vrascores'), 2)

    t.equal((await send(reader.key, A)).statusCode, 403)
    const { idempotency } = app.atlas
    t.equal(await idempotency.store.get(idempotency.storeKey('reader', 'shared-key')), undefined, 'the 403 kept nothing')
    t.equal((await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...bearer(two.key), [KEY_HEADER]: 'invalid-body' }, payload: { id: A, preal: 2 } })).statusCode, 400)
    t.equal(await idempotency.store.get(idempotency.storeKey('writer-two', 'invalid-body')), undefined, 'nor did the 400')
  })

  test(`${where}: an upstream failure is not kept, so a retry with the same key runs`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis })
    const headers = { ...demoAuth(app), [KEY_HEADER]: 'flaky' }
    sandbox.resetCalls()
    sandbox.inject({ endpoint: 'vratodo', kind: 'html500' })
    const failed = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: E } })
    t.equal(failed.statusCode, 502)
    const retry = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: E } })
    t.equal(retry.statusCode, 201)
    t.equal(retry.headers['idempotent-replayed'], undefined)
    t.equal(sandbox.calls.get('vratodo'), 2)
  })

  test(`${where}: a concurrent duplicate waits for the first and gets its answer; past the wait, 409`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis, config: { IDEMPOTENCY_WAIT_MS: 5000 } })
    const auth = demoAuth(app)
    sandbox.resetCalls()
    sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 300 })
    const send = () => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'twice' }, payload: { id: C, preal: 0.3 } })
    const [first, second] = await Promise.all([send(), send()])
    t.same([first?.statusCode, second?.statusCode], [201, 201])
    t.equal(first?.body, second?.body)
    t.equal([first, second].filter((r) => r?.headers['idempotent-replayed'] === 'true').length, 1, 'one ran, one was replayed')
    t.equal(sandbox.calls.get('vrascores'), 1)

    const { app: impatient, sandbox: slow } = await buildTestApp(t, { useRedis, config: { IDEMPOTENCY_WAIT_MS: 0 } })
    const headers = { ...demoAuth(impatient), [KEY_HEADER]: 'twice' }
    slow.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 500 })
    const running = impatient.inject({ method: 'POST', url: '/v1/vra/scores', headers, payload: { id: C } })
    await waitFor('the first write to reach the upstream', () => slow.calls.get('vrascores') === 1)
    const conflict = await impatient.inject({ method: 'POST', url: '/v1/vra/scores', headers, payload: { id: C } })
    t.equal(conflict.statusCode, 409)
    t.equal(conflict.json().code, 'GW_IDEMPOTENCY_IN_PROGRESS')
    t.equal(conflict.headers['retry-after'], '1')
    t.equal((await running).statusCode, 201)
    t.equal((await impatient.inject({ method: 'POST', url: '/v1/vra/scores', headers, payload: { id: C } })).headers['idempotent-replayed'], 'true')
    t.equal(slow.calls.get('vrascores'), 1)
  })

  test(`${where}: a replayed bulk change sends nothing upstream and charges no object units`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis })
    const auth = demoAuth(app)
    const headers = { ...auth, [KEY_HEADER]: 'bulk-1' }
    const payload = { add: [A, B], remove: [C] }
    const first = await app.inject({ method: 'POST', url: '/v1/custom-lists/heloise/members', headers, payload })
    t.equal(first.statusCode, 200)
    const units = (await app.inject({ url: '/v1/me', headers: auth })).json().usage.units_today
    sandbox.resetCalls()
    const replay = await app.inject({ method: 'POST', url: '/v1/custom-lists/heloise/members', headers, payload })
    t.equal(replay.body, first.body)
    t.equal(replay.headers['idempotent-replayed'], 'true')
    t.equal(sandbox.totalCalls(), 0)
    t.equal((await app.inject({ url: '/v1/me', headers: auth })).json().usage.units_today, units)
  })
}

// MONITOR sees one server's commands: on a Cluster or behind Sentinel (the REDIS_URL matrix) this one is skipped.
const ONE_SERVER_SKIP = TEST_REDIS_URL === '' ? 'needs REDIS_URL' : parseRedisUrl(TEST_REDIS_URL).kind === 'single' ? false : 'MONITOR needs one server'

test('Redis: outcomes live under REDIS_KEY_PREFIX for 24 h, markers on a short lease; no key, no Redis work', { skip: ONE_SERVER_SKIP }, async (t) => {
  const { app, sandbox, config } = await buildTestApp(t, { useRedis: true, config: { UPSTREAM_TIMEOUT_MS: 5000 } })
  const auth = demoAuth(app)
  const redis = new Redis(TEST_REDIS_URL)
  t.teardown(() => redis.quit())
  const isIdempotencyKey = (args: string[]): boolean => args.some((a) => a.startsWith(`${config.REDIS_KEY_PREFIX}idem:`))
  // MONITOR through the fixture's plain socket: with other suites keeping the shared Redis busy, ioredis's
  // monitor() took lines that arrived with MONITOR's +OK for replies to commands never sent ("Command queue
  // state error"), which failed this test and left its connection open, so the file then timed out.
  // redisCommandsDuring waits until MONITOR has shown a marker sent after the writes were answered, so it
  // has every command sent before that (auto-pipelined ones, which leave a tick later, included). A
  // command sent after an answer has finished is out of any such check's reach: one sent from the
  // response's 'finish' reached Redis after the marker.
  const duringWrites = await redisCommandsDuring(t, TEST_REDIS_URL, async () => {
    await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: B } })
    await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${B}`, headers: auth })
  })
  const touched = duringWrites.filter(isIdempotencyKey).map((args) => args.join(' '))
  t.same(touched, [], 'writes without the header never touch the idempotency keys')

  const scripts: string[] = []
  await startMonitor(t, TEST_REDIS_URL, (args) => { if (isIdempotencyKey(args)) scripts.push(args.join(' ')) })

  const consumerId = (await app.inject({ url: '/v1/me', headers: auth })).json().id as string
  const key = app.atlas.idempotency.storeKey(consumerId, 'ttl-check')
  t.ok(key.startsWith(`${config.REDIS_KEY_PREFIX}idem:`))
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 300 })
  const running = app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'ttl-check' }, payload: { id: B } })
  await waitFor('the marker', async () => (await redis.exists(key)) === 1)
  const lease = await redis.pttl(key)
  t.ok(lease > 0 && lease <= 30_000, `the in-progress marker lapses on its own (${lease} ms)`)
  t.equal((await running).statusCode, 201)
  const ttl = await redis.pttl(key)
  t.ok(ttl > DAY_MS - 60_000 && ttl <= DAY_MS, `the outcome is kept 24 h (${ttl} ms)`)
  t.equal(JSON.parse(await redis.get(key) ?? '{}').status, 201)
  await waitFor('the monitor to see the scripts', () => scripts.length >= 2)
})

test('Redis stalled: a write with a key is refused with 503 rather than run unchecked; one without is served', async (t) => {
  const redis = await startRedisServer(t)
  t.teardown(() => { redis.resume() })
  const { app, sandbox } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: 200, LIMITS_ON_REDIS_ERROR: 'open' } })
  const auth = demoAuth(app)
  sandbox.resetCalls()
  redis.pause()
  const keyed = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'redis-stalled' }, payload: { id: A } })
  t.equal(keyed.statusCode, 503)
  t.equal(keyed.json().code, 'GW_UNAVAILABLE')
  t.equal(keyed.headers['retry-after'], '1')
  t.equal(sandbox.calls.get('vrascores'), undefined, 'not sent upstream')
  const plain = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: A } })
  t.equal(plain.statusCode, 201, 'a write without a key does not need the store')
  redis.resume()
})

/**
 * An app on its own redis-server (limits open), and that server's freeze. The command timeout is the test
 * apps' 3 s: these tests need Redis to answer before the freeze and after it, and with 300 ms a loaded
 * machine's healthy Redis did not (a claim timed out: 503 where a write was expected to run).
 */
async function stallableApp (t: Test) {
  const redis = await startRedisServer(t)
  let isPaused = false
  t.teardown(() => { if (isPaused) redis.resume() })
  const { app, sandbox } = await buildTestApp(t, { config: { REDIS_URL: redis.url, LIMITS_ON_REDIS_ERROR: 'open' } })
  sandbox.resetCalls()
  return {
    app,
    sandbox,
    auth: demoAuth(app),
    pause: () => { redis.pause(); isPaused = true },
    resume: () => { redis.resume(); isPaused = false }
  }
}

test('Redis stalled as a keyed write finishes: its outcome is kept once Redis answers, and a retry replays it instead of writing again', async (t) => {
  const { app, sandbox, auth, pause, resume } = await stallableApp(t)
  // The sandbox applies the score, then answers 1.5 s later; Redis stalls meanwhile.
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 1500 })
  const send = async () => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'stall-at-finish' }, payload: { id: A, preal: 0.25 } })
  const first = send()
  await waitFor('the score to reach the upstream', () => sandbox.calls.get('vrascores') === 1)
  pause()
  const res = await first
  t.equal(res.statusCode, 201, 'the score was applied')
  t.equal(app.redisHealth.state, 'down', 'Redis stalled before the outcome could be kept')
  resume()
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  // A writer unsure of its answer retries with the same key until it gets an outcome (409 while the first
  // request's marker holds the key, for at most its 30 s lease).
  let retry = await send()
  const deadline = Date.now() + 40_000
  while ((retry.statusCode === 409 || retry.statusCode === 503) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500))
    retry = await send()
  }
  t.equal(retry.statusCode, 201)
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the first outcome, replayed')
  t.equal(retry.body, res.body)
  t.equal(sandbox.calls.get('vrascores'), 1, 'the score was sent upstream once')
})

test('Redis stalled as a key is claimed: the claim Redis runs late is released, so the retry runs at once', async (t) => {
  const { app, sandbox, auth, pause, resume } = await stallableApp(t)
  const send = async () => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'stall-at-claim' }, payload: { id: A, preal: 0.5 } })
  // A keyed write first, so that Redis holds the claim script and runs the stalled claim by its SHA.
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, [KEY_HEADER]: 'loads-the-script' }, payload: { id: B } })).statusCode, 201)
  sandbox.resetCalls()
  pause()
  const refused = await send()
  t.equal(refused.statusCode, 503, 'the claim timed out')
  t.equal(refused.headers['retry-after'], '1')
  // Thawed, Redis runs the claim it queued: a marker no request owns.
  resume()
  await waitFor('Redis back', () => app.redisHealth.state === 'up')
  // A retry reaching another replica finds the key free too: the marker is dropped once Redis answers.
  const key = app.atlas.idempotency.storeKey('demo', 'stall-at-claim')
  await waitFor('the unowned marker to be dropped', async () => await app.redis!.exists(key) === 0, { timeoutMs: 3000 })
  const started = performance.now()
  const retry = await send()
  const took = performance.now() - started
  t.equal(retry.statusCode, 201, `the advised retry runs (before: 409 GW_IDEMPOTENCY_IN_PROGRESS after ~5 s; ${Math.round(took)} ms)`)
  t.equal(sandbox.calls.get('vrascores'), 1)
  const held = JSON.parse(await app.redis!.get(key) ?? '{}')
  t.equal(held.state, 'done', 'the key holds the outcome')
})
