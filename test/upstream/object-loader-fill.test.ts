// The object loader's fill: predicted ids ride after the requested ones in the same call, and are in
// flight like them (a request for one joins the call instead of making another).
import { test } from 'tap'
import { buildTestApp, demoAuth, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { uniquePrefix } from '../consumer-helper.js'
import { waitFor } from '../fixtures/wait.js'
import { listMembers, objectCalls } from '../fixtures/prediction.js'

test('a predicted id requested while its call is in flight joins that call', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { PREFETCH_DELAY_MS: 600000 } })
  const members = await listMembers(app, 'good')
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 300 })
  const first = app.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(app) })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const second = await app.inject({ url: `/v1/objects/${members[1] as string}`, headers: demoAuth(app) })
  t.equal((await first).statusCode, 200)
  t.equal(second.statusCode, 200)
  t.equal((second.json() as { object: { id: string } }).object.id, members[1])
  t.equal(objectCalls(sandbox).length, 1, 'one objects/ call served both')
})

test('the fill stays under the bytes cap of a call', async (t) => {
  // Ten expected records per call, requested ones included.
  const config = { PREFETCH_DELAY_MS: 600000, PREFETCH_RECORD_BYTES: 16384, PREFETCH_MAX_BYTES_PER_CALL: 16384 * 10 }
  const { app, sandbox } = await buildTestApp(t, { config })
  const members = await listMembers(app, 'good')
  sandbox.resetCalls()
  const res = await app.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  const calls = objectCalls(sandbox)
  t.equal(calls.length, 1)
  t.equal(calls[0]?.[0], members[0], 'the requested id first')
  t.equal(calls[0]?.length, 10, 'the requested id and 9 predicted ones')
})

test('the fill is off with PREFETCH_ENABLED=false', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { PREFETCH_ENABLED: false } })
  const members = await listMembers(app, 'good')
  sandbox.resetCalls()
  await app.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(app) })
  t.strictSame(objectCalls(sandbox), [[members[0]]], 'only the requested id')
  t.equal(app.atlas.prefetch, undefined)
})

test('the upstream\'s "Max number of objects" reply to a filled call: the predicted ids are dropped and the requested ones sent again alone', async (t) => {
  // The upstream takes 5 ids a call, the gateway fills calls up to 20: the first filled call is refused.
  const { app, sandbox } = await buildTestApp(t, { sandbox: { maxObjectsPerCall: 5 }, config: { UPSTREAM_MAX_IDS_PER_CALL: 20, PREFETCH_DELAY_MS: 600000 } })
  const members = await listMembers(app, 'good')
  sandbox.resetCalls()
  const res = await app.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  t.equal((res.json() as { object: { id: string } }).object.id, members[0])
  const calls = objectCalls(sandbox)
  t.equal(calls[0]?.length, 20, 'the first call carried predicted ids and was refused')
  t.strictSame(calls.slice(1), [[members[0]]], 'then the requested id alone: predictions never split a call')
})

test('a predicted id requested while its call is in flight is still answered when the upstream refuses that call', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { sandbox: { maxObjectsPerCall: 5 }, config: { UPSTREAM_MAX_IDS_PER_CALL: 20, PREFETCH_DELAY_MS: 600000 } })
  const members = await listMembers(app, 'good')
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 300 })
  const first = app.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(app) })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.ok(app.upstream.objects.isTaken(members[1] as string), 'the second id rides the first call as a prediction')
  const second = await app.inject({ url: `/v1/objects/${members[1] as string}`, headers: demoAuth(app) })
  t.equal((await first).statusCode, 200)
  t.equal(second.statusCode, 200)
  t.equal((second.json() as { object: { id: string } }).object.id, members[1])
})

test('a predicted id in flight on one replica is not fetched again by another', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  // Two replicas on one Redis; A's filled call takes 800 ms, and B reads one of its predicted ids meanwhile.
  const sandbox = await startTestSandbox(t)
  const opts = { upstream: sandbox, config: { REDIS_KEY_PREFIX: uniquePrefix('predicted-fill'), PREFETCH_DELAY_MS: 600000 } }
  const a = (await buildTestApp(t, opts)).app
  const b = (await buildTestApp(t, opts)).app
  const members = await listMembers(a, 'good')
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 800 })
  const first = a.inject({ url: `/v1/objects/${members[0] as string}`, headers: demoAuth(a) })
  await waitFor('A\'s objects/ call to reach the upstream', () => objectCalls(sandbox).length === 1)
  t.ok(objectCalls(sandbox)[0]?.includes(members[1] as string), 'A\'s call carries the second member as a prediction')
  const second = await b.inject({ url: `/v1/objects/${members[1] as string}`, headers: demoAuth(b) })
  t.equal((await first).statusCode, 200)
  t.equal(second.statusCode, 200)
  t.equal((second.json() as { object: { id: string } }).object.id, members[1])
  t.equal(objectCalls(sandbox).length, 1, 'B waited for A\'s fill instead of calling again')
})
