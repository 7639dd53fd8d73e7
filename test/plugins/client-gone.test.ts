// A client that hangs up before its answer is complete: Fastify runs onResponse hooks only when the
// response finishes or errors, and a response on a closed socket does neither. The request still spent
// units, an upstream share and upstream calls, so it is logged, counted in usage and metrics, and its
// units are given back after a 5xx, as when the client waits (plugins/health.ts).
import { test } from 'tap'
import { request } from 'undici'
import { buildTestApp, FIXTURE_IDS } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import { waitFor } from '../fixtures/wait.js'

const { A, B } = FIXTURE_IDS

function accessLines (logs: string, consumer: string): Array<Record<string, unknown>> {
  return logs.split('\n').filter((l) => l.includes('"route"') && l.includes(`"consumer":"${consumer}"`)).map((l) => JSON.parse(l) as Record<string, unknown>)
}

async function abortedRead (base: string, key: string, path: string): Promise<string> {
  const ac = new AbortController()
  const res = request(`${base}${path}`, { headers: bearer(key), signal: ac.signal }).then(async (r) => { await r.body.text(); return String(r.statusCode) }, (err: Error) => err.name)
  // The sandbox answers after 400 ms: the client is gone well before.
  setTimeout(() => { ac.abort() }, 100)
  return await res
}

for (const upstream of ['answers', 'fails'] as const) {
  test(`a client gone before the answer: logged, counted and refunded as if it waited (upstream ${upstream})`, async (t) => {
    const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 1000 })
    const ops = makeConsumer('ops', { scopes: ['admin'] })
    const { app, sandbox, logs } = await buildTestApp(t, {
      config: { CONSUMERS_FILE: consumersFile(t, [bot, ops]), PREFETCH_ENABLED: false, UPSTREAM_RETRIES: 0, LOG_LEVEL: 'info' },
      sandbox: { latencyMs: 400 }
    })
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    if (upstream === 'fails') sandbox.inject({ kind: 'html500', endpoint: 'objects', times: 5 })
    t.equal(await abortedRead(base, bot.key, `/v1/objects?ids=${A},${B}`), 'AbortError', 'the client gave up')
    await waitFor('the request\'s access line', () => accessLines(logs(), 'bot').length === 1, { timeoutMs: 5000, intervalMs: 20 })
    const [line] = accessLines(logs(), 'bot')
    t.match(line, { route: '/v1/objects', status: upstream === 'answers' ? 200 : 502, upstream_calls: 1, msg: /client closed the connection/ })
    const me = await app.inject({ url: '/v1/me', headers: bearer(bot.key) })
    t.equal(me.json().usage.units_today, upstream === 'answers' ? 2 : 0, upstream === 'answers' ? 'the units of what was fetched stay' : 'a 5xx gives its units back, client or not')
    const metric = (await app.metrics.requests.get()).values.find((v) => v.labels.route === '/v1/objects' && v.labels.consumer === 'bot')
    t.equal(metric?.value, 1, 'in gateway_requests_total')
    await app.usage.flush()
    const usage = await app.inject({ url: `/v1/admin/usage?month=${new Date().toISOString().slice(0, 7)}`, headers: bearer(ops.key) })
    t.equal(usage.statusCode, 200)
    t.match(usage.json().rows, [{ consumer: 'bot', requests_by_class: { objects: 1, me: 1 }, upstream_calls: 1, units: upstream === 'answers' ? 2 : 0, errors: upstream === 'answers' ? 0 : 1 }], 'in usage')
    const lines = accessLines(logs(), 'bot')
    t.equal(lines.length, 2, 'one line per request: the aborted one and /v1/me')
    t.equal(lines[1]?.msg, 'request completed', 'the other completed')
  })
}

test('an NDJSON stream its client leaves half-way: one access line, saying so', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const { app, sandbox, logs } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [bot]), PREFETCH_ENABLED: false, UPSTREAM_MAX_IDS_PER_CALL: 100, LOG_LEVEL: 'info' },
    sandbox: { objects: 1000, latencyMs: 200 }
  })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const ac = new AbortController()
  const res = await request(`${base}/v1/objects/query`, {
    method: 'POST',
    signal: ac.signal,
    headers: { ...bearer(bot.key), 'content-type': 'application/json', accept: 'application/x-ndjson' },
    body: JSON.stringify({ ids: sandbox.ids().map(String) })
  })
  t.equal(res.statusCode, 200)
  await res.body[Symbol.asyncIterator]().next()
  ac.abort()
  await waitFor('the stream\'s access line', () => accessLines(logs(), 'bot').length === 1, { timeoutMs: 5000, intervalMs: 20 })
  t.match(accessLines(logs(), 'bot')[0], { route: '/v1/objects/query', status: 200, msg: /client closed the connection/ })
})

test('an event stream its client closes: one access line, nothing logged as an error', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'] })
  const { app, logs } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [bot]), LOG_LEVEL: 'info', PUSH_HEARTBEAT_MS: 200 } })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  const ac = new AbortController()
  const res = await request(`${base}/v1/vra/todo/events`, { headers: { ...bearer(bot.key), accept: 'text/event-stream' }, signal: ac.signal })
  t.equal(res.statusCode, 200)
  await res.body[Symbol.asyncIterator]().next()
  ac.abort()
  await waitFor('the stream\'s access line', () => accessLines(logs(), 'bot').length === 1, { timeoutMs: 5000, intervalMs: 20 })
  // Past a heartbeat: whatever the close set off has run.
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.match(accessLines(logs(), 'bot'), [{ route: '/v1/vra/:table/events', status: 200 }], 'one line for the stream')
  const loud = logs().split('\n').filter((l) => /"level":(40|50)/.test(l))
  t.same(loud, [], 'a client ending its stream is not a warning or an error (before: request failed at error, twice "Reply was already sent")')
})

// A stream sent after its client left, the route's own (NDJSON) or one @fastify/compress makes of a Buffer
// above its synchronous threshold (two records as JSON, ~37 KB, gzip) in its step after the gateway's.
const GONE_BEFORE_THE_ANSWER = [
  { what: 'an NDJSON stream', headers: { accept: 'application/x-ndjson' } },
  { what: 'a JSON body @fastify/compress would stream', headers: { 'accept-encoding': 'gzip' } }
]
for (const { what, headers } of GONE_BEFORE_THE_ANSWER) {
  test(`${what} whose client left before its first byte: the status the route chose, its units kept`, async (t) => {
    const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
    const { app, sandbox, logs } = await buildTestApp(t, {
      config: { CONSUMERS_FILE: consumersFile(t, [bot]), PREFETCH_ENABLED: false, LOG_LEVEL: 'info' },
      sandbox: { latencyMs: 400 }
    })
    const base = await app.listen({ port: 0, host: '127.0.0.1' })
    const ac = new AbortController()
    const res = request(`${base}/v1/objects/query`, {
      method: 'POST',
      signal: ac.signal,
      headers: { ...bearer(bot.key), 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ ids: [A, B] })
    }).then(() => 'answered', (err: Error) => err.name)
    setTimeout(() => { ac.abort() }, 100)
    t.equal(await res, 'AbortError')
    await waitFor('the access line', () => accessLines(logs(), 'bot').length === 1, { timeoutMs: 5000, intervalMs: 20 })
    t.match(accessLines(logs(), 'bot')[0], { route: '/v1/objects/query', status: 200, msg: /client closed the connection/ }, 'before: 500')
    t.equal(sandbox.calls.get('objects'), 1, 'the records were fetched')
    t.equal((await app.inject({ url: '/v1/me', headers: bearer(bot.key) })).json().usage.units_today, 2, 'so their units stay (before: given back as after a 5xx)')
  })
}
