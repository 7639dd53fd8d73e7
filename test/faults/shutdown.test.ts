// Stopping a replica under load (issue 12, item 5), on the real process: SIGTERM first drains (/readyz
// 503 while every request is still served, so a load balancer can take the replica out), then stops
// accepting, lets in-flight requests run until SHUTDOWN_TIMEOUT_MS, answers what is left with a 503
// problem and exits 0 even when upstream calls hang. Bounds, never asserted durations.
import { gunzipSync, constants as zlibConstants } from 'node:zlib'
import { test, type Test } from 'tap'
import { Agent, request } from 'undici'
import { sandboxPost, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { byMsg, demoKey, freshGet, freshGetOrCode, listeningAddress, startServer, type Answer, type ServerProcess } from '../fixtures/server-process.js'
import { waitFor } from '../fixtures/wait.js'

// close-with-grace's margin over drain + SHUTDOWN_TIMEOUT_MS in src/server.ts; the exit must come sooner.
const CLOSE_MARGIN_MS = 5000

test('SIGTERM drains: /readyz turns 503 at once while requests on new connections are still served', async (t) => {
  const sandbox = await startTestSandbox(t)
  // Long enough that the requests below certainly land inside the drain, however loaded the machine.
  const drainMs = 4000
  const server = startServer(t, {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    SHUTDOWN_DRAIN_MS: String(drainMs),
    SHUTDOWN_TIMEOUT_MS: '5000'
  })
  const address = await listeningAddress(server)
  const key = await demoKey(server)
  t.equal((await freshGet(`${address}/readyz`)).status, 200, 'ready before the signal')

  server.signal('SIGTERM')
  await server.waitFor(byMsg(/^shutting down/))
  const ready = await freshGetOrCode(`${address}/readyz`)
  const served = await freshGetOrCode(`${address}/v1/me`, { authorization: `Bearer ${key}` })
  t.comment(`during the drain: /readyz ${typeof ready === 'string' ? ready : ready.status}, /v1/me ${typeof served === 'string' ? served : served.status}`)
  t.match(ready, { status: 503 }, '/readyz says 503 as soon as SIGTERM is handled')
  t.match(JSON.parse(typeof ready === 'string' ? '{}' : ready.body), { ready: false, state: 'draining' })
  t.match(served, { status: 200 }, 'a request on a new connection is still served while draining')

  t.equal(await server.exited, 0, 'exit code 0')
  t.ok(server.lines.some(byMsg('shut down')))
})

test('requests still running at SHUTDOWN_TIMEOUT_MS get a 503 problem, each is logged, and the process exits 0 despite hung upstream calls', async (t) => {
  const sandbox = await startTestSandbox(t)
  const shutdownMs = 1000
  const server = startServer(t, {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    SHUTDOWN_DRAIN_MS: '0',
    SHUTDOWN_TIMEOUT_MS: String(shutdownMs)
  })
  const address = await listeningAddress(server)
  const key = await demoKey(server)

  // Each read gets an upstream call of its own that never answers (the default UPSTREAM_TIMEOUT_MS is
  // 120 s): the next read starts only once the upstream holds the previous one, so none are batched.
  const count = 5
  const ids = sandbox.ids().slice(0, count).map(String)
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'hang', times: count })
  const pending: Array<Promise<Answer | string>> = []
  for (const [i, id] of ids.entries()) {
    pending.push(freshGetOrCode(`${address}/v1/objects/${id}`, { authorization: `Bearer ${key}` }))
    await waitFor(`upstream call ${i + 1}`, () => (sandbox.calls.get('objects') ?? 0) >= i + 1)
  }

  const signalled = performance.now()
  server.signal('SIGTERM')
  const results = await Promise.all(pending)
  const code = await server.exited
  const elapsedMs = performance.now() - signalled

  const unanswered = results.filter((r): r is string => typeof r === 'string')
  const cutLines = server.lines.filter(byMsg(/^request cut at SHUTDOWN_TIMEOUT_MS/))
  t.comment(`${count} requests in flight: ${unanswered.length} without an HTTP answer (${unanswered.join(', ')}), ${cutLines.length} cut lines logged, exit code ${code} after ${Math.round(elapsedMs)} ms`)
  t.equal(unanswered.length, 0, 'every request in flight gets an HTTP answer')
  for (const r of results) {
    if (typeof r === 'string') continue
    t.equal(r.status, 503)
    t.match(r.contentType, /^application\/problem\+json/)
    t.match(JSON.parse(r.body), { status: 503, code: 'GW_UNAVAILABLE' })
  }
  t.equal(cutLines.length, count, 'one log line per cut request')
  t.ok(cutLines.every((l) => l.route === '/v1/objects/:id' && typeof l.request_id === 'string'), 'each names its route and request id')
  t.equal(code, 0, 'exit code 0: the hung upstream calls are abandoned, not waited for')
  t.ok(elapsedMs < shutdownMs + CLOSE_MARGIN_MS, `exit within SHUTDOWN_TIMEOUT_MS + ${CLOSE_MARGIN_MS} ms`)
})

test('a write already sent upstream at SHUTDOWN_TIMEOUT_MS is a lost reply: 504 GW_WRITE_OUTCOME_UNKNOWN, kept under its Idempotency-Key, so a retry on another replica adds no row', { skip: TEST_REDIS_URL === '' ? 'needs Redis (REDIS_URL): the key is shared by the replicas' : false }, async (t) => {
  const sandbox = await startTestSandbox(t)
  const env = {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    SHUTDOWN_DRAIN_MS: '0',
    SHUTDOWN_TIMEOUT_MS: '1000',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: `test-shutdown-${process.pid}-${Date.now()}:`
  }
  const id = String(sandbox.ids()[3])
  const rows = async (): Promise<number> => (JSON.parse((await sandboxPost(sandbox, 'vrascoreslist', { objects: id })).text) as unknown[]).length
  const post = async (address: string, key: string) => {
    const dispatcher = new Agent({ pipelining: 0 })
    try {
      const res = await request(`${address}/v1/vra/scores`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': '"score-at-shutdown"' },
        body: JSON.stringify({ id, preal: 0.5, pgal: 0.1 }),
        dispatcher
      })
      return { status: res.statusCode, headers: res.headers, body: JSON.parse(await res.body.text()) as Record<string, unknown> }
    } finally {
      await dispatcher.close()
    }
  }

  const first = startServer(t, env)
  const firstAddress = await listeningAddress(first)
  const firstKey = await demoKey(first)
  // The upstream appends the row at once and answers long after the shutdown deadline.
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 4000 })
  const pending = post(firstAddress, firstKey)
  await waitFor('the score row upstream', async () => (await rows()) === 1)
  first.signal('SIGTERM')
  const answer = await pending
  t.equal(await first.exited, 0, 'exit code 0')
  const audit = first.lines.filter(byMsg('upstream write'))
  t.comment(`first answer ${answer.status} ${String(answer.body.code)}; audit ${JSON.stringify(audit.map((l) => l.audit))}`)
  t.equal(answer.status, 504, 'not a 503 that invites a retry')
  t.match(answer.body, { code: 'GW_WRITE_OUTCOME_UNKNOWN', detail: /may have been appended/ })
  t.equal(audit.length, 1, 'one audit record')
  t.match(audit[0]?.audit, { endpoint: 'vrascores', outcome: 'unknown', error: 'GW_WRITE_OUTCOME_UNKNOWN' }, 'recorded with the outcome it was answered')
  t.notOk(first.lines.some(byMsg(/^request cut at SHUTDOWN_TIMEOUT_MS: answered 503/)), 'the write is not answered 503')

  // The consumer retries with the same key on another replica: the kept answer comes back, nothing is sent.
  const second = startServer(t, env)
  const secondAddress = await listeningAddress(second)
  const retry = await post(secondAddress, await demoKey(second))
  t.comment(`retry ${retry.status} ${String(retry.body.code)}; rows ${await rows()}`)
  t.equal(retry.status, 504)
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the first answer, replayed')
  t.equal(await rows(), 1, 'one score row')
  second.signal('SIGTERM')
  t.equal(await second.exited, 0)
})

/**
 * A bulk stream of two chunks whose first chunk's call is answered and whose second's never is, cut at
 * SHUTDOWN_TIMEOUT_MS: its status, what arrived, how the transfer ended, and the server (`env` on top of
 * the settings it needs).
 */
async function cutBulkStream (t: Test, headers: Record<string, string>, env: Record<string, string> = {}): Promise<{ status: number, raw: Buffer, failure: string, server: ServerProcess }> {
  const sandbox = await startTestSandbox(t)
  const server = startServer(t, {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    SHUTDOWN_DRAIN_MS: '0',
    SHUTDOWN_TIMEOUT_MS: '1000',
    UPSTREAM_MAX_IDS_PER_CALL: '2',
    UPSTREAM_BATCH_WINDOW_MS: '0',
    ...env
  })
  const address = await listeningAddress(server)
  const key = await demoKey(server)
  const ids = sandbox.ids().slice(10, 14).map(String)
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1, times: 1 })
  sandbox.inject({ endpoint: 'objects', kind: 'hang', times: 5 })
  const dispatcher = new Agent({ pipelining: 0 })
  t.teardown(() => dispatcher.destroy())
  const res = await request(`${address}/v1/objects/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ ids }),
    dispatcher
  })
  if (res.statusCode === 200) await waitFor('the second chunk upstream', () => (sandbox.calls.get('objects') ?? 0) >= 2)
  server.signal('SIGTERM')
  const bytes: Buffer[] = []
  let failure = 'none'
  try {
    for await (const chunk of res.body) bytes.push(chunk as Buffer)
  } catch (err) {
    failure = (err as { code?: string }).code ?? 'error'
  }
  return { status: res.statusCode, raw: Buffer.concat(bytes), failure, server }
}

for (const encoding of ['identity', 'gzip']) {
  test(`an NDJSON stream cut at SHUTDOWN_TIMEOUT_MS (Accept-Encoding: ${encoding}) ends with its {"error"} line, not a reset`, async (t) => {
    const { status, raw, failure, server } = await cutBulkStream(t, { accept: 'application/x-ndjson', 'accept-encoding': encoding })
    t.equal(status, 200)
    // Whatever arrived, decoded as far as it goes.
    const text = encoding === 'gzip' ? gunzipSync(raw, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString() : raw.toString()
    const lines = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    t.comment(`${lines.length} lines (${lines.map((l) => Object.keys(l)[0] === 'error' ? 'error' : 'record').join(', ')}), stream failure: ${failure}`)
    t.equal(failure, 'none', 'the stream ends, it is not reset')
    t.equal(lines.length, 3, 'the first chunk, then the error line')
    t.match(lines[2], { error: { status: 503, code: 'GW_UNAVAILABLE' } })
    if (encoding === 'gzip') t.doesNotThrow(() => gunzipSync(raw), 'the compressed stream is complete')
    t.equal(await server.exited, 0)
    t.ok(server.lines.some(byMsg(/^request cut at SHUTDOWN_TIMEOUT_MS: its response had started, ending it with an error line/)), 'logged')
  })
}

test('a JSON bulk answer streamed in chunks and cut at SHUTDOWN_TIMEOUT_MS closes its connection: an incomplete transfer, never a document that parses, and its units are given back', async (t) => {
  const redis: Record<string, string> = TEST_REDIS_URL === '' ? {} : { REDIS_URL: TEST_REDIS_URL, REDIS_KEY_PREFIX: `test-shutdown-json-${process.pid}-${Date.now()}:` }
  const { status, raw, failure, server } = await cutBulkStream(t, { 'accept-encoding': 'identity' }, redis)
  t.equal(status, 200)
  const text = raw.toString()
  t.comment(`${text.length} bytes, then: ${failure}`)
  t.not(failure, 'none', 'the transfer is cut, not ended')
  t.ok(text.startsWith('{"objects":[{"object":'), 'the first chunk arrived')
  t.throws(() => JSON.parse(text), 'what arrived is no complete document')
  t.equal(await server.exited, 0)
  t.ok(server.lines.some(byMsg(/^request cut at SHUTDOWN_TIMEOUT_MS: its response had started, closing the connection/)), 'logged')
  await t.test('its units, as another replica on the same Redis reads them', { skip: TEST_REDIS_URL === '' ? 'needs Redis (REDIS_URL): the replica that charged them has exited' : false }, async (t) => {
    // The demo consumer's (the same id on every replica): the cut answer delivered nothing usable, so
    // its 4 units are given back as after a 5xx.
    const other = startServer(t, { ATLAS_BASE_URL: 'http://127.0.0.1:9/', ATLAS_TOKEN: 'unused', ...redis })
    const me = await freshGet(`${await listeningAddress(other)}/v1/me`, { authorization: `Bearer ${await demoKey(other)}` })
    t.equal(JSON.parse(me.body).usage.units_today, 0, 'given back')
    other.signal('SIGTERM')
    t.equal(await other.exited, 0)
  })
})
