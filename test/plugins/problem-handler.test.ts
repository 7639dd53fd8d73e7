import { test } from 'tap'
import type { Test } from 'tap'
import { buildApp } from '../../src/app.js'
import { ValidationError } from '../../src/errors.js'
import { testConfig, UNUSED_UPSTREAM } from '../helper.js'
import { Type } from '@sinclair/typebox'

async function appWithRoutes (t: Test) {
  const app = await buildApp(testConfig({ LOG_LEVEL: 'silent', ATLAS_BASE_URL: UNUSED_UPSTREAM }))
  app.get('/boom', { config: { public: true } }, async () => { throw new Error('database password is hunter2 at /srv/secret') })
  app.get('/bad', { config: { public: true } }, async () => { throw new ValidationError('radius must be at most 300 arcsec') })
  app.get('/typed', { config: { public: true }, schema: { querystring: Type.Object({ n: Type.Integer({ minimum: 1 }) }) } }, async () => ({ ok: true }))
  t.teardown(() => app.close())
  return app
}

test('unknown route → 404 problem+json with the request id', async (t) => {
  const app = await appWithRoutes(t)
  const res = await app.inject({ url: '/nope', headers: { 'x-request-id': 'abc-123' } })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal(res.headers['x-request-id'], 'abc-123')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['code', 'detail', 'request_id', 'status', 'title', 'type'])
  t.equal(body.code, 'GW_NOT_FOUND')
  t.equal(body.request_id, 'abc-123')
})

test('a URL Fastify cannot read → 400 problem with X-Request-Id, as every answer', async (t) => {
  const app = await appWithRoutes(t)
  for (const url of ['/v1/objects/%E0%A4%A', `/v1/lists/${'a'.repeat(120)}/objects`, `/v1/objects/${'1'.repeat(150)}`]) {
    const res = await app.inject({ url, headers: { 'x-request-id': 'mine-123' } })
    t.equal(res.statusCode, 400, url.slice(0, 40))
    t.equal(res.json().code, 'GW_VALIDATION')
    t.equal(res.headers['x-request-id'], 'mine-123', 'the caller\'s own id, as on every answer')
    t.equal(res.json().request_id, 'mine-123')
  }
})

test('schema validation failure → 400 GW_VALIDATION naming the path', async (t) => {
  const app = await appWithRoutes(t)
  const res = await app.inject({ url: '/typed?n=0' })
  t.equal(res.statusCode, 400)
  const body = res.json()
  t.equal(body.code, 'GW_VALIDATION')
  t.match(body.errors[0].path, /querystring\/n/)
  t.ok(body.request_id.length > 0)
})

test('a thrown GW_ error keeps its status, code and message', async (t) => {
  const app = await appWithRoutes(t)
  const res = await app.inject({ url: '/bad' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'GW_VALIDATION')
  t.equal(res.json().detail, 'radius must be at most 300 arcsec')
})

test('an internal error → 500 problem without stack or internals', async (t) => {
  const app = await appWithRoutes(t)
  const res = await app.inject({ url: '/boom' })
  t.equal(res.statusCode, 500)
  t.equal(res.json().code, 'GW_INTERNAL')
  t.notMatch(res.body, /hunter2|\/srv\/secret|at .*\.ts|stack/)
})

test('request ids: unsafe or oversized ids are replaced, generated ids are echoed', async (t) => {
  const app = await appWithRoutes(t)
  const generated = await app.inject({ url: '/healthz' })
  t.match(generated.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  const unsafe = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'a b<script>' } })
  t.not(unsafe.headers['x-request-id'], 'a b<script>')
  const long = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'x'.repeat(200) } })
  t.equal(String(long.headers['x-request-id']).length, 36)
})

test('every answer says X-Content-Type-Options: nosniff, errors and pages included', async (t) => {
  const app = await appWithRoutes(t)
  const key = app.consumers.demoKey as string
  const requests: Array<{ method?: 'GET' | 'DELETE', url: string, headers?: Record<string, string> }> = [
    { url: '/' }, { url: '/status' }, { url: '/metrics' }, { url: '/healthz' }, { url: '/readyz' }, { url: '/openapi.json' },
    { url: '/docs/' }, { url: '/docs/static/swagger-ui.css' }, { url: '/docs/static/index.html?x=1' },
    { url: '/v1/me', headers: { authorization: `Bearer ${key}` } },
    { url: '/v1/me' },
    { url: '/v1/objects/1161600211221604900', headers: { authorization: `Bearer ${key}` } },
    { url: '/v1/objects/%E0%A4%A' },
    { url: '/atlas/api/objects/' },
    { method: 'DELETE', url: '/healthz' },
    { url: '/nope' }, { url: '/boom' }, { url: '/typed?n=0' }
  ]
  for (const r of requests) {
    const res = await app.inject({ method: r.method ?? 'GET', url: r.url, ...(r.headers === undefined ? {} : { headers: r.headers }) })
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${r.method ?? 'GET'} ${r.url}${r.headers === undefined ? '' : ' (with a key)'}: ${res.statusCode}`)
  }
})
