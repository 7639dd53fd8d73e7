// Event streams over real HTTP, on the sandbox upstream (memory, or Redis when REDIS_URL is set): the
// events of gateway writes, ids and Last-Event-ID resumption, the per-consumer stream limit, input errors,
// a poll that shares the cache with readers, and the goodbye at shutdown.
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp } from '../helper.js'
import { bearer, consumersFile, makeConsumer, writeConsumers, type TestConsumer } from '../consumer-helper.js'
import type { ConsumerEntry } from '../../src/consumers/schema.js'
import { hashKey } from '../../src/consumers/keys.js'
import { pollInterval } from '../../src/push/poller.js'
import { openSse, type SseClient } from './sse-client.js'
import { waitFor } from '../fixtures/wait.js'

const LIST = 'mookodi'
const SOURCE = `lists/${LIST}`

/** An app with consumers `reader`, `writer` and `others`, listening. */
async function pushApp (t: Test, config: Record<string, string | number | boolean> = {}, others: TestConsumer[] = []) {
  const reader = makeConsumer('reader', { scopes: ['read'] })
  const writer = makeConsumer('writer', { scopes: ['read', 'write:custom-lists', 'write:vra'], lists: [LIST] })
  const consumersPath = consumersFile(t, [reader, writer, ...others])
  const built = await buildTestApp(t, {
    config: {
      CONSUMERS_FILE: consumersPath,
      PUSH_POLL_INTERVAL_MS: 100,
      PUSH_LEADER_TTL_MS: 300,
      PUSH_HEARTBEAT_MS: 200,
      PUSH_MAX_STREAMS_PER_CONSUMER: 3,
      PREFETCH_ENABLED: false,
      ...config
    } as never
  })
  const base = await built.app.listen({ port: 0, host: '127.0.0.1' })
  /** Rewrites the consumers file with `reader`, `writer` and these others. */
  const rewriteOthers = (next: Array<TestConsumer | ConsumerEntry>) => writeConsumers(consumersPath, [reader, writer, ...next])
  return { ...built, base, rewriteOthers, read: bearer(reader.key), write: bearer(writer.key) }
}

/** Resolves once the source has a stored snapshot (its first poll, the baseline, is done). */
async function baseline (app: FastifyInstance, source: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await app.push.store.snapshot(source) !== null) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`no baseline poll of ${source}`)
}

const dataOf = (c: SseClient) => c.events.filter((e) => e.id !== undefined).map((e) => JSON.parse(e.data) as { type: string, id: string, source: string })

test('event streams', async (t) => {
  t.test('a write becomes one event per stream, with an id; Last-Event-ID resumes after it', async (t) => {
    const { app, sandbox, base, read, write } = await pushApp(t)
    const [first, second] = sandbox.ids().slice(40, 42).map(String) as [string, string]
    const a = await openSse(`${base}/v1/lists/${LIST}/events`, read)
    t.teardown(() => a.close())
    t.equal(a.status, 200)
    t.match(a.headers['content-type'], /^text\/event-stream/)
    t.equal(a.headers['cache-control'], 'no-store')
    await baseline(app, SOURCE)

    const put = await app.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${first}`, headers: write })
    t.equal(put.statusCode, 201)
    await a.waitFor((events) => dataOf(a).length >= 1)
    const [added] = dataOf(a)
    t.match(added, { type: 'member.added', source: SOURCE, id: first })
    t.equal(a.events.find((e) => e.id !== undefined)?.event, 'member.added', 'the SSE event name is the type')
    const firstId = a.lastId() as string
    t.match(firstId, /^\d+-\d+$/)

    const del = await app.inject({ method: 'DELETE', url: `/v1/custom-lists/${LIST}/objects/${first}`, headers: write })
    t.equal(del.statusCode, 204)
    const put2 = await app.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${second}`, headers: write })
    t.equal(put2.statusCode, 201)
    await a.waitFor(() => dataOf(a).length >= 3)
    t.same(dataOf(a).map((e) => [e.type, e.id]), [['member.added', first], ['member.removed', first], ['member.added', second]])

    // A client that saw only the first event resumes after it: the other two, once each, in order.
    const b = await openSse(`${base}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': firstId })
    t.teardown(() => b.close())
    await b.waitFor(() => dataOf(b).length >= 2)
    t.same(b.events.filter((e) => e.id !== undefined).map((e) => e.id), a.events.filter((e) => e.id !== undefined).slice(1).map((e) => e.id))
    t.ok(b.retries.includes(1000), 'the stream names its reconnection delay')
    await b.waitFor(() => b.comments >= 2, 5000)
    t.pass('heartbeats come while the stream is idle')
  })

  t.test('the VRA tables emit events, each keyed as its table is (todo and ranks by object id)', async (t) => {
    const { app, sandbox, base, read, write } = await pushApp(t)
    const tables = ['scores', 'todo', 'ranks'] as const
    const streams = await Promise.all(tables.map(async (table) => openSse(`${base}/v1/vra/${table}/events`, read)))
    t.teardown(async () => { await Promise.all(streams.map(async (c) => c.close())) })
    for (const table of tables) await baseline(app, `vra/${table}`)
    const [todoId, rankId] = sandbox.ids().slice(60, 62).map(String) as [string, string]
    const post = async (table: string, body: object) => (await app.inject({ method: 'POST', url: `/v1/vra/${table}`, headers: { ...write, 'content-type': 'application/json' }, payload: body })).statusCode
    t.equal(await post('scores', { id: rankId, rank: 9.5 }), 201)
    t.equal(await post('todo', { id: todoId }), 201)
    t.equal(await post('ranks', { id: rankId, rank: 7.25 }), 201)
    const [scores, todo, ranks] = streams as [SseClient, SseClient, SseClient]
    await Promise.all(streams.map(async (c) => c.waitFor(() => dataOf(c).length >= 1)))
    t.match(dataOf(scores)[0], { type: 'row.added', source: 'vra/scores' })
    t.match(dataOf(todo).find((e) => e.id === todoId), { type: /^row\.(added|changed)$/, source: 'vra/todo' }, 'a to-do row is keyed by its object id')
    t.match(dataOf(ranks).find((e) => e.id === rankId), { type: /^row\.(added|changed)$/, source: 'vra/ranks', row: { rank: 7.25 } }, 'a rank is keyed by its object id')
  })

  t.test('a resume with more than 4 MB of backlog gets the first 4 MB, then the stream ends; resumes carry on', async (t) => {
    const { app, base, read } = await pushApp(t)
    const source = 'vra/scores'
    // Events written straight to the store by a leader that keeps the poller out of the way.
    t.ok(await app.push.store.lead(source, 'test', 600_000))
    const pad = 'x'.repeat(20_000)
    const events = Array.from({ length: 300 }, (_, i) => JSON.stringify({ type: 'row.added', source, id: String(i), row: { pad }, detected_at: new Date().toISOString() }))
    const ids = await app.push.store.commit({ source, token: 'test', rows: '{}', at: Date.now(), events }) as string[]
    const got: string[] = []
    let lastId = '0-0'
    for (let resume = 0; resume < 5 && got.length < ids.length; resume++) {
      const c = await openSse(`${base}/v1/vra/scores/events`, { ...read, 'last-event-id': lastId })
      t.equal(c.status, 200, `resume ${resume} is answered`)
      t.match(c.headers['content-type'], /^text\/event-stream/)
      const idsOf = () => c.events.filter((e) => e.id !== undefined).map((e) => e.id as string)
      // The gateway ends a stream whose backlog passed 4 MB; the last one stays open once up to date.
      await Promise.race([c.ended, c.waitFor(() => got.length + idsOf().length >= ids.length)])
      await c.close()
      const seen = idsOf()
      t.ok(seen.length > 0, `resume ${resume} carried events`)
      got.push(...seen)
      lastId = c.lastId() ?? lastId
    }
    t.same(got, ids, 'every event once, in order, over a few resumes')
  })

  t.test('input and limits', async (t) => {
    const { base, read } = await pushApp(t)
    const none = await openSse(`${base}/v1/lists/${LIST}/events`, {})
    t.equal(none.status, 401)
    await none.close()
    const unknown = await openSse(`${base}/v1/lists/nope/events`, read)
    t.equal(unknown.status, 404)
    await unknown.close()
    const table = await openSse(`${base}/v1/vra/nope/events`, read)
    t.equal(table.status, 404)
    await table.close()
    const bad = await openSse(`${base}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': 'yesterday' })
    t.equal(bad.status, 400)
    await bad.ended
    // Shaped like an id, but no stream id (parts are 64-bit), or the last one there is (nothing comes after it).
    for (const id of ['99999999999999999999-0', '1-18446744073709551616', '18446744073709551615-18446744073709551615']) {
      const outOfRange = await openSse(`${base}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': id })
      t.equal(outOfRange.status, 400, `Last-Event-ID ${id}`)
      await outOfRange.ended
    }
    // Ahead of the source's last event and of the clock: no event has it yet, and the stream would stay
    // silent until the clock passed it (the largest id with a successor: for ever).
    for (const id of [`${Date.now() + 3_600_000}-0`, '18446744073709551615-18446744073709551614']) {
      const future = await openSse(`${base}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': id })
      t.equal(future.status, 400, `Last-Event-ID ${id}, in the future`)
      await future.ended
    }
    const recent = await openSse(`${base}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': `${Date.now() - 1000}-0` })
    t.equal(recent.status, 200, 'an id from the past is taken, whatever the stream holds')
    await recent.close()
    const query = await openSse(`${base}/v1/lists/${LIST}/events?since=2025-01-01`, read)
    t.equal(query.status, 400, 'an unknown query parameter is refused as on every v1 route')
    await query.close()

    const open = await Promise.all([1, 2, 3].map(async () => openSse(`${base}/v1/vra/scores/events`, read)))
    t.same(open.map((c) => c.status), [200, 200, 200])
    const fourth = await openSse(`${base}/v1/vra/todo/events`, read)
    t.equal(fourth.status, 429, 'a fourth open stream of the key is refused')
    t.ok(Number(fourth.headers['retry-after']) > 0)
    await fourth.close()
    await open[0]?.close()
    let again: SseClient | undefined
    for (let i = 0; i < 50 && again?.status !== 200; i++) {
      await again?.close()
      again = await openSse(`${base}/v1/vra/todo/events`, read)
    }
    t.equal(again?.status, 200, 'a closed stream frees its place')
    await Promise.all([again?.close(), ...open.map(async (c) => c.close())])
  })

  // The limit counts a consumer's streams, whichever of its keys opened them; the 429 said "This key may
  // hold 3 open event streams" to a key that held none.
  t.test('the stream limit is per consumer: its keys share it, and the 429 says so', async (t) => {
    const [one, two] = [makeConsumer('multi'), makeConsumer('multi')]
    const multi = { key: one.key, entry: { id: 'multi', key_sha256: [hashKey(one.key), hashKey(two.key)] } }
    const { app, base } = await pushApp(t, {}, [multi])
    const open = await Promise.all([1, 2, 3].map(async () => openSse(`${base}/v1/vra/scores/events`, bearer(one.key))))
    t.teardown(async () => { await Promise.all(open.map(async (c) => c.close())) })
    t.same(open.map((c) => c.status), [200, 200, 200])
    const refused = await app.inject({ url: '/v1/vra/todo/events', headers: bearer(two.key) })
    t.equal(refused.statusCode, 429, 'the other key of the consumer holds no stream, and is refused')
    t.equal(refused.json().code, 'GW_RATE_LIMITED')
    t.equal(refused.json().detail, 'This consumer may hold 3 open event streams, whichever of its keys opened them; close one first.')
  })

  t.test('a poll shares the cache with readers and is counted', async (t) => {
    const { app, sandbox, base, read } = await pushApp(t, { CACHE_FRESHNESS: '{"vra-ranks":{"freshS":3600}}' })
    sandbox.resetCalls()
    const c = await openSse(`${base}/v1/vra/ranks/events`, read)
    t.teardown(() => c.close())
    await baseline(app, 'vra/ranks')
    t.equal(sandbox.calls.get('vraranklist'), 1, 'the baseline poll read the table once')
    const r = await app.inject({ url: '/v1/vra/ranks', headers: read })
    t.equal(r.statusCode, 200)
    t.equal(r.headers['x-cache'], 'HIT', 'a reader gets what the poll loaded')
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.equal(sandbox.calls.get('vraranklist'), 1, 'later polls found it fresh in the cache: no upstream call')
    const metrics = await app.inject({ url: '/metrics' })
    t.match(metrics.body, /gateway_push_poll_calls_total\{source="vra\/ranks"\} 1/)
    t.match(metrics.body, /gateway_push_subscribers\{source="vra\/ranks",kind="sse"\} 1/)
  })

  t.test('a stream ends once its key is no longer let in: its consumer disabled by a reload, or expired', async (t) => {
    const watcher = makeConsumer('watcher', { scopes: ['read'] })
    const revoked = makeConsumer('revoked', { scopes: ['read'] })
    // Far enough ahead for the stream to open first.
    const expiring = makeConsumer('expiring', { scopes: ['read'], expires: new Date(Date.now() + 4000).toISOString() })
    const { app, base, rewriteOthers } = await pushApp(t, {}, [watcher, revoked, expiring])
    const [kept, disabled, expired] = await Promise.all([watcher, revoked, expiring].map(async (c) => openSse(`${base}/v1/lists/${LIST}/events`, bearer(c.key))))
    t.teardown(async () => { await Promise.all([kept, disabled, expired].map(async (c) => c?.close())) })
    t.same([kept, disabled, expired].map((c) => c?.status), [200, 200, 200])
    const hasEnded = (c: SseClient) => {
      let isEnded = false
      c.ended.then(() => { isEnded = true }, () => {})
      return () => isEnded
    }
    const [disabledEnded, expiredEnded] = [hasEnded(disabled as SseClient), hasEnded(expired as SseClient)]
    rewriteOthers([watcher, { ...revoked.entry, disabled: true }, expiring])
    t.same(await app.consumers.reload(), { ok: true })
    await waitFor('the stream of the disabled consumer to end', disabledEnded, { timeoutMs: 10_000 })
    await waitFor('the stream of the expired consumer to end', expiredEnded, { timeoutMs: 15_000 })
    const heartbeats = kept?.comments ?? 0
    await kept?.waitFor(() => (kept?.comments ?? 0) > heartbeats)
    t.pass('the stream of a key still let in goes on')
    const again = await openSse(`${base}/v1/lists/${LIST}/events`, bearer(revoked.key))
    t.equal(again.status, 401, 'the reconnection is refused and says why')
    await again.close()
  })

  t.test('a stream ends once a reload takes the read scope from its consumer', async (t) => {
    const watcher = makeConsumer('scoped', { scopes: ['read', 'write:vra'] })
    const { app, base, rewriteOthers } = await pushApp(t, {}, [watcher])
    const stream = await openSse(`${base}/v1/lists/${LIST}/events`, bearer(watcher.key))
    t.teardown(async () => { await stream.close() })
    t.equal(stream.status, 200)
    let isEnded = false
    stream.ended.then(() => { isEnded = true }, () => {})
    rewriteOthers([{ ...watcher.entry, scopes: ['write:vra'] }])
    t.same(await app.consumers.reload(), { ok: true })
    await waitFor('the stream of the consumer without read to end', () => isEnded, { timeoutMs: 10_000 })
    const again = await openSse(`${base}/v1/lists/${LIST}/events`, bearer(watcher.key))
    t.equal(again.status, 403, 'the reconnection is refused and says why')
    await again.close()
  })

  t.test('shutdown ends every stream with retry: and a shutdown event', async (t) => {
    const { app, base, read } = await pushApp(t)
    const c = await openSse(`${base}/v1/lists/${LIST}/events`, read)
    await c.waitFor(() => c.retries.length > 0)
    await app.close()
    await c.ended
    t.equal(c.events.at(-1)?.event, 'shutdown')
    t.same(c.retries, [1000, 1000])
  })
})

test('no subscribers, no polling; the interval follows the budget', async (t) => {
  t.test('polls stop when the last stream closes', async (t) => {
    const { app, sandbox, base, read, write } = await pushApp(t)
    const c = await openSse(`${base}/v1/lists/${LIST}/events`, read)
    await baseline(app, SOURCE)
    await c.close()
    await new Promise((resolve) => setTimeout(resolve, 400))
    const before = sandbox.calls.get('objectlist') ?? 0
    t.equal((await app.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${String(sandbox.ids()[90])}`, headers: write })).statusCode, 201)
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.equal(sandbox.calls.get('objectlist') ?? 0, before, 'the list was not read again after its invalidation')
    t.same(app.push.leading(), [], 'no source is led')
  })

  t.test('a background refresh that fails brings one early re-poll, not one a second; its calls are counted', async (t) => {
    const { app, sandbox, base, read } = await pushApp(t, {
      PUSH_POLL_INTERVAL_MS: 60_000,
      CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 600, sieS: 3600 } })
    })
    // The list is cached, then goes stale, and the upstream fails from now on.
    t.equal((await app.inject({ url: `/v1/lists/${LIST}/objects`, headers: read })).statusCode, 200)
    await new Promise((resolve) => setTimeout(resolve, 1100))
    sandbox.resetCalls()
    sandbox.inject({ endpoint: 'objectlist', kind: 'status', status: 500, times: 1000 })
    const c = await openSse(`${base}/v1/lists/${LIST}/events`, read)
    t.teardown(() => c.close())
    // The baseline poll is answered stale and refreshes in the background; the early re-poll a second
    // later finds it still stale (the refresh failed) and refreshes again; the next poll is a minute away.
    const metric = async (name: string, labels: string) => {
      const line = (await app.inject({ url: '/metrics' })).body.split('\n').find((l) => l.startsWith(`${name}{${labels}} `))
      return Number(line?.split(' ')[1] ?? 0)
    }
    const polls = async () => await metric('gateway_push_polls_total', `source="${SOURCE}",result="baseline"`) + await metric('gateway_push_polls_total', `source="${SOURCE}",result="ok"`)
    await waitFor('the baseline poll and the early re-poll', async () => await polls() >= 2, { timeoutMs: 10_000 })
    await app.cache.drain()
    const calls = sandbox.calls.get('objectlist') ?? 0
    t.ok(calls >= 2, 'each poll\'s refresh went upstream')
    await new Promise((resolve) => setTimeout(resolve, 3000))
    await app.cache.drain()
    t.equal(await polls(), 2, 'no third poll before the interval')
    t.equal(sandbox.calls.get('objectlist') ?? 0, calls, 'no more upstream calls until the next interval')
    t.equal(await metric('gateway_push_poll_calls_total', `source="${SOURCE}"`), calls, 'the background refreshes are counted under the source')
  })

  t.test('the interval grows as the budget empties; no poll once the pace is spent', async (t) => {
    // 10/hour with a headroom of 5: the pace (work that can wait, polls included) holds 5 tokens.
    const { app, read } = await pushApp(t, { UPSTREAM_RATE: '10/hour', UPSTREAM_BACKGROUND_HEADROOM: '5' })
    t.equal(pollInterval(app), 100, 'before any upstream call: the base interval')
    const ids = ['1161600211221604900', '1161601191221611900', '1033249000275412900', '1123049421122328000', '1004244331411607400']
    for (const id of ids.slice(0, 3)) t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: read })).statusCode, 200)
    t.equal(pollInterval(app), Math.round(100 * (10 - 5) / (7 - 5)), '7 tokens left of 10, headroom 5: 5/2 of the base')
    for (const id of ids.slice(3)) t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: read })).statusCode, 200)
    t.equal(pollInterval(app), null, 'the pace spent (and the bucket at the headroom): no poll')
  })
})

test('a store that cannot be reached: 503 with Retry-After, not a hang', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL' : false }, async (t) => {
  const { app, base, read } = await pushApp(t)
  app.redis?.disconnect()
  const c = await openSse(`${base}/v1/lists/${LIST}/events`, read)
  t.equal(c.status, 503)
  t.equal(c.headers['retry-after'], '1')
  await c.close()
})

// The event stream is shared by replicas and by releases (a rolling update, a rollback), so a stored
// event may be damaged or written in another form. Until 2026-12-02 one whose text did not parse was
// framed as it was (`data: <text>`) and one whose type held a newline as `event: <type>`: a newline in
// either ended the line, so the stored text wrote SSE fields of its own (here an event named `forged`) into
// every client's stream. Now such an event only moves the client's Last-Event-ID past it (`id:` alone
// dispatches nothing), and a JSON text is written on one line whatever whitespace it was stored with.
test('a stored event that does not decode writes no fields of its own into the stream', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL' : false }, async (t) => {
  const { app, sandbox, base, read, write } = await pushApp(t)
  const [first, second] = sandbox.ids().slice(44, 46).map(String) as [string, string]
  const c = await openSse(`${base}/v1/lists/${LIST}/events`, read)
  t.teardown(() => c.close())
  await baseline(app, SOURCE)
  const key = `${app.config.REDIS_KEY_PREFIX}{push:${SOURCE}}:events`
  t.equal((await app.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${first}`, headers: write })).statusCode, 201)
  await c.waitFor(() => dataOf(c).length >= 1)
  const planted = [
    'cut sho\nevent: forged\ndata: {"type":"forged"}',
    JSON.stringify({ type: 'member.added\nevent: forged', source: SOURCE, id: first }),
    `{"type":"member.added",\n"source":"${SOURCE}","id":"${first}","detected_at":"2026-12-02T00:00:00.000Z"}`
  ]
  const ids: string[] = []
  for (const text of planted) ids.push(await app.redis?.xadd(key, '*', 'e', text) as string)
  t.equal((await app.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${second}`, headers: write })).statusCode, 201)
  // Read without trusting the text: before the fix, fields the stored text wrote arrive as events too.
  const idOf = (data: string): string | undefined => { try { return (JSON.parse(data) as { id?: string }).id } catch { return undefined } }
  await c.waitFor(() => c.events.some((e) => e.event === 'member.added' && idOf(e.data) === second))
  t.notOk(c.events.some((e) => e.event === 'forged' || e.data.includes('forged')), 'no field the stored text wrote')
  t.same(c.events.filter((e) => e.data !== '').map((e) => [e.event, idOf(e.data)]),
    [['member.added', first], ['member.added', first], ['member.added', second]], 'the events that decode, the one stored over two lines among them')
  t.ok(c.events.some((e) => e.id === ids[1] && e.data === ''), 'one that does not decode moves Last-Event-ID past it and carries nothing')
  t.match(c.lastId(), /^\d+-\d+$/)
  t.not(c.lastId(), ids[2], 'the last id is the last event\'s')
})
