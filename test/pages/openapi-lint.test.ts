// The live OpenAPI document, linted with redocly.yaml's rules (recommended, plus stricter ones):
// 0 errors and 0 warnings. The document is the running app's, so a route added later (admin, events,
// anything) is linted too; and every route the app serves (the route guard's table) outside the docs page and the compat path
// must be in it, so an undescribed route fails here.
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import { lintFromString, loadConfig } from '@redocly/openapi-core'
import type { FastifyInstance } from 'fastify'
import { buildTestApp } from '../helper.js'
import { COMPAT_PREFIX } from '../../src/routes/compat/index.js'
import { COMPAT_DOC_PREFIX, DOCS_PREFIX, operationIdOf } from '../../src/plugins/openapi.js'

const CONFIG = fileURLToPath(new URL('../../redocly.yaml', import.meta.url))

interface Operation { operationId?: string, summary?: string, tags?: string[], security?: unknown[], responses: Record<string, { content?: Record<string, { schema?: { $ref?: string } }>, headers?: Record<string, unknown> }> }
interface Doc { servers?: unknown[], info: { license?: { name: string } }, tags: Array<{ name: string }>, paths: Record<string, Record<string, Operation>>, components: { schemas: Record<string, unknown> } }

/** Every method and path the app serves, from the route guard's table (`/v1/objects/{id}` form), HEAD aside. */
function liveRoutes (app: FastifyInstance): Array<[string, string]> {
  return app.routeTable.filter((r) => r.method !== 'HEAD').map((r) => [r.method.toLowerCase(), r.url.replace(/:(\w+)/g, '{$1}')])
}

async function lintDoc (t: Test, doc: unknown): Promise<void> {
  const config = await loadConfig({ configPath: CONFIG })
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: '/openapi.json', config })
  const lines = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? '?'}`)
  t.same(lines, [], `redocly lint: ${problems.filter((p) => p.severity === 'error').length} errors, ${problems.filter((p) => p.severity === 'warn').length} warnings`)
}

test('the live document lints with 0 errors and 0 warnings, and describes every route the app serves', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ url: '/openapi.json' })
  t.equal(res.statusCode, 200)
  const doc = res.json() as Doc
  await lintDoc(t, doc)

  t.equal(COMPAT_DOC_PREFIX, COMPAT_PREFIX, 'the document knows the compat prefix the routes use')
  const routes = liveRoutes(app)
  t.ok(routes.length > 40, `${routes.length} routes found in the route tree`)
  const undocumented = routes.filter(([method, path]) => {
    if (path.startsWith(DOCS_PREFIX) || path.startsWith(COMPAT_PREFIX)) return false
    return doc.paths[path]?.[method] === undefined
  })
  t.same(undocumented, [], 'every route outside /docs and the compat path is in the document')
  for (const [, path] of routes.filter(([m, p]) => p.startsWith(COMPAT_PREFIX) && p.endsWith('/') && m === 'post')) {
    t.ok(doc.paths[path]?.post, `compat ${path} is documented`)
  }
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith(DOCS_PREFIX)), 'the docs page\'s files are not operations')
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith(COMPAT_PREFIX) && !p.endsWith('/')), 'nor the compat redirects')
})

test('what the document declares: ids, servers, license, problems, media types, headers, tags', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json() as Doc
  t.ok(doc.servers !== undefined && doc.servers.length > 0, 'servers')
  t.equal(doc.info.license?.name, 'MIT')
  const ops = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ path, method, op })))
  const ids = ops.map((o) => o.op.operationId)
  t.notOk(ids.includes(undefined), 'every operation has an operationId')
  t.equal(new Set(ids).size, ids.length, 'unique')
  const byId = new Map(ops.map((o) => [o.op.operationId, o.op]))
  t.ok(byId.get('getObjectsByIdLightcurve'), 'GET /v1/objects/{id}/lightcurve is getObjectsByIdLightcurve')
  t.ok(doc.components.schemas.Problem, 'the shared Problem schema')
  for (const { path, method, op } of ops.filter((o) => o.path.startsWith('/v1/'))) {
    for (const [status, response] of Object.entries(op.responses)) {
      if (Number(status) < 400) continue
      t.same(Object.keys(response.content ?? {}), ['application/problem+json'], `${method} ${path} ${status} is problem+json`)
      t.equal(response.content?.['application/problem+json']?.schema?.$ref, '#/components/schemas/Problem')
      t.ok(response.headers?.RateLimit && response.headers['RateLimit-Policy'], `${method} ${path} ${status}: RateLimit headers`)
      if (status === '429' || status === '503') t.ok(response.headers?.['Retry-After'], `${method} ${path} ${status}: Retry-After`)
    }
  }
  const read = byId.get('getObjectsById') as Operation
  for (const h of ['ETag', 'X-Cache', 'Age', 'RateLimit', 'RateLimit-Policy']) t.ok(read.responses['200']?.headers?.[h], `GET /v1/objects/{id} 200 documents ${h}`)
  t.ok(read.responses['304'], 'and its 304')
  const bulk = byId.get('postObjectsQuery') as Operation
  t.same(Object.keys(bulk.responses['200']?.content ?? {}).sort(), ['application/json', 'application/x-ndjson'], 'NDJSON declared')
  const lc = byId.get('getObjectsByIdLightcurve') as Operation
  t.same(Object.keys(lc.responses['200']?.content ?? {}).sort(), ['application/json', 'image/svg+xml', 'text/csv'])
  const tagOf = (id: string): string[] | undefined => byId.get(id)?.tags
  t.same(tagOf('compatPostObjects'), ['compat'])
  t.same(byId.get('compatPostObjects')?.security, [{ compatToken: [] }])
  t.same(byId.get('compatPostAuthToken')?.security, [], 'the compat login takes no key')
  for (const id of ['getRoot', 'getStatus', 'getHealthz', 'getReadyz', 'getMetrics', 'getOpenapiJson']) t.same(tagOf(id), ['operations'], `${id} under operations`)
  t.same(byId.get('getRoot')?.security, [], 'public routes need no key')
  t.same(byId.get('getStatus')?.security, [{ metricsToken: [] }])
  t.same(doc.tags.map((x) => x.name).sort(), [...new Set(ops.flatMap((o) => o.op.tags ?? []))].sort(), 'every tag used is described, and only those')
})

test('operationIdOf', async (t) => {
  t.equal(operationIdOf('GET', '/v1/objects/:id/lightcurve'), 'getObjectsByIdLightcurve')
  t.equal(operationIdOf('PUT', '/v1/custom-lists/:name/objects/:id'), 'putCustomListsByNameObjectsById')
  t.equal(operationIdOf('POST', '/atlas/api/auth-token/'), 'compatPostAuthToken')
  t.equal(operationIdOf('GET', '/'), 'getRoot')
  t.equal(operationIdOf('GET', '/openapi.json'), 'getOpenapiJson')
})

test('a route added without a description fails the lint', async (t) => {
  const { app } = await buildTestApp(t, {
    register: async (a) => {
      a.get('/admin/undescribed', { config: { scope: 'read' }, schema: { hide: true } }, async () => ({}))
    }
  })
  const doc = (await app.inject({ url: '/openapi.json' })).json() as Doc
  t.ok(doc.paths['/admin/undescribed']?.get, 'a hidden route is in the document all the same')
  const config = await loadConfig({ configPath: CONFIG })
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: '/openapi.json', config })
  const rules = new Set(problems.filter((p) => p.location[0]?.pointer?.includes('~1admin~1undescribed') === true).map((p) => p.ruleId))
  t.ok(rules.has('operation-summary'), 'no summary: an error')
  t.ok(rules.has('operation-4xx-response'), 'no 4xx response: an error')
})

test('the docs page: a missing file is a 404, index.html with a query redirects to the page, it cannot be framed and loads only its own files', async (t) => {
  const { app } = await buildTestApp(t, { useRedis: false })
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: `${DOCS_PREFIX}/static/nope.txt` })
    t.equal(res.statusCode, 404, `${method} of a missing file (was a 405 naming the other method)`)
  }
  const redirect = await app.inject({ url: `${DOCS_PREFIX}/static/index.html?lang=en` })
  t.equal(redirect.statusCode, 302)
  t.not(redirect.headers.location, `${DOCS_PREFIX}/static/index.html?lang=en`, 'not to itself (a redirect loop)')
  t.match(String(redirect.headers.location), new RegExp(`^${DOCS_PREFIX}/(\\?|$)`))
  const page = await app.inject({ url: `${DOCS_PREFIX}/` })
  t.equal(page.statusCode, 200)
  const policy = String(page.headers['content-security-policy'])
  t.match(policy, /frame-ancestors 'none'/, 'a page where keys are typed cannot be framed')
  // Nor run any script but Swagger UI's own files, or send a key anywhere but here.
  for (const directive of ["default-src 'none'", "script-src 'self';", "connect-src 'self';", "img-src 'self' data:;", "base-uri 'none'"]) {
    t.ok(policy.includes(directive), directive)
  }
  t.notMatch(policy, /unsafe-inline|unsafe-eval/, 'no inline script or style beyond the one hashed')
})
