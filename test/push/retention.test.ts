// What push keeps in Redis and for how long: the snapshot a poll is compared with, and the events
// trimmed to PUSH_MAX_EVENTS and PUSH_RETENTION_S (resumes and streams told of a gap, never left to miss
// events silently).
import { test } from 'tap'
import { buildTestApp, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { bearer, consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'
import { openSse, type SseClient } from './sse-client.js'

const sleep = async (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitUntil (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

const eventIds = (c: SseClient) => c.events.filter((e) => e.id !== undefined && e.event !== 'shutdown').map((e) => e.id as string)

test('the snapshot a poll is compared with', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  t.test('one that is gone (expired, evicted) is stored again in full, never as no rows; the next leader announces nothing', async (t) => {
    const sandbox = await startTestSandbox(t)
    const reader = makeConsumer('reader', { scopes: ['read'] })
    const config = {
      CONSUMERS_FILE: consumersFile(t, [reader]),
      REDIS_KEY_PREFIX: uniquePrefix('push-snap'),
      PUSH_POLL_INTERVAL_MS: 300,
      PUSH_LEADER_TTL_MS: 600,
      PREFETCH_ENABLED: false
    } as never
    const SOURCE = 'vra/todo'
    const a = (await buildTestApp(t, { upstream: sandbox, config })).app
    const onA = await openSse(`${await a.listen({ port: 0, host: '127.0.0.1' })}/v1/vra/todo/events`, bearer(reader.key))
    await waitUntil('the baseline', async () => (await a.push.store.snapshot(SOURCE)) !== null)
    const baseline = await a.push.store.snapshot(SOURCE)
    const members = Object.keys(JSON.parse(baseline?.rows as string) as object).length - 1
    t.ok(members > 0, `the baseline holds the table's ${members} rows`)
    // What PEXPIRE or an eviction does to it; the leader's next poll finds nothing changed upstream.
    await a.redis?.del(`${a.config.REDIS_KEY_PREFIX}{push:${SOURCE}}:snap`)
    await waitUntil('the next poll', async () => (await a.push.store.snapshot(SOURCE)) !== null)
    const stored = (await a.push.store.snapshot(SOURCE))?.rows
    t.ok(stored === baseline?.rows, `the next poll stored the rows again (${stored?.length} bytes), not an empty snapshot`)
    await onA.close()
    await a.close()

    // Another replica takes over (a deploy): nothing changed upstream, so nothing is announced.
    const b = (await buildTestApp(t, { upstream: sandbox, config })).app
    const onB = await openSse(`${await b.listen({ port: 0, host: '127.0.0.1' })}/v1/vra/todo/events`, bearer(reader.key))
    await waitUntil('B to lead', () => b.push.leading().includes(SOURCE))
    const polled = (await b.push.store.snapshot(SOURCE))?.at as number
    await waitUntil('two polls by B', async () => ((await b.push.store.snapshot(SOURCE))?.at ?? 0) > polled + 300)
    t.equal(eventIds(onB).length, 0, 'no row announced as added')
    t.equal(((await b.push.store.page(SOURCE, '0-0', 1000)).events).length, 0, 'no event written')
    await onB.close()
  })

  // A snapshot the next leader cannot decode (cut short here; a foreign or damaged value alike): its
  // JSON.parse threw at every poll, so the source stopped for good: no event in 4 s after a write, one
  // warning ('poll loop failed') then debug only, and the lead renewed the bad snapshot's TTL all along.
  // Now it counts as none: the next poll takes a fresh baseline, one warning says so, and events flow.
  t.test('one that does not decode counts as none: a fresh baseline, one warning, and events flow again', async (t) => {
    const sandbox = await startTestSandbox(t)
    const reader = makeConsumer('reader', { scopes: ['read'] })
    const writer = makeConsumer('writer', { scopes: ['read', 'write:vra'] })
    const config = {
      CONSUMERS_FILE: consumersFile(t, [reader, writer]),
      REDIS_KEY_PREFIX: uniquePrefix('push-snap-bad'),
      PUSH_POLL_INTERVAL_MS: 200,
      PUSH_LEADER_TTL_MS: 600,
      PREFETCH_ENABLED: false
    } as never
    const SOURCE = 'vra/scores'
    const a = (await buildTestApp(t, { upstream: sandbox, config })).app
    const onA = await openSse(`${await a.listen({ port: 0, host: '127.0.0.1' })}/v1/vra/scores/events`, bearer(reader.key))
    await waitUntil('the baseline', async () => (await a.push.store.snapshot(SOURCE)) !== null)
    await onA.close()
    await a.close()
    const snapKey = `${a.config.REDIS_KEY_PREFIX}{push:${SOURCE}}:snap`
    const b = await buildTestApp(t, { upstream: sandbox, config })
    const full = await b.app.redis?.hget(snapKey, 'rows') as string
    await b.app.redis?.hset(snapKey, 'rows', full.slice(0, 100))

    const onB = await openSse(`${await b.app.listen({ port: 0, host: '127.0.0.1' })}/v1/vra/scores/events`, bearer(reader.key))
    await waitUntil('B to lead', () => b.app.push.leading().includes(SOURCE))
    const decodes = (text: string | null | undefined) => { try { JSON.parse(text as string); return true } catch { return false } }
    const rebased = await waitUntil('a snapshot that decodes', async () => decodes(await b.app.redis?.hget(snapKey, 'rows')), 10_000).then(() => true, () => false)
    t.ok(rebased, 'the next poll stored a fresh baseline over the cut snapshot')
    const id = String(sandbox.ids()[80])
    const posted = await b.app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...bearer(writer.key), 'content-type': 'application/json' }, payload: { id, preal: 0.5 } })
    t.equal(posted.statusCode, 201)
    const added = await onB.waitFor((events) => events.some((e) => e.event === 'row.added'), 10_000).then(() => true, () => false)
    t.ok(added, 'the write is announced (row.added)')
    await onB.close()

    const lines = b.logs().split('\n').filter((l) => l.includes('"component":"push"') && /"level":(40|50)/.test(l))
    t.equal(lines.filter((l) => l.includes('does not decode')).length, 1, 'one warning for the snapshot')
    t.same(lines.filter((l) => !l.includes('does not decode')), [], 'no other warning or error from push')
  })

  t.test('lives while its source is led, however long between polls', async (t) => {
    const sandbox = await startTestSandbox(t)
    const reader = makeConsumer('reader', { scopes: ['read'] })
    const { app } = await buildTestApp(t, {
      upstream: sandbox,
      config: {
        CONSUMERS_FILE: consumersFile(t, [reader]),
        REDIS_KEY_PREFIX: uniquePrefix('push-snap-ttl'),
        // Polls further apart than events are kept (as PUSH_POLL_MAX_INTERVAL_MS is by default).
        PUSH_POLL_INTERVAL_MS: 60_000,
        PUSH_RETENTION_S: 1,
        PUSH_LEADER_TTL_MS: 600,
        PREFETCH_ENABLED: false
      } as never
    })
    const c = await openSse(`${await app.listen({ port: 0, host: '127.0.0.1' })}/v1/vra/todo/events`, bearer(reader.key))
    await waitUntil('the baseline', async () => (await app.push.store.snapshot('vra/todo')) !== null)
    const baseline = await app.push.store.snapshot('vra/todo')
    await sleep(2500)
    const kept = await app.push.store.snapshot('vra/todo')
    t.ok(kept !== null && kept.rows === baseline?.rows && kept.at === baseline.at, 'still there, past PUSH_RETENTION_S, with no poll since')
    await c.close()
  })
})

test('events trimmed away unread', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const reader = makeConsumer('reader', { scopes: ['read'] })
  const { app } = await buildTestApp(t, {
    config: {
      CONSUMERS_FILE: consumersFile(t, [reader]),
      REDIS_KEY_PREFIX: uniquePrefix('push-trim'),
      PUSH_MAX_EVENTS: 50,
      PUSH_MAX_STREAMS_PER_CONSUMER: 20,
      PREFETCH_ENABLED: false
    } as never
  })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const SOURCE = 'vra/ranks'
  const store = app.push.store
  // Events written straight to the store as a leader would; the lead, taken first, keeps the poll out.
  t.ok(await store.lead(SOURCE, 'test', 600_000))
  const event = (i: number) => JSON.stringify({ type: 'row.added', source: SOURCE, id: String(i), detected_at: new Date().toISOString() })
  const commit = async (from: number, count: number) => await store.commit({ source: SOURCE, token: 'test', rows: '{}', at: Date.now(), events: Array.from({ length: count }, (_, i) => event(from + i)) }) as string[]

  const live = await openSse(`${base}/v1/vra/ranks/events`, bearer(reader.key))
  await live.waitFor(() => live.comments > 0)
  const ids = await commit(0, 300)
  const kept = ((await store.page(SOURCE, '0-0', 1000)).events).map((e) => e.id)
  t.same(kept, ids.slice(-50), 'PUSH_MAX_EVENTS kept, exactly')
  t.equal((await store.page(SOURCE, '0-0', 1)).trimmed, ids[249], 'the newest id trimmed away is known')

  await live.waitFor((events) => events.some((e) => e.id === ids[299]))
  t.same(live.events.map((e) => e.event), ['gap', ...kept.map(() => 'row.added')], 'an open stream whose next events were trimmed before it read them is told so first')
  t.same(eventIds(live), kept)

  const resumed = await openSse(`${base}/v1/vra/ranks/events`, { ...bearer(reader.key), 'last-event-id': ids[0] as string })
  await resumed.waitFor((events) => events.some((e) => e.id === ids[299]))
  t.same(resumed.events.map((e) => e.event), ['gap', ...kept.map(() => 'row.added')], 'a resume from before what is kept gets a gap first')
  t.match(JSON.parse(resumed.events[0]?.data as string), { type: 'gap', source: SOURCE })
  t.same(eventIds(resumed), kept)

  const exact = await openSse(`${base}/v1/vra/ranks/events`, { ...bearer(reader.key), 'last-event-id': ids[249] as string })
  await exact.waitFor((events) => events.some((e) => e.id === ids[299]))
  t.same(exact.events.map((e) => e.event), kept.map(() => 'row.added'), 'a resume from the newest id trimmed away misses nothing: no gap')
  await Promise.all([live, resumed, exact].map(async (c) => c.close()))
})
