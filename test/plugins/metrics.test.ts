import { test } from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { isSameSecret } from '../../src/plugins/metrics.js'
import type { Config } from '../../src/config.js'
import { startTestSandbox, testConfig } from '../helper.js'

async function appWith (t: Test, config: Partial<Config> = {}) {
  const sandbox = await startTestSandbox(t)
  const app = await buildApp(testConfig({ LOG_LEVEL: 'silent', REDIS_URL: '', ATLAS_BASE_URL: sandbox.baseUrl, ...config }))
  // A route with a parameter, to check that the label is the template and not the raw URL.
  app.get('/things/:id', { config: { public: true } }, async (request) => {
    // What the consumer-auth plugin will set; read defensively by the metrics hook.
    Object.assign(request, { consumer: { id: 'telescope-bot' } })
    return { ok: true }
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

test('GET /metrics serves Prometheus text with every gateway family and the process metrics', async (t) => {
  const app = await appWith(t)
  app.metrics.cacheResults.inc({ route: '/v1/objects/:id', result: 'hit' })
  app.metrics.upstreamCalls.inc({ endpoint: 'objects', status: '200' })
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  for (const family of [
    'gateway_requests_total', 'gateway_request_duration_seconds', 'gateway_cache_results_total',
    'gateway_upstream_calls_total', 'gateway_upstream_duration_seconds', 'gateway_upstream_objects_wait_seconds', 'gateway_upstream_budget_remaining',
    'gateway_upstream_pause_seconds', 'gateway_token_refreshes_total', 'gateway_limit_rejections_total',
    'gateway_coalesced_total', 'gateway_redis_errors_total', 'process_cpu_user_seconds_total', 'nodejs_heap_size_used_bytes'
  ]) {
    t.match(res.body, new RegExp(`^# TYPE ${family} `, 'm'), `${family} is exported`)
  }
  t.match(res.body, /gateway_cache_results_total\{route="\/v1\/objects\/:id",result="hit"\} 1/)
})

test('requests are counted by route template, status and consumer; unknown routes are "unmatched"', async (t) => {
  const app = await appWith(t)
  await app.inject({ url: '/things/1234567890123456789' })
  await app.inject({ url: '/things/9876543210987654321' })
  await app.inject({ url: '/healthz' })
  await app.inject({ url: '/no/such/path/1111111111111111111' })
  const text = (await app.inject({ url: '/metrics' })).body
  t.match(text, /gateway_requests_total\{route="\/things\/:id",status="200",consumer="telescope-bot"\} 2/)
  t.match(text, /gateway_requests_total\{route="\/healthz",status="200",consumer="anonymous"\} 1/)
  t.match(text, /gateway_requests_total\{route="unmatched",status="404",consumer="anonymous"\} 1/)
  t.match(text, /gateway_request_duration_seconds_count\{route="\/things\/:id"\} 2/)
  t.notMatch(text, /1234567890123456789|9876543210987654321|1111111111111111111/, 'no raw ids in label values')
})

test('with METRICS_TOKEN set, /metrics needs the bearer token', async (t) => {
  const token = 'metrics-secret-0123456789'
  const app = await appWith(t, { METRICS_TOKEN: token })
  const none = await app.inject({ url: '/metrics' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.json().code, 'GW_UNAUTHENTICATED')
  t.match(none.headers['www-authenticate'], /^Bearer/)
  t.notMatch(none.body, /gateway_requests_total/)
  const wrong = await app.inject({ url: '/metrics', headers: { authorization: 'Bearer metrics-secret-0123456780' } })
  t.equal(wrong.statusCode, 401)
  const basic = await app.inject({ url: '/metrics', headers: { authorization: `Basic ${token}` } })
  t.equal(basic.statusCode, 401)
  const right = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}` } })
  t.equal(right.statusCode, 200)
  t.match(right.body, /gateway_requests_total/)
})

test('/metrics is described in the OpenAPI document as an operational route behind METRICS_TOKEN', async (t) => {
  const app = await appWith(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, { get?: { tags?: string[], security?: unknown[] } }> }
  t.same(doc.paths['/metrics']?.get?.tags, ['operations'])
  t.same(doc.paths['/metrics']?.get?.security, [{ metricsToken: [] }])
})

test('isSameSecret compares whole secrets of any length', async (t) => {
  t.ok(isSameSecret('abc', 'abc'))
  t.notOk(isSameSecret('abc', 'abcd'))
  t.notOk(isSameSecret('', 'abc'))
})
