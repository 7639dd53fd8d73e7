// An upstream outage (issue 12, item 1): the budget pays only for calls that reach the upstream, a
// circuit breaker turns the outage into fast 503s with Retry-After (cached entries keep serving stale),
// and a read is retried at most once on a 5xx or a transport error. Bounds, never durations.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, startTestSandbox, UNUSED_UPSTREAM } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'
import { metricValue, outcomeOf, restartSandbox, tally, tokensSpent, type Outcome } from './upstream-probes.js'

const CAPACITY = 100
const RATE = `${CAPACITY}/hour`
// gateway_upstream_breaker_state values
const OPEN = 2
const HALF_OPEN = 1
const CLOSED = 0

async function get (app: FastifyInstance, url: string): Promise<Outcome> {
  return outcomeOf(await app.inject({ url, headers: demoAuth(app) }))
}

const breakerState = (app: FastifyInstance) => metricValue(app, 'gateway_upstream_breaker_state')

test('33 misses during an outage spend no budget; once the upstream is back, misses are served', async (t) => {
  const first = await startTestSandbox(t)
  const { app } = await buildTestApp(t, {
    upstream: first,
    // A short open period, so that the half-open probe finds the upstream back within waitFor's bound.
    config: { UPSTREAM_RATE: RATE, UPSTREAM_BREAKER_OPEN_MS: 200, UPSTREAM_BREAKER_PROBE_INTERVAL_MS: 100 }
  })
  const ids = first.ids()
  t.equal((await get(app, `/v1/objects/${ids[0]}`)).status, 200, 'served before the outage')
  const reachedBefore = first.totalCalls()

  await first.close()
  const during: Outcome[] = []
  for (const id of ids.slice(1, 34)) during.push(await get(app, `/v1/objects/${id}`))
  const spentInOutage = await tokensSpent(app, CAPACITY) - reachedBefore
  t.comment(`outage: 33 misses → ${JSON.stringify(tally(during))}; budget tokens spent during it: ${spentInOutage}`)
  t.equal(spentInOutage, 0, 'no call reached the upstream, so no token was spent')
  t.ok(during.every((o) => o.status === 502 || o.status === 503), 'every miss failed with 502 or 503')
  t.ok(during.filter((o) => o.status === 503).every((o) => Number(o.retryAfter) >= 1), 'every 503 says when to come back')
  t.ok(during.some((o) => o.code === 'GW_UPSTREAM_UNAVAILABLE'), 'the breaker opened and misses failed fast')

  const second = await restartSandbox(t, first)
  let next = 34
  let last: Outcome | undefined
  await waitFor('a miss to be served after the outage', async () => {
    last = await get(app, `/v1/objects/${ids[next++]}`)
    return last.status === 200
  }, { intervalMs: 50 })
  const reached = reachedBefore + second.totalCalls()
  const spent = await tokensSpent(app, CAPACITY)
  t.comment(`after the outage: served again after ${next - 34} tries; tokens spent ${spent}, calls that reached the upstream ${reached}`)
  t.equal(spent, reached, 'tokens spent = calls that reached the upstream')
  t.equal(await breakerState(app), CLOSED, 'the breaker closed again')
})

test('connection refused and a DNS failure cost no budget', async (t) => {
  for (const [what, base] of [['connection refused', UNUSED_UPSTREAM], ['DNS failure', 'http://atlas-upstream.invalid/api/']] as const) {
    const { app } = await buildTestApp(t, { config: { ATLAS_BASE_URL: base, UPSTREAM_RATE: RATE, UPSTREAM_CONNECT_TIMEOUT_MS: 2000 } })
    const outcomes: Outcome[] = []
    for (let i = 0; i < 10; i++) outcomes.push(await get(app, `/v1/cone?ra=${100 + i}&dec=10&radius=5`))
    const spent = await tokensSpent(app, CAPACITY)
    t.comment(`${what}: 10 misses → ${JSON.stringify(tally(outcomes))}; tokens spent ${spent}`)
    t.equal(spent, 0, `${what}: no token spent`)
    t.ok(outcomes.every((o) => o.status === 502 || o.status === 503), `${what}: every miss failed with 502 or 503`)
    const me = await app.inject({ url: '/v1/me', headers: demoAuth(app) })
    t.equal(me.json().usage.upstream_share_used, 0, `${what}: nor did the consumer's upstream share`)
  }
})

test('while the breaker is open: misses fail fast with 503 + Retry-After, cached entries are served stale, and every transition is logged and counted', async (t) => {
  const first = await startTestSandbox(t)
  const { app, logs } = await buildTestApp(t, {
    upstream: first,
    config: {
      // Cached objects are never fresh: only stale-if-error can answer them during the outage.
      CACHE_FRESHNESS: '{"objects":{"freshS":0,"swrS":0,"sieS":3600}}',
      UPSTREAM_BREAKER_THRESHOLD: 2,
      // Long enough for the checks made while it is open, however loaded the machine.
      UPSTREAM_BREAKER_OPEN_MS: 1500,
      // One probe for the whole test: the bound below is "exactly one call reaches the upstream".
      UPSTREAM_BREAKER_PROBE_INTERVAL_MS: 60_000
    }
  })
  const ids = first.ids()
  const cached = String(ids[0])
  t.equal((await get(app, `/v1/objects/${cached}`)).status, 200)
  t.equal(await breakerState(app), CLOSED)

  await first.close()
  const failures = [await get(app, '/v1/cone?ra=1&dec=1&radius=5'), await get(app, '/v1/cone?ra=2&dec=1&radius=5')]
  t.comment(`threshold 2: ${JSON.stringify(tally(failures))}`)
  t.equal(await breakerState(app), OPEN, 'open after the threshold')
  const fast = await get(app, '/v1/cone?ra=3&dec=1&radius=5')
  t.match(fast, { status: 503, code: 'GW_UPSTREAM_UNAVAILABLE' }, 'a miss fails fast')
  t.ok(Number(fast.retryAfter) >= 1, 'with Retry-After')
  t.match(await get(app, `/v1/objects/${cached}`), { status: 200, cache: 'STALE' }, 'a cached entry is served stale')
  const compat = await app.inject({ url: '/atlas/api/cone/?ra=4&dec=1&radius=5&requestType=all', headers: { authorization: `Token ${app.consumers.demoKey as string}` } })
  t.equal(compat.statusCode, 503, 'the compatibility path fails fast too')
  t.ok(Number(compat.headers['retry-after']) >= 1, 'and says when to come back')

  const second = await restartSandbox(t, first)
  await waitFor('the breaker to go half-open', async () => (await breakerState(app)) === HALF_OPEN, { intervalMs: 20 })
  // The probe is held up, so the other misses arrive while it is in flight.
  second.inject({ kind: 'delay', endpoint: 'cone', delayMs: 300 })
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => get(app, `/v1/cone?ra=${10 + i}&dec=1&radius=5`)))
  t.comment(`half-open, 10 concurrent misses → ${JSON.stringify(tally(burst))}; ${second.totalCalls()} reached the upstream`)
  t.equal(second.calls.get('cone'), 1, 'one probe reached the upstream')
  t.equal(burst.filter((o) => o.status === 200).length, 1, 'the probe was served')
  t.ok(burst.filter((o) => o.status !== 200).every((o) => o.code === 'GW_UPSTREAM_UNAVAILABLE' && Number(o.retryAfter) >= 1), 'the others failed fast with Retry-After')
  t.equal(await breakerState(app), CLOSED, 'the probe closed the breaker')
  t.equal((await get(app, '/v1/cone?ra=40&dec=1&radius=5')).status, 200)

  for (const [from, to] of [['closed', 'open'], ['open', 'half_open'], ['half_open', 'closed']]) {
    t.equal(await metricValue(app, 'gateway_upstream_breaker_transitions_total', `from="${from}",to="${to}"`), 1, `${from} → ${to} counted once`)
  }
  const lines = logs().split('\n').filter((l) => l.includes('upstream circuit breaker'))
  t.equal(lines.length, 3, 'one log line per transition')
})

test('a read is retried at most once on a 5xx or a transport error; a write is not', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const [a, b, c] = sandbox.ids()
  sandbox.resetCalls()
  sandbox.inject({ kind: 'html500', endpoint: 'objects' })
  t.equal((await get(app, `/v1/objects/${a}`)).status, 200, 'a 500 is retried and the retry is served')
  t.equal(sandbox.calls.get('objects'), 2)

  sandbox.resetCalls()
  sandbox.inject({ kind: 'html500', endpoint: 'objects', times: 5 })
  t.match(await get(app, `/v1/objects/${b}`), { status: 502, code: 'GW_UPSTREAM_ERROR' })
  t.equal(sandbox.calls.get('objects'), 2, 'one try and one retry, no more')

  sandbox.clearFaults()
  sandbox.resetCalls()
  sandbox.inject({ kind: 'reset', endpoint: 'objects', times: 5 })
  t.equal((await get(app, `/v1/objects/${c}`)).status, 502)
  t.equal(sandbox.calls.get('objects'), 2, 'a reset is retried once too')

  sandbox.clearFaults()
  sandbox.resetCalls()
  sandbox.inject({ kind: 'html500', endpoint: 'vratodo' })
  const write = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: demoAuth(app), payload: { id: String(a) } })
  t.equal(write.statusCode, 502)
  t.equal(sandbox.calls.get('vratodo'), 1, 'a write is sent once')
})

test('a read is not retried without budget headroom', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_RATE: '5/hour', UPSTREAM_RETRY_MIN_BUDGET: 10 } })
  sandbox.resetCalls()
  sandbox.inject({ kind: 'html500', endpoint: 'objects' })
  t.equal((await get(app, `/v1/objects/${sandbox.ids()[0]}`)).status, 502)
  t.equal(sandbox.calls.get('objects'), 1, 'the last tokens are kept for first tries')
})

test('the token expired during the outage: once the upstream is back, the half-open probe is the login and misses are served (no health-check login needed)', async (t) => {
  const { app, sandbox } = await buildTestApp(t, {
    useRedis: false,
    config: { UPSTREAM_BREAKER_THRESHOLD: 1, UPSTREAM_BREAKER_OPEN_MS: 200, UPSTREAM_BREAKER_PROBE_INTERVAL_MS: 100, UPSTREAM_LOGIN_BACKOFF_MS: 200, UPSTREAM_LOGIN_BACKOFF_MAX_MS: 200, HEALTH_CHECK_INTERVAL_MS: 3_600_000 }
  })
  sandbox.expireToken('write')
  sandbox.inject({ endpoint: 'auth-token', kind: 'html500' })
  const during = await get(app, '/v1/cone?ra=20&dec=10&radius=5')
  t.equal(during.status, 503, 'the login failed in the outage')
  t.equal(app.upstream.client.breakerState, 'open', 'and opened the breaker')
  await waitFor('the open period and the login backoff to be over', () =>
    app.upstream.client.breakerState === 'half_open' && app.upstream.tokens.refreshState().state !== 'backoff', { intervalMs: 20 })
  let i = 0
  await waitFor('a miss to be served once the upstream is back', async () => (await get(app, `/v1/cone?ra=${30 + i++}&dec=10&radius=5`)).status === 200, { intervalMs: 50 })
  t.equal(app.upstream.client.breakerState, 'closed', 'the login, as the probe, closed the breaker')
})
