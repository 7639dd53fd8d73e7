// A read made after a write never takes its answer from an upstream call that left before the write:
// such a call answers (and, joined, would store) what the write replaced. Until 2026-12-02 a read of an
// object after a write to it joined an objects/ call in flight since before the write and stored the
// pre-write record as fresh, and a table read joined a read of the table started before the write.
import { test } from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Sandbox } from '../../src/sandbox/index.js'
import { buildTestApp, demoAuth, FIXTURE_IDS, sandboxPost, TEST_REDIS_URL } from '../helper.js'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
// The first read's call is held this long by the sandbox; the write comes WRITE_AT ms into it.
const CALL_MS = 1500
const WRITE_AT_MS = 300
// The sandbox's detection list ids: good (2), eyeball (4).
const EYEBALL = '4'

const listOf = (res: { json: () => unknown }): string => String((res.json() as { object: { detection_list_id: unknown } }).object.detection_list_id)

function objectCalls (sandbox: Sandbox): number {
  return sandbox.received.filter((r) => r.endpoint === 'objects').length
}

async function upstreamListOf (sandbox: Sandbox, id: string): Promise<string | undefined> {
  const { text } = await sandboxPost(sandbox, 'objects', { objects: id })
  return /"detection_list_id":\s*(\d+)/.exec(text)?.[1]
}

/** Moves `id` to the eyeball list while a read of it (X) is in flight; then reads it (Y) and again later (Z). */
async function writeDuringRead (t: Test, app: FastifyInstance, sandbox: Sandbox, id: string, firstUrl: string) {
  const h = demoAuth(app)
  sandbox.resetCalls()
  sandbox.inject({ kind: 'delay', endpoint: 'objects', delayMs: CALL_MS })
  const x = app.inject({ url: firstUrl, headers: h })
  await sleep(WRITE_AT_MS)
  const w = await app.inject({ method: 'PUT', url: `/v1/objects/${id}/detection-list`, headers: { ...h, 'content-type': 'application/json' }, payload: { list: 'eyeball' } })
  t.equal(w.statusCode, 200, 'the write went through')
  const y = await app.inject({ url: `/v1/objects/${id}`, headers: h })
  t.equal((await x).statusCode, 200)
  await app.cache.drain()
  const z = await app.inject({ url: `/v1/objects/${id}`, headers: h })
  const calls = objectCalls(sandbox)
  t.equal(await upstreamListOf(sandbox, id), EYEBALL, 'the upstream has the write')
  t.equal(y.statusCode, 200)
  t.equal(listOf(y), EYEBALL, 'a read after the write answers the written record')
  t.equal(z.statusCode, 200)
  t.equal(listOf(z), EYEBALL, 'the record cached after the write is the written one')
  t.equal(z.headers['x-cache'], 'HIT')
  return calls
}

const modes = [{ name: 'without Redis', useRedis: false }, { name: 'with Redis', useRedis: true }]

for (const { name, useRedis } of modes) {
  const skip = useRedis && TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false

  test(`${name}: a read after a write does not join an objects/ call sent before it`, { skip }, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis, config: { PREFETCH_ENABLED: false } })
    const id = FIXTURE_IDS.C
    const calls = await writeDuringRead(t, app, sandbox, id, `/v1/objects/${id}`)
    t.equal(calls, 2, 'one objects/ call for the read before the write, one for the read after it')
  })

  test(`${name}: a table read after a write does not join a read of the table started before it`, { skip }, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis, config: { PREFETCH_ENABLED: false } })
    const h = demoAuth(app)
    const lists = (await app.inject({ url: '/v1/lists', headers: h })).json() as { lists: Array<{ name: string, kind: string }> }
    const list = lists.lists.find((l) => l.kind === 'custom')?.name as string
    const id = FIXTURE_IDS.E
    const url = `/v1/custom-lists/${list}/objects`
    const has = (res: { json: () => unknown }): boolean =>
      (res.json() as { objects: Array<{ id?: string, transient_object_id?: string }> }).objects.some((o) => (o.transient_object_id ?? o.id) === id)
    sandbox.resetCalls()
    sandbox.inject({ kind: 'delay', endpoint: 'objectgroupslist', delayMs: CALL_MS })
    const x = app.inject({ url, headers: h })
    await sleep(WRITE_AT_MS)
    const w = await app.inject({ method: 'PUT', url: `${url}/${id}`, headers: h })
    t.equal(w.statusCode, 201, 'the write added the object')
    const y = await app.inject({ url, headers: h })
    const xr = await x
    t.equal(xr.statusCode, 200)
    t.notOk(has(xr), 'the read before the write answers the table before it')
    t.equal(y.statusCode, 200)
    t.ok(has(y), 'a read after the write answers the written table')
    const z = await app.inject({ url, headers: h })
    t.ok(has(z), 'and so does the entry cached')
    t.equal(z.headers['x-cache'], 'HIT')
    t.equal(sandbox.received.filter((r) => r.endpoint === 'objectgroupslist').length, 2, 'one read of the table before the write, one after it')
  })
}

test('with Redis: a read after a write does not join the call a prediction of that id rides', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { PREFETCH_DELAY_MS: 600000 } })
  const h = demoAuth(app)
  const list = await app.inject({ url: '/v1/lists/good/objects', headers: h })
  const members = (list.json() as { objects: Array<{ id: string }> }).objects.map((o) => o.id)
  const member = members.find((m) => m !== FIXTURE_IDS.A) as string
  // The first read's call is topped up with the list's members: the member rides it as a prediction.
  const rides = sleep(WRITE_AT_MS / 2).then(() => app.upstream.objects.isTaken(member))
  const calls = await writeDuringRead(t, app, sandbox, member, `/v1/objects/${FIXTURE_IDS.A}`)
  t.ok(await rides, 'the member rode the first call')
  t.equal(calls, 2, 'the filled call, and one for the read after the write')
})
