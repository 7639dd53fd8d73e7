// plugins/health.ts: the lifecycle behind /readyz (ready → draining → closing), the background
// dependency checks behind /healthz, and answering requests still in flight at a shutdown deadline.
import { test } from 'tap'
import { request } from 'undici'
import { buildTestApp, demoAuth } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'

// Far longer than any test: the background checks run only when a test calls runChecks().
const NO_BACKGROUND_CHECKS = { HEALTH_CHECK_INTERVAL_MS: 3_600_000 }

test('ready → draining → closing: /readyz and what other requests get', async (t) => {
  const { app } = await buildTestApp(t, { config: NO_BACKGROUND_CHECKS })
  const ready = await app.inject({ url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { ready: true, state: 'ready' })

  app.health.drain()
  const draining = await app.inject({ url: '/readyz' })
  t.equal(draining.statusCode, 503)
  t.same(draining.json(), { ready: false, state: 'draining' })
  const served = await app.inject({ url: '/v1/me', headers: demoAuth(app) })
  t.equal(served.statusCode, 200, 'draining still serves')
  t.equal(served.headers.connection, 'close', 'and moves keep-alive clients to another replica')
  t.match((await app.inject({ url: '/healthz' })).json(), { status: 'ok', state: 'draining' }, 'liveness is unaffected')

  app.health.markClosing()
  t.same((await app.inject({ url: '/readyz' })).json(), { ready: false, state: 'closing' })
  const refused = await app.inject({ url: '/v1/me', headers: demoAuth(app) })
  t.equal(refused.statusCode, 503)
  t.match(refused.headers['content-type'], /^application\/problem\+json/)
  t.equal(refused.headers['retry-after'], '1')
  t.equal(refused.json().code, 'GW_UNAVAILABLE')
})

test('/healthz: dependencies are unknown until a check ran, then up or down with why and since when', async (t) => {
  let isFlaky = true
  const { app, logs } = await buildTestApp(t, {
    config: NO_BACKGROUND_CHECKS,
    register: (a) => { a.health.addCheck('flaky', async () => isFlaky ? { ok: false, detail: 'flaked' } : { ok: true }) }
  })
  const before = (await app.inject({ url: '/healthz' })).json()
  t.match(before.checks, { upstream: { status: 'unknown' }, token: { status: 'unknown' }, flaky: { status: 'unknown' } })

  await app.health.runChecks()
  const down = (await app.inject({ url: '/healthz' })).json()
  t.match(down.checks, { upstream: { status: 'up' }, token: { status: 'up' }, flaky: { status: 'down', detail: 'flaked' } })
  t.type(down.checks.flaky.since, 'string')
  t.match(logs(), /"dependency":"flaky".*"msg":"dependency down: flaky"/)
  t.match((await app.inject({ url: '/metrics' })).body, /gateway_dependency_up\{dependency="flaky"\} 0/)

  isFlaky = false
  await app.health.runChecks()
  t.match((await app.inject({ url: '/healthz' })).json().checks, { flaky: { status: 'up' } })
  t.match(logs(), /"msg":"dependency up again: flaky"/)
  t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, 'a dependency never changes readiness')
})

test('a check that never answers counts as down after its own timeout', async (t) => {
  const { app } = await buildTestApp(t, {
    config: NO_BACKGROUND_CHECKS,
    register: (a) => { a.health.addCheck('stuck', async () => new Promise(() => {})) }
  })
  await app.health.runChecks()
  t.match((await app.inject({ url: '/healthz' })).json().checks.stuck, { status: 'down', detail: /no answer within/ })
})

test('answerInFlight: a pending request gets a 503 problem; a response already under way loses its connection; both are logged', async (t) => {
  const { app, logs } = await buildTestApp(t, {
    config: NO_BACKGROUND_CHECKS,
    register: (a) => {
      a.get('/test/pending', { config: { public: true } }, async () => new Promise(() => {}))
      a.get('/test/streaming', { config: { public: true } }, async (_request, reply) => {
        reply.hijack()
        reply.raw.writeHead(200, { 'content-type': 'text/plain' })
        reply.raw.write('partial')
        await new Promise(() => {})
      })
    }
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const pending = request(`${address}/test/pending`)
  const streaming = request(`${address}/test/streaming`).then((res) => res.body.text())
  await waitFor('two requests in flight', () => app.health.inFlightCount === 2)

  t.equal(app.health.answerInFlight('the test deadline'), 2)
  const answered = await pending
  t.equal(answered.statusCode, 503)
  t.match(answered.headers['content-type'], /^application\/problem\+json/)
  t.equal(answered.headers.connection, 'close')
  t.match(await answered.body.json(), { code: 'GW_UNAVAILABLE', status: 503 })
  await t.rejects(streaming, 'the started response is cut, visibly to the client')
  t.match(logs(), /"route":"\/test\/pending".*"msg":"request cut at the test deadline: answered 503"/)
  t.match(logs(), /"route":"\/test\/streaming".*"msg":"request cut at the test deadline: its response had started, closing the connection"/)
  await waitFor('nothing left in flight', () => app.health.inFlightCount === 0)
  t.equal(app.health.answerInFlight('the test deadline'), 0, 'nothing is cut twice')
})

test('/healthz: the text of an error a check threw goes to the log and to a METRICS_TOKEN holder, not to anonymous callers', async (t) => {
  // An upstream host that never resolves (.invalid, RFC 6761) and a Redis port nothing listens on: both
  // checks throw, with messages naming internal hosts and client internals.
  const internalHost = 'atlas-db.internal.invalid'
  const operatorToken = 'operator-token-for-healthz'
  const { app, logs } = await buildTestApp(t, {
    config: {
      ...NO_BACKGROUND_CHECKS,
      ATLAS_BASE_URL: `http://${internalHost}:8000/api/`,
      REDIS_URL: 'redis://127.0.0.1:9',
      // Nothing is written to a Redis that is not there, so there is no key space to delete at the end.
      REDIS_KEY_PREFIX: 'healthz-closed-redis:',
      METRICS_TOKEN: operatorToken
    }
  })
  await app.health.runChecks()

  const anonymous = await app.inject({ url: '/healthz' })
  t.equal(anonymous.statusCode, 200)
  const leaked = [internalHost, 'getaddrinfo', 'enableOfflineQueue', '127.0.0.1'].filter((text) => anonymous.body.includes(text))
  t.comment(`anonymous /healthz body carries ${leaked.length} raw error fragment(s): ${leaked.join(', ')}`)
  t.same(leaked, [], 'no raw error text reaches an anonymous caller')
  const { checks } = anonymous.json()
  t.match(checks.upstream, { status: 'down', detail: 'check failed (ENOTFOUND); the reason is in the log' }, 'a stable detail, with the error code')
  t.match(checks.redis, { status: 'down', detail: /^check failed.*the reason is in the log$/ })

  const wrongToken = await app.inject({ url: '/healthz', headers: { authorization: 'Bearer not-the-token' } })
  t.equal(wrongToken.statusCode, 200, 'a wrong token still gets liveness')
  t.notOk(wrongToken.body.includes(internalHost), 'and no raw text')

  const operator = (await app.inject({ url: '/healthz', headers: { authorization: `Bearer ${operatorToken}` } })).json()
  t.match(operator.checks.upstream, { status: 'down', detail: `getaddrinfo ENOTFOUND ${internalHost}` }, 'the operator sees the raw text')
  t.match(operator.checks.redis.detail, /enableOfflineQueue|ECONNREFUSED|closed/i)
  t.match(logs(), new RegExp(`"dependency":"upstream","detail":"getaddrinfo ENOTFOUND ${internalHost.replaceAll('.', '\\.')}".*"msg":"dependency down: upstream"`), 'the log has it')
})

test('/healthz with METRICS_TOKEN empty: nobody is an operator, so nobody sees raw error text', async (t) => {
  const internalHost = 'atlas-db.internal.invalid'
  const { app } = await buildTestApp(t, { config: { ...NO_BACKGROUND_CHECKS, ATLAS_BASE_URL: `http://${internalHost}:8000/api/` } })
  await app.health.runChecks()
  const body = (await app.inject({ url: '/healthz', headers: { authorization: 'Bearer anything' } })).body
  t.notOk(body.includes(internalHost))
  t.match(JSON.parse(body).checks.upstream, { status: 'down', detail: 'check failed (ENOTFOUND); the reason is in the log' })
})
