import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'

test('100 concurrent requests for overlapping id sets: at most one objects/ call per batching window', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_BATCH_WINDOW_MS: 50 } })
  const pool = sandbox.ids().slice(0, 60).map(String)
  sandbox.resetCalls()
  const before = app.upstream.objects.windows
  const requests = Array.from({ length: 100 }, (_, i) => {
    const ids = [pool[i % 60], pool[(i * 7) % 60], pool[(i * 13 + 5) % 60]].join(',')
    return app.inject({ url: `/v1/objects?ids=${ids}`, headers: demoAuth(app) })
  })
  const results = await Promise.all(requests)
  t.ok(results.every((r) => r.statusCode === 200), 'all answered')
  const windows = app.upstream.objects.windows - before
  const calls = sandbox.calls.get('objects') ?? 0
  t.comment(`100 requests over 60 distinct ids: ${windows} window(s), ${calls} objects/ call(s)`)
  t.ok(calls <= windows, `objects/ calls (${calls}) ≤ windows used (${windows})`)
  t.ok(calls < 100, 'far fewer calls than requests')
  for (const r of results) {
    const body = r.json() as { objects: Array<{ object: { id: string } }> }
    t.ok(body.objects.every((o) => pool.includes(o.object.id)))
  }
})

test('the upstream\'s "Max number of objects" reply halves the chunk size and retries', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { sandbox: { maxObjectsPerCall: 5 }, config: { UPSTREAM_MAX_IDS_PER_CALL: 20 } })
  const ids = sandbox.ids().slice(0, 20).map(String)
  const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: demoAuth(app), payload: { ids: [...ids, FIXTURE_IDS.U] } })
  t.equal(res.statusCode, 200)
  t.same(res.json().objects.map((o: { object: { id: string } }) => o.object.id), ids)
  t.ok(app.upstream.objects.maxIds <= 5, `chunk size lowered to ${app.upstream.objects.maxIds}`)
})

test('the "Max number of objects" reply states the limit: the chunk size becomes that limit, in as few calls as it allows', async (t) => {
  // 20 ids against a limit of 7: the refused call, then 7 + 7 + 6. Halving would send 10 + 10 (refused
  // again), then 5 four times, and keep 5 ids a call below the limit.
  const { app, sandbox } = await buildTestApp(t, { sandbox: { maxObjectsPerCall: 7 }, config: { UPSTREAM_MAX_IDS_PER_CALL: 20, PREFETCH_ENABLED: false } })
  const ids = sandbox.ids().slice(0, 20).map(String)
  sandbox.resetCalls()
  const res = await app.inject({ url: `/v1/objects?ids=${ids.join(',')}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  t.same(res.json().objects.map((o: { object: { id: string } }) => o.object.id), ids)
  t.equal(sandbox.calls.get('objects'), 4, 'the refused call and 3 of up to 7 ids')
  t.equal(app.upstream.objects.maxIds, 7, 'the chunk size is the stated limit')
})

test('gateway_upstream_objects_wait_seconds: an id that finds every upstream connection busy waits for a call to return, and the metric shows it', async (t) => {
  // One connection and a budget that earns a call every few µs (no batching window): the second miss
  // waits for the first call, which the sandbox holds for LATENCY_MS, to return; it would leave anyway
  // after UPSTREAM_BATCH_WINDOW_MAX_MS (calls can hang), set far beyond that here.
  const LATENCY_MS = 200
  const HOLD_MAX_MS = 3000
  const { app, sandbox } = await buildTestApp(t, { sandbox: { latencyMs: LATENCY_MS }, config: { UPSTREAM_CONNECTIONS: 1, UPSTREAM_RATE: '1000000000/hour', UPSTREAM_BATCH_WINDOW_MAX_MS: HOLD_MAX_MS } })
  const [a, b] = sandbox.ids().slice(0, 2).map(String)
  const waits = async () => {
    const values = (await app.metrics.objectsWait.get()).values
    const of = (suffix: string, le?: number) => values.find((v) => v.metricName === `gateway_upstream_objects_wait_seconds${suffix}` && (le === undefined || v.labels.le === le))?.value ?? 0
    return { count: of('_count'), sum: of('_sum'), under10ms: of('_bucket', 0.01) }
  }
  const before = await waits()
  sandbox.resetCalls()
  const first = app.inject({ url: `/v1/objects/${a as string}`, headers: demoAuth(app) })
  await waitFor('the first objects/ call to reach the sandbox', () => (sandbox.calls.get('objects') ?? 0) >= 1)
  const second = app.inject({ url: `/v1/objects/${b as string}`, headers: demoAuth(app) })
  t.same([(await first).statusCode, (await second).statusCode], [200, 200])
  t.equal(sandbox.calls.get('objects'), 2, 'two calls: the second left once the first returned')
  const after = await waits()
  t.equal(after.count - before.count, 2, 'one observation per id asked for')
  t.equal(after.under10ms - before.under10ms, 1, 'the first id left at once')
  const waited = after.sum - before.sum
  t.ok(waited >= (LATENCY_MS * 0.6) / 1000 && waited < (HOLD_MAX_MS * 0.6) / 1000, `the second waited for the first call to return, not for the hold to end (${(waited * 1000).toFixed(0)} ms in all)`)
})
