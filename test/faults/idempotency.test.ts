// Issue 12 (writes under faults): a writer told "504 … try again later" may already have been applied,
// and retrying a VRA score then appended a second row. The sandbox applies a write before it sleeps on
// a `delay` fault, so with UPSTREAM_TIMEOUT_MS below the delay the write lands and the gateway times out.
import { test } from 'tap'
import { Agent, request } from 'undici'
import { buildTestApp, demoAuth, FIXTURE_IDS, sandboxPost } from '../helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'
import { waitFor } from '../fixtures/wait.js'

const { A, B, E } = FIXTURE_IDS
const TIMEOUT_MS = 300
const DELAY_MS = 700
// The reviewer's run had 50 such writes.
const WRITES = 50

async function upstreamRows (sandbox: Sandbox, table: 'vrascoreslist' | 'vraranklist', id: string): Promise<number> {
  const res = await sandboxPost(sandbox, table, { objects: id })
  return (JSON.parse(res.text) as unknown[]).length
}

test('a VRA score whose reply timed out says its outcome is unknown instead of "try again later"', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: A, preal: 0.4 } })
  t.equal(res.statusCode, 504)
  const problem = res.json()
  t.equal(problem.code, 'GW_WRITE_OUTCOME_UNKNOWN')
  t.notMatch(problem.detail, /try again later/)
  t.match(problem.detail, /may add a second row/)
  t.match(problem.detail, `GET /v1/vra/scores?ids=${A}`)
  t.match(problem.detail, /Idempotency-Key/)
  t.equal(await upstreamRows(sandbox, 'vrascoreslist', A), 1, 'the row did land upstream')
  t.equal(sandbox.calls.get('vrascoreslist'), 1, 'no read-back: scores cannot be read back (the one call is this test\'s)')
})

test(`${WRITES} timed-out VRA scores retried with their Idempotency-Key append ${WRITES} rows, not ${2 * WRITES}`, async (t) => {
  // A connection per write, so that every first attempt is sent (not left waiting in the pool's queue),
  // and a deadline long enough to open 50 connections on a loaded machine: with 300 ms, one write of a
  // CI run (both cores busy) was still waiting for its connection and was answered GW_UPSTREAM_UNAVAILABLE.
  const timeoutMs = 1500
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: timeoutMs, UPSTREAM_CONNECTIONS: WRITES } })
  const auth = demoAuth(app)
  sandbox.resetCalls()
  // Every first attempt lands upstream while the gateway times out (concurrently, as writers do).
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: timeoutMs + DELAY_MS, times: WRITES })
  const send = (i: number) => app.inject({
    method: 'POST', url: '/v1/vra/scores', headers: { ...auth, 'idempotency-key': `score-${i}` }, payload: { id: E, preal: i / WRITES }
  })
  const first = await Promise.all(Array.from({ length: WRITES }, (_, i) => send(i)))
  t.same(new Set(first.map((r) => r.json().code)), new Set(['GW_WRITE_OUTCOME_UNKNOWN']))
  await waitFor('the delayed writes to be applied', async () => await upstreamRows(sandbox, 'vrascoreslist', E) === WRITES)

  const retries = await Promise.all(Array.from({ length: WRITES }, (_, i) => send(i)))
  t.ok(retries.every((r, i) => r.statusCode === 504 && r.body === first[i]?.body), 'each retry gets the first answer, byte for byte')
  t.ok(retries.every((r) => r.headers['idempotent-replayed'] === 'true'), 'and is marked as a replay')
  t.equal(sandbox.calls.get('vrascores'), WRITES, 'no retry was sent upstream')
  t.equal(await upstreamRows(sandbox, 'vrascoreslist', E), WRITES, 'no duplicate rows')
})

test('a VRA rank is an upsert: its unknown outcome says a retry is safe, and a retry leaves one row', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  sandbox.inject({ endpoint: 'vrarank', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: { id: B, rank: 4.5 } })
  t.equal(res.statusCode, 504)
  t.equal(res.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  t.match(res.json().detail, /Ranks are upserts, so sending it again sets the same values/)
  const retry = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: { id: B, rank: 4.5 } })
  t.equal(retry.statusCode, 201)
  t.equal(await upstreamRows(sandbox, 'vraranklist', B), 1)
})

test('a writer that gave up on the gateway gets the outcome with its key instead of writing twice', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: 5000 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  // Its own agent, closed at the end, so that no kept-alive socket holds the app's close up.
  const agent = new Agent()
  t.teardown(() => agent.close())
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  const post = (key: string, signal?: AbortSignal) => request(`http://127.0.0.1:${port}/v1/vra/scores`, {
    method: 'POST',
    dispatcher: agent,
    headers: { ...demoAuth(app), 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ id: B, pgal: 0.25 }),
    ...(signal === undefined ? {} : { signal })
  })
  const before = await upstreamRows(sandbox, 'vrascoreslist', B)
  sandbox.inject({ endpoint: 'vrascores', kind: 'delay', delayMs: 400 })
  // The client's own deadline passes before the upstream answers; the gateway carries on.
  await t.rejects(post('"client-gave-up"', AbortSignal.timeout(100)))
  const retry = await post('"client-gave-up"')
  t.equal(retry.statusCode, 201, 'the retry waits for the first request and gets its answer')
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.same(await retry.body.json(), { id: B, outcome: 'created' })
  t.equal(await upstreamRows(sandbox, 'vrascoreslist', B), before + 1, 'one row')
})
