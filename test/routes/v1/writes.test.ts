import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../../helper.js'

const { A, B, C, D, E, F, U } = FIXTURE_IDS

test('custom-list membership: 201 added, 200 already, 204 removed, 404 not a member; reads see it', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const before = (await app.inject({ url: '/v1/custom-lists/vra/objects', headers: auth })).json()
  t.notOk(before.objects.some((r: { transient_object_id: string }) => r.transient_object_id === D))
  const added = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(added.statusCode, 201)
  t.same(added.json(), { list: 'vra', id: D, outcome: 'added' })
  const after = (await app.inject({ url: '/v1/custom-lists/vra/objects', headers: auth })).json()
  t.ok(after.objects.some((r: { transient_object_id: string }) => r.transient_object_id === D), 'the write invalidated the cached members')
  const again = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(again.statusCode, 200)
  t.equal(again.json().outcome, 'already_member')
  const removed = await app.inject({ method: 'DELETE', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(removed.statusCode, 204)
  t.equal(removed.body, '')
  const repeat = await app.inject({ method: 'DELETE', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(repeat.statusCode, 404)
  t.equal(repeat.json().code, 'GW_NOT_FOUND')
  const unknown = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${U}`, headers: auth })
  t.equal(unknown.statusCode, 404)
  sandbox.resetCalls()
  t.equal((await app.inject({ method: 'PUT', url: '/v1/custom-lists/nope/objects/' + A, headers: auth })).statusCode, 404, 'an unknown list is 404, as the README says')
  t.equal((await app.inject({ method: 'PUT', url: '/v1/custom-lists/vra/objects/123', headers: auth })).statusCode, 400)
  t.equal(sandbox.totalCalls(), 0)
})

test('bulk membership: one result per distinct id, in order', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  sandbox.resetCalls()
  const res = await app.inject({
    method: 'POST',
    url: '/v1/custom-lists/mookodi/members',
    headers: demoAuth(app),
    payload: { add: [E, U, E], remove: [B, F] }
  })
  t.equal(res.statusCode, 200)
  t.same(res.json().results.map((r: { id: string, op: string, outcome: string }) => [r.id, r.op, r.outcome]), [
    [E, 'add', 'added'], [U, 'add', 'unknown_object'],
    [B, 'remove', 'removed'], [F, 'remove', 'not_member']
  ])
  t.equal(sandbox.calls.get('objectgroups'), 2)
  t.equal(sandbox.calls.get('objectgroupsdelete'), 2)
})

test('bulk membership: an id sent twice is written and charged once; one both added and removed is a 400', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const units = async (): Promise<number> => (await app.inject({ url: '/v1/me', headers: auth })).json().usage.units_today
  const post = (payload: object) => app.inject({ method: 'POST', url: '/v1/custom-lists/mookodi/members', headers: auth, payload })
  sandbox.resetCalls()
  const before = await units()
  // Was 5 identical upstream writes (5 tokens of the shared budget) and 5 units, answered 5 times.
  const five = await post({ add: [A, A, A, A, A] })
  t.equal(five.statusCode, 200)
  t.same(five.json().results.map((r: { id: string, op: string }) => [r.id, r.op]), [[A, 'add']], 'answered once, as GET /v1/objects answers a repeated id')
  t.equal(sandbox.calls.get('objectgroups'), 1, 'one upstream write')
  t.equal(await units(), before + 1, 'one unit: 1 per distinct requested id')

  sandbox.resetCalls()
  const mixed = await post({ add: [B, C, B], remove: [D, D] })
  t.same(mixed.json().results.map((r: { id: string, op: string }) => [r.id, r.op]), [[B, 'add'], [C, 'add'], [D, 'remove']])
  t.equal(sandbox.calls.get('objectgroups'), 2)
  t.equal(sandbox.calls.get('objectgroupsdelete'), 1)
  t.equal(await units(), before + 4)

  sandbox.resetCalls()
  const both = await post({ add: [C, A], remove: [B, A] })
  t.equal(both.statusCode, 400, 'an id both added and removed: which was meant cannot be told')
  t.equal(both.json().code, 'GW_VALIDATION')
  t.same(both.json().errors, [{ path: '/body/remove/1', message: 'is also in add; send each id in one of add and remove' }])
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
  t.equal(await units(), before + 4, 'and nothing was charged')
})

test('bulk membership stops calling upstream when the budget is spent, and says so per id', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_RATE: '2/hour' } })
  sandbox.resetCalls()
  const res = await app.inject({ method: 'POST', url: '/v1/custom-lists/salt/members', headers: demoAuth(app), payload: { add: [A, B, C, D] } })
  t.equal(res.statusCode, 200)
  const results = res.json().results
  t.same(results.map((r: { outcome: string }) => r.outcome), ['added', 'added', 'failed', 'not_attempted'])
  t.same(results.slice(2).map((r: { code: string }) => r.code), ['GW_UPSTREAM_BUDGET', 'GW_UPSTREAM_BUDGET'])
  t.equal(sandbox.calls.get('objectgroups'), 2)
})

test('VRA writes: scores 201, todo 201 then 200, ranks 201, unknown objects 404; tables refreshed', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const before = (await app.inject({ url: `/v1/vra/scores?ids=${E}`, headers: auth })).json().count
  const score = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: E, preal: 0.9, pgal: 0.1, rank: 7.5 } })
  t.equal(score.statusCode, 201)
  t.same(score.json(), { id: E, outcome: 'created' })
  t.equal((await app.inject({ url: `/v1/vra/scores?ids=${E}`, headers: auth })).json().count, before + 1, 'the cached table was invalidated')
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: U } })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: E, preal: 2 } })).statusCode, 400)

  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: D } })).statusCode, 201)
  const dup = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: D } })
  t.equal(dup.statusCode, 200)
  t.equal(dup.json().outcome, 'already_queued')
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: U } })).statusCode, 404)

  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: { id: A, rank: 3 } })).statusCode, 201)
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: { id: A } })).statusCode, 400, 'rank is required')
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: { id: U, rank: 3 } })).statusCode, 404)
})

test('detection list: moves with POST upstream, never GET; 404 for unknown objects', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const before = (await app.inject({ url: '/v1/lists/possible/objects', headers: auth })).json()
  t.notOk(before.objects.some((r: { id: string }) => r.id === E))
  const res = await app.inject({ method: 'PUT', url: `/v1/objects/${E}/detection-list`, headers: auth, payload: { list: 'possible' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { id: E, list: 'possible', outcome: 'moved' })
  const after = (await app.inject({ url: '/v1/lists/possible/objects', headers: auth })).json()
  t.ok(after.objects.some((r: { id: string }) => r.id === E), 'the lists were invalidated')
  t.equal((await app.inject({ method: 'PUT', url: `/v1/objects/${U}/detection-list`, headers: auth, payload: { list: 'eyeball' } })).statusCode, 404)
  sandbox.resetCalls()
  t.equal((await app.inject({ method: 'PUT', url: `/v1/objects/${E}/detection-list`, headers: auth, payload: { list: 'good' } })).statusCode, 400)
  t.equal(sandbox.totalCalls(), 0)
})
