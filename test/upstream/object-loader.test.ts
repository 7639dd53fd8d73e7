import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'

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
