import { test } from 'tap'
import { buildTestApp } from '../helper.js'

test('/openapi.json documents every v1 route; /docs serves the browsable page', async (t) => {
  const { app } = await buildTestApp(t)
  const doc = (await app.inject({ url: '/openapi.json' })).json() as { paths: Record<string, Record<string, unknown>>, security: unknown[] }
  const expected: Array<[string, string]> = [
    ['/v1/objects/{id}', 'get'], ['/v1/objects', 'get'], ['/v1/objects/query', 'post'], ['/v1/cone', 'get'],
    ['/v1/lists', 'get'], ['/v1/lists/{name}/objects', 'get'], ['/v1/custom-lists/{name}/objects', 'get'],
    ['/v1/objects/{id}/custom-lists', 'get'], ['/v1/vra/scores', 'get'], ['/v1/vra/todo', 'get'], ['/v1/vra/ranks', 'get'],
    ['/v1/crossmatches', 'get'], ['/v1/me', 'get'], ['/v1/vra/scores', 'post'], ['/v1/vra/todo', 'post'], ['/v1/vra/ranks', 'post'],
    ['/v1/custom-lists/{name}/objects/{id}', 'put'], ['/v1/custom-lists/{name}/objects/{id}', 'delete'],
    ['/v1/custom-lists/{name}/members', 'post'], ['/v1/objects/{id}/detection-list', 'put']
  ]
  for (const [path, method] of expected) t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`)
  // The compat path and the operational routes are described under tags of their own (test/pages/openapi-lint.test.ts).
  t.ok(doc.paths['/atlas/api/objects/']?.post, 'the compat path is documented')
  t.ok(doc.paths['/metrics']?.get && doc.paths['/healthz']?.get, 'and the operational routes')
  t.ok(doc.security.length > 0, 'the key requirement is declared')
  t.match(JSON.stringify(doc.paths['/v1/objects/{id}']), /exceeds 2\^53/, 'ids are documented as strings')
  const docs = await app.inject({ url: '/docs/' })
  t.equal(docs.statusCode, 200)
})
