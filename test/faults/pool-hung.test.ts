// Hung upstream calls and the connection pool (issue 12, item 7): calls that hang hold their connections
// until the per-call deadline, but a miss that finds every connection busy waits at most
// UPSTREAM_POOL_WAIT_MS for one, then fails fast with 503 + Retry-After (a cached entry serves stale),
// without spending budget; the pool's saturation shows in the metrics. Bounds and order, never durations.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { buildTestApp, demoAuth } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'
import { metricValue, outcomeOf, tally, tokensSpent, type Outcome } from './upstream-probes.js'

const CONNECTIONS = 8

async function get (app: FastifyInstance, url: string): Promise<Outcome> {
  return outcomeOf(await app.inject({ url, headers: demoAuth(app) }))
}

test('8 hung calls fill the pool; other misses are answered before any of them ends, and cost no budget', async (t) => {
  const { app, sandbox } = await buildTestApp(t, {
    config: {
      UPSTREAM_RATE: '100/hour',
      UPSTREAM_CONNECTIONS: CONNECTIONS,
      // The hung calls outlive everything the test does after them.
      UPSTREAM_TIMEOUT_MS: 15_000,
      UPSTREAM_POOL_WAIT_MS: 200,
      CACHE_FRESHNESS: '{"objects":{"freshS":0,"swrS":0,"sieS":3600}}'
    }
  })
  const [cached, other] = sandbox.ids()
  t.equal((await get(app, `/v1/objects/${cached}`)).status, 200)
  sandbox.resetCalls()

  sandbox.inject({ kind: 'hang', endpoint: 'cone', times: CONNECTIONS })
  let hungSettled = 0
  const hung = Array.from({ length: CONNECTIONS }, (_, i) => get(app, `/v1/cone?ra=${200 + i}&dec=5&radius=5`).finally(() => { hungSettled++ }))
  await waitFor('every connection to carry a hung call', () => sandbox.calls.get('cone') === CONNECTIONS)
  t.equal(await metricValue(app, 'gateway_upstream_pool_requests', 'state="running"'), CONNECTIONS, 'the pool gauge shows them running')
  const spentBefore = await tokensSpent(app, 100)

  const miss = await get(app, `/v1/objects/${other}`)
  const stale = await get(app, `/v1/objects/${cached}`)
  const settledWhenAnswered = hungSettled
  t.comment(`pool full of ${CONNECTIONS} hung calls: a miss → ${JSON.stringify(miss)}, a cached entry → ${JSON.stringify(stale)}; hung calls settled meanwhile: ${settledWhenAnswered}`)
  t.equal(settledWhenAnswered, 0, 'both were answered while every hung call was still hanging')
  t.match(miss, { status: 503, code: 'GW_UPSTREAM_UNAVAILABLE' }, 'the miss failed fast')
  t.ok(Number(miss.retryAfter) >= 1, 'with Retry-After')
  t.match(stale, { status: 200, cache: 'STALE' }, 'the cached entry was served stale')
  t.equal(await tokensSpent(app, 100), spentBefore, 'the calls that never got a connection spent nothing')
  t.ok(((await metricValue(app, 'gateway_upstream_pool_wait_timeouts_total')) ?? 0) >= 1, 'the pool wait timeout is counted')

  // The upstream goes away: the hung calls end with an error each, and every request got an answer.
  await sandbox.close()
  const ended = await Promise.all(hung)
  t.comment(`the hung calls, once the upstream closed their sockets: ${JSON.stringify(tally(ended))}`)
  t.ok(ended.every((o) => o.status >= 500), 'each hung call was answered with an error')
})

test('calls refused for want of a connection leave nothing queued: once the hung calls end, the next miss is served', async (t) => {
  const REFUSED = 1000
  const ROUND = 100
  // The flood stops well before the hung calls' deadline, however slow the machine.
  const HANG_MS = 6000
  const FLOOD_MS = 3000
  const bot = makeConsumer('bot', { scopes: ['read'], upstream_share: 100_000, rate: '100000/minute' })
  const { app, sandbox } = await buildTestApp(t, {
    config: {
      CONSUMERS_FILE: consumersFile(t, [bot]),
      UPSTREAM_CONNECTIONS: 2,
      UPSTREAM_TIMEOUT_MS: HANG_MS,
      UPSTREAM_POOL_WAIT_MS: 50,
      UPSTREAM_BREAKER_THRESHOLD: 1000,
      PREFETCH_ENABLED: false,
      LOG_LEVEL: 'error'
    }
  })
  const cone = async (ra: number) => outcomeOf(await app.inject({ url: `/v1/cone?ra=${ra.toFixed(3)}&dec=5&radius=10`, headers: { authorization: `Bearer ${bot.key}` } }))
  sandbox.inject({ kind: 'hang', endpoint: 'cone', times: 2 })
  const hangStarted = Date.now()
  let hungSettled = 0
  const hung = [100, 101].map((ra) => cone(ra).finally(() => { hungSettled++ }))
  await waitFor('both connections to carry a hung call', () => sandbox.calls.get('cone') === 2)

  const refused: Outcome[] = []
  while (refused.length < REFUSED && Date.now() - hangStarted < FLOOD_MS) {
    const from = refused.length
    refused.push(...await Promise.all(Array.from({ length: ROUND }, (_, k) => cone(200 + (from + k) * 0.001))))
  }
  const queued = await metricValue(app, 'gateway_upstream_pool_requests', 'state="queued"')
  const pending = await metricValue(app, 'gateway_upstream_pool_requests', 'state="pending"')
  t.comment(`${refused.length} distinct misses while 2 hung calls held both connections: ${JSON.stringify(tally(refused))}; then queued ${queued}, pending ${pending}`)
  t.equal(hungSettled, 0, 'the hung calls were still hanging through the flood')
  t.ok(refused.every((o) => o.status === 503 && o.code === 'GW_UPSTREAM_UNAVAILABLE'), 'every one was refused')
  t.equal(queued, 0, 'once answered, none of them is still queued')
  t.equal(pending, 0, 'nor pending')

  const ended = await Promise.all(hung)
  const started = Date.now()
  const fresh = await cone(300)
  t.comment(`the hung calls ended ${JSON.stringify(tally(ended))}; the next miss: ${JSON.stringify(fresh)} in ${Date.now() - started} ms`)
  t.equal(fresh.status, 200, 'the next miss got a connection at once, not after the refused calls drained')
})
