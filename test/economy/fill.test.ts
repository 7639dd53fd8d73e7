// Filling objects/ calls (issue 13, items 1, 2 and 5). A call costs one budget token whether it carries
// 1 id or UPSTREAM_MAX_IDS_PER_CALL, so each call is topped up with the ids most likely to be read soon,
// list members are prefetched while the budget has headroom, and an NDJSON stream packs the misses of
// mostly cached chunks into full calls. Each case runs the same workload with the mechanism off (today's
// figure) and on.
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { storeTtlMs } from '../../src/cache/freshness.js'
import { objectKey } from '../../src/cache/keys.js'
import { views } from '../../src/cache/tags.js'
import type { Config } from '../../src/config.js'
import type { Sandbox } from '../../src/sandbox/index.js'
import { buildTestApp, demoAuth, startTestSandbox } from '../helper.js'
import { listMembers, objectCalls } from '../fixtures/prediction.js'

const MEMBERS_READ = 40

async function counterSum (app: FastifyInstance, name: 'predicted' | 'predictedRead'): Promise<number> {
  return (await app.metrics[name].get()).values.reduce((sum, v) => sum + v.value, 0)
}

/** A consumer reads a list, then reads members one by one (each read waits for the previous answer). */
async function listThenMembers (t: Test, sandbox: Sandbox, config: Partial<Config>) {
  const { app } = await buildTestApp(t, { upstream: sandbox, config })
  sandbox.resetCalls()
  const members = await listMembers(app, 'good')
  const read = members.slice(0, MEMBERS_READ)
  const statuses: string[] = []
  for (const id of read) {
    const res = await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })
    t.equal(res.statusCode, 200)
    t.equal((res.json() as { object: { id: string } }).object.id, id)
    statuses.push(String(res.headers['x-cache']))
  }
  return { app, members, read, statuses, calls: objectCalls(sandbox) }
}

test('list members read one by one: one objects/ call instead of one per member, requested ids first', async (t) => {
  const sandbox = await startTestSandbox(t)
  // A long delay keeps the list prefetch out of this case: only the fill works here.
  const before = await listThenMembers(t, sandbox, { PREFETCH_ENABLED: false })
  const after = await listThenMembers(t, sandbox, { PREFETCH_DELAY_MS: 600000 })
  t.comment(`${MEMBERS_READ} member reads after a list read: ${before.calls.length} objects/ calls before, ${after.calls.length} after`)
  t.equal(before.calls.length, MEMBERS_READ, 'today: one call per member read')
  t.equal(after.calls.length, 1, 'filled: the first read\'s call carried the other members')
  const [call] = after.calls as [string[]]
  t.equal(call[0], after.read[0], 'the requested id comes first')
  t.strictSame(new Set(call), new Set(after.members), 'the call carried the list\'s members (all fit in one call)')
  t.equal(after.statuses[0], 'MISS')
  t.ok(after.statuses.slice(1).every((s) => s === 'HIT'), 'every later member read is a cache hit')

  // Predicted records are stored like any other: the object's tag, the objects route's lifetime.
  const [entry] = await after.app.cache.getEntries([objectKey(after.read[1] as string)])
  t.ok(entry?.tags.includes(views.object(after.read[1] as string)), 'tagged with its object (writes invalidate it)')
  t.equal((entry?.expiresAt ?? 0) - (entry?.storedAt ?? 0), storeTtlMs(after.app.cache.freshness('objects')), 'the objects route\'s lifetime')

  const predicted = await counterSum(after.app, 'predicted')
  const read = await counterSum(after.app, 'predictedRead')
  t.equal(predicted, after.members.length - 1, 'every member but the requested one was predicted')
  t.equal(read, MEMBERS_READ - 1, 'each later member read counts as a prediction read')
  const metrics = (await after.app.inject({ url: '/metrics' })).body
  t.match(metrics, /gateway_predicted_total\{source="list"\} \d+/)
  t.match(metrics, /gateway_predicted_read_total\{source="list"\} \d+/)
  t.comment(`prediction hit rate: ${read} of ${predicted}`)
})

test('list prefetch: after a list read, uncached members are fetched in full calls while the budget has headroom', async (t) => {
  const config = { UPSTREAM_MAX_IDS_PER_CALL: 100, PREFETCH_DELAY_MS: 20, PREFETCH_MIN_IDS: 50 }
  const { app, sandbox } = await buildTestApp(t, { config })
  sandbox.resetCalls()
  const members = await listMembers(app, 'good')
  await app.atlas.prefetch?.settle()
  const calls = objectCalls(sandbox)
  const full = Math.floor(members.length / 100)
  t.comment(`list of ${members.length} members: ${calls.length} prefetch calls of ${calls.map((c) => c.length).join(', ')} ids`)
  t.equal(calls.length, full, 'one call per full call\'s worth of members')
  t.ok(calls.every((c) => c.length === 100), 'every prefetch call is full')
  t.equal(new Set(calls.flat()).size, full * 100, 'no id fetched twice')

  // The rest (fewer than PREFETCH_MIN_IDS) ride along the next consumer call.
  sandbox.resetCalls()
  const rest = members.filter((id) => !calls.flat().includes(id))
  for (const id of rest) {
    const res = await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })
    t.equal(res.statusCode, 200)
  }
  t.equal(objectCalls(sandbox).length, 1, `the other ${rest.length} members took one call`)
})

test('list prefetch waits while the budget is at its headroom', async (t) => {
  // A headroom of all the bucket but one token (the whole bucket fails at boot): after the list read
  // the budget is at it.
  const config = { UPSTREAM_RATE: '1000/hour', UPSTREAM_BACKGROUND_HEADROOM: '999', PREFETCH_DELAY_MS: 20, PREFETCH_MIN_IDS: 1 }
  const { app, sandbox } = await buildTestApp(t, { config })
  sandbox.resetCalls()
  await listMembers(app, 'good')
  await app.atlas.prefetch?.settle()
  t.equal(objectCalls(sandbox).length, 0, 'no prefetch call without headroom')
})

test('refresh ahead: hot records close to going stale ride along another read\'s call', async (t) => {
  // Records are fresh for 60 s and the horizon is 120 s: every hot cached record is due.
  const config = { CACHE_FRESHNESS: '{"objects":{"freshS":60}}', PREFETCH_HORIZON_S: 120, PREFETCH_DELAY_MS: 600000 }
  const { app, sandbox } = await buildTestApp(t, { config })
  const [hot, cold, next] = sandbox.ids().slice(0, 3).map(String) as [string, string, string]
  for (const id of [cold, hot, hot]) await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })
  const [before] = await app.cache.getEntries([objectKey(hot)])
  sandbox.resetCalls()
  await app.inject({ url: `/v1/objects/${next}`, headers: demoAuth(app) })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.strictSame(objectCalls(sandbox), [[next, hot]], 'the read\'s id first, then the hot record (read twice); not the cold one (read once)')
  const [after] = await app.cache.getEntries([objectKey(hot)])
  t.ok((after?.storedAt ?? 0) > (before?.storedAt ?? Infinity), 'the hot record was stored again')
  t.equal((await app.metrics.predicted.get()).values.find((v) => v.labels.source === 'refresh')?.value, 1)
})

test('NDJSON: ids cached as missing are not sent again, and the misses of mostly cached chunks share full calls', async (t) => {
  const CHUNK = 100
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: CHUNK } })
  const known = new Set(sandbox.ids().map(String))
  const real = sandbox.ids().slice(0, 1000).map(String)
  // Ids nobody holds: existing ids with their last digits changed.
  const unknown = real.slice(0, 40).map((id) => id.slice(0, 16) + '999').filter((id) => !known.has(id)).slice(0, 20)
  const post = async (ids: string[], ndjson: boolean) => app.inject({
    method: 'POST', url: '/v1/objects/query', payload: { ids }, headers: { ...demoAuth(app), ...(ndjson ? { accept: 'application/x-ndjson' } : {}) }
  })
  // Warm: 95 % of the real ids, and the unknown ones (cached as missing).
  const uncached = real.filter((_, i) => i % 20 === 7)
  const warm = await post(real.filter((id) => !uncached.includes(id)), false)
  t.equal(warm.statusCode, 200, warm.statusCode === 200 ? 'warmed' : warm.body.slice(0, 300))
  t.equal((await post(unknown, false)).statusCode, 200)

  // Every chunk of the stream holds a few uncached ids and one or two unknown ones.
  const ids = real.flatMap((id, i) => (i % 50 === 0 && unknown[i / 50] !== undefined ? [id, unknown[i / 50] as string] : [id]))
  const chunksWithMisses = new Set(ids.flatMap((id, i) => (uncached.includes(id) ? [Math.floor(i / CHUNK)] : []))).size
  sandbox.resetCalls()
  const res = await post(ids, true)
  t.equal(res.statusCode, 200)
  const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as { id: string, missing?: true, object?: unknown })
  t.strictSame(lines.map((l) => l.id), ids, 'one line per id, in request order')
  t.equal(lines.filter((l) => l.missing === true).length, unknown.length, 'the unknown ids are reported missing')
  const calls = objectCalls(sandbox)
  t.comment(`NDJSON of ${ids.length} ids in ${Math.ceil(ids.length / CHUNK)} chunks, ${uncached.length} uncached: one call per chunk with a miss would be ${chunksWithMisses}, packed: ${calls.length}`)
  t.equal(calls.length, Math.ceil(uncached.length / CHUNK), 'the misses of every chunk went out in full calls')
  t.strictSame(calls.flat().slice(0, uncached.length).sort(), [...uncached].sort(), 'exactly the uncached ids were asked for first')
  t.notOk(calls.flat().some((id) => unknown.includes(id)), 'no id cached as missing was sent upstream again')
})
