// Readiness for a cache (issue 12, item 4): /readyz says whether this replica can take traffic, not
// whether the upstream or Redis are up, because cached reads keep working through both outages. The
// dependencies' state comes from a background check into /healthz and the metrics; no probe calls
// the upstream.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, startTestSandbox } from '../helper.js'
import { startRedisServer } from '../fixtures/redis-server.js'
import { waitFor } from '../fixtures/wait.js'

// A check every 50 ms, so the waits below are short; the bound is waitFor's own (5 s).
const FAST_CHECKS_MS = 50

interface Health { status: string, state: string, checks: Record<string, { status: string, detail?: string }> }

async function health (app: FastifyInstance): Promise<Health> {
  return (await app.inject({ url: '/healthz' })).json<Health>()
}

async function dependencyGauge (app: FastifyInstance, name: string): Promise<string | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body
  return new RegExp(`^gateway_dependency_up\\{dependency="${name}"\\} (\\d+)$`, 'm').exec(text)?.[1]
}

test('probes never call the upstream: /readyz and /healthz answer from state', async (t) => {
  const sandbox = await startTestSandbox(t)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { HEALTH_CHECK_INTERVAL_MS: 3_600_000 } })
  sandbox.resetCalls()
  const probes = 20
  const statuses = new Set<number>()
  for (let i = 0; i < probes; i++) {
    statuses.add((await app.inject({ url: '/readyz' })).statusCode)
    statuses.add((await app.inject({ url: '/healthz' })).statusCode)
  }
  t.comment(`${probes * 2} probes made ${sandbox.totalCalls()} upstream calls`)
  t.same([...statuses], [200])
  t.equal(sandbox.totalCalls(), 0, 'no probe reached the upstream')
})

test('the upstream down: /readyz stays 200; /healthz and gateway_dependency_up say it is down', async (t) => {
  const sandbox = await startTestSandbox(t)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { HEALTH_CHECK_INTERVAL_MS: FAST_CHECKS_MS } })
  await waitFor('the first upstream check', async () => (await health(app)).checks.upstream?.status === 'up')
  t.equal(await dependencyGauge(app, 'upstream'), '1')

  await sandbox.close()
  const ready = await app.inject({ url: '/readyz' })
  t.comment(`upstream down: /readyz ${ready.statusCode}`)
  t.equal(ready.statusCode, 200, 'still ready: cached reads keep being served')
  t.match(ready.json(), { ready: true, state: 'ready' })

  await waitFor('the upstream check to see the outage', async () => (await health(app)).checks.upstream?.status === 'down')
  const body = await health(app)
  t.equal(body.status, 'ok', '/healthz itself stays 200: liveness must not restart pods for an upstream outage')
  t.match(body.checks.upstream?.detail, /ECONNREFUSED|connect|refused/i, 'the detail says why')
  t.equal(await dependencyGauge(app, 'upstream'), '0')
})

test('Redis stalled (SIGSTOP): /readyz stays 200 without waiting on Redis; the check sees it go and come back', async (t) => {
  const redis = await startRedisServer(t)
  t.teardown(() => { redis.resume() })
  const { app } = await buildTestApp(t, { config: { REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: 500, HEALTH_CHECK_INTERVAL_MS: FAST_CHECKS_MS } })
  await waitFor('the first redis check', async () => (await health(app)).checks.redis?.status === 'up')

  redis.pause()
  const ready = await app.inject({ url: '/readyz' })
  t.comment(`redis stalled: /readyz ${ready.statusCode}`)
  t.equal(ready.statusCode, 200)
  await waitFor('the redis check to see the stall', async () => (await health(app)).checks.redis?.status === 'down')
  t.equal(await dependencyGauge(app, 'redis'), '0')

  redis.resume()
  await waitFor('the redis check to see it back', async () => (await health(app)).checks.redis?.status === 'up')
  t.equal(await dependencyGauge(app, 'redis'), '1')
})
