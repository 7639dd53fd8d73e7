// An upstream Retry-After is obeyed only up to the period of UPSTREAM_RATE: the upstream's throttle
// (DRF) never asks for more than its own rate's period, so a longer one (a bogus header, a date years
// ahead) must not stop every upstream call of the gateway, or every login, for that long.
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS, TEST_REDIS_URL } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'

const BOGUS_S = 1_000_000_000
// The tests' UPSTREAM_RATE (test/helper.ts) is per hour.
const HOUR_S = 3600

const cone = (app: FastifyInstance, ra: number) => app.inject({ url: `/v1/cone?ra=${ra}&dec=5&radius=5`, headers: demoAuth(app) })

async function pauseGauge (app: FastifyInstance): Promise<number | undefined> {
  return (await app.metrics.registry.getSingleMetric('gateway_upstream_pause_seconds')?.get())?.values[0]?.value
}

for (const useRedis of TEST_REDIS_URL === '' ? [false] : [false, true]) {
  const budget = useRedis ? 'Redis' : 'memory'

  test(`a 429 with Retry-After: ${BOGUS_S} pauses every call for an hour at most, UPSTREAM_RATE's period (${budget} budget)`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis })
    sandbox.inject({ kind: 'throttle', retryAfterS: BOGUS_S })
    const res = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: demoAuth(app) })
    t.comment(`throttled call: ${res.statusCode} ${res.json().code}, Retry-After ${String(res.headers['retry-after'])}; pause gauge ${await pauseGauge(app)}`)
    t.equal(res.json().code, 'GW_UPSTREAM_BUDGET')
    t.equal(Number(res.headers['retry-after']), HOUR_S, 'the consumer is told the capped pause')
    t.equal(await pauseGauge(app), HOUR_S, 'the pause the gateway keeps is capped')
    const next = await cone(app, 10)
    t.equal(next.statusCode, 503, 'the pause still holds every call')
    t.ok(Number(next.headers['retry-after']) <= HOUR_S, `the next request: Retry-After ${String(next.headers['retry-after'])}`)
  })

  test(`at a per-second UPSTREAM_RATE, a pause asked for ${BOGUS_S} s is over within the second (${budget} budget)`, async (t) => {
    const { app, sandbox } = await buildTestApp(t, { useRedis, config: { UPSTREAM_RATE: '1000/second' } })
    sandbox.inject({ kind: 'throttle', retryAfterS: BOGUS_S })
    const throttled = await cone(app, 20)
    t.equal(throttled.json().code, 'GW_UPSTREAM_BUDGET')
    t.equal(throttled.headers['retry-after'], '1')
    let ra = 21
    // Before: every later miss was refused for the whole pause.
    await waitFor('a miss to be served once the capped pause is over', async () => (await cone(app, ra++)).statusCode === 200, { intervalMs: 50 })
    t.pass('served again')
  })
}

test('a Retry-After given as an HTTP date years ahead is capped too', async (t) => {
  let calls = 0
  const upstream = createServer((req, res) => {
    calls++
    req.resume()
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': new Date(Date.now() + 10 * 365 * 86_400_000).toUTCString() })
    res.end('{"detail":"Request was throttled."}')
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.close() })
  const { port } = upstream.address() as AddressInfo
  const { app } = await buildTestApp(t, { useRedis: false, config: { ATLAS_BASE_URL: `http://127.0.0.1:${port}/api/` } })
  const res = await cone(app, 30)
  t.comment(`Retry-After ${String(res.headers['retry-after'])} after a 429 dated ten years ahead`)
  t.equal(res.json().code, 'GW_UPSTREAM_BUDGET')
  t.equal(Number(res.headers['retry-after']), HOUR_S)
  t.equal(calls, 1)
})

test(`a 429 from auth-token/ with Retry-After: ${BOGUS_S} holds logins back an hour at most`, async (t) => {
  const { app, sandbox } = await buildTestApp(t, { useRedis: false })
  sandbox.inject({ kind: 'throttle', endpoint: 'auth-token', retryAfterS: BOGUS_S })
  sandbox.expireToken('write')
  const res = await cone(app, 40)
  t.comment(`throttled login: ${res.statusCode} ${res.json().code}, Retry-After ${String(res.headers['retry-after'])}`)
  t.equal(res.json().code, 'GW_UPSTREAM_AUTH_BACKOFF')
  t.ok(Number(res.headers['retry-after']) <= HOUR_S, 'the next login within the hour')
  t.ok(app.upstream.tokens.refreshState().retryAfterS <= HOUR_S)
})
