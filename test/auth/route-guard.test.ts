// Authorisation fails closed: every route declares a scope or public; a route that declares neither
// stops the app from starting; every protected route refuses a request without a key.
import { test } from 'tap'
import { buildApp } from '../../src/app.js'
import { buildTestApp, FIXTURE_IDS, testConfig, UNUSED_UPSTREAM } from '../helper.js'

// The routes anyone may call, by design: health, metrics and the status page (METRICS_TOKEN), the landing
// page, the API document and page, the compat login (anonymous upstream too) and the compat slash
// redirects (the target checks the key).
const PUBLIC = /^(\/|\/status|\/healthz|\/readyz|\/metrics|\/openapi\.json|\/docs.*|\/atlas\/api\/auth-token\/|\/atlas\/api\/[a-z-]+)$/

test('every route declares its protection, and every protected route refuses a missing key', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const table = app.routeTable
  t.ok(table.length > 100, `${table.length} routes`)
  t.same(table.filter((r) => r.protection === 'none'), [], 'no route without a declaration')
  const publicRoutes = table.filter((r) => r.protection === 'public')
  t.same(publicRoutes.filter((r) => !PUBLIC.test(r.url)), [], 'public routes are only the known ones')
  const v1 = table.filter((r) => r.url.startsWith('/v1/'))
  t.ok(v1.length >= 20 && v1.every((r) => r.protection !== 'public'), 'every v1 route is protected')

  sandbox.resetCalls()
  let checked = 0
  for (const route of table.filter((r) => r.protection !== 'public')) {
    const url = route.url.replace(':id', FIXTURE_IDS.A).replace(':name', 'vra')
    const res = await app.inject({ method: route.method as 'GET', url })
    checked++
    t.equal(res.statusCode, 401, `${route.method} ${url} without a key`)
    if (route.method === 'HEAD') continue
    if (url.startsWith('/atlas/api/')) {
      t.equal(res.json().detail, 'Authentication credentials were not provided.', `${route.method} ${url} answers as the upstream`)
    } else {
      t.equal(res.json().code, 'GW_UNAUTHENTICATED', `${route.method} ${url}`)
    }
  }
  t.ok(checked > 80, `${checked} protected routes checked`)
  t.equal(sandbox.totalCalls(), 0, 'none reached the upstream')
})

test('a route that declares neither a scope nor public stops the app from starting', async (t) => {
  const app = await buildApp(testConfig({ LOG_LEVEL: 'silent', ATLAS_BASE_URL: UNUSED_UPSTREAM }))
  t.teardown(() => app.close())
  app.register(async (child) => {
    child.get('/v1/forgotten', async () => ({ open: true }))
  })
  await t.rejects(async () => { await app.ready() }, /must declare config\.scope or config\.public: GET \/v1\/forgotten/)
})

test('a route cannot be both scoped and public', async (t) => {
  const app = await buildApp(testConfig({ LOG_LEVEL: 'silent', ATLAS_BASE_URL: UNUSED_UPSTREAM }))
  t.teardown(() => app.close())
  t.throws(() => app.get('/v1/both', { config: { scope: 'read', public: true } }, async () => ({})), /both a scope and public/)
})
