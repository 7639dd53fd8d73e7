import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, FIXTURE_IDS } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'
import { DEFAULT_PAGE } from '../../src/routes/v1/admin.js'
import { openSse } from '../push/sse-client.js'
import { requestFingerprint } from '../../src/service/idempotency.js'
import { WRITE_ENDPOINTS } from '../../src/upstream/endpoints.js'

const { A, B } = FIXTURE_IDS

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

// The document against the answers: what the gateway really sends must be documented, and what is
// documented must be sent. Each check below is general (every operation of a kind), and a few real
// requests of each kind are held against the document.

interface Parameter { name: string, in: string, required?: boolean, schema?: { default?: unknown } }
interface Response { description: string, headers?: Record<string, unknown>, content?: Record<string, { schema?: Record<string, unknown> }> }
interface Operation { parameters?: Parameter[], requestBody?: unknown, security?: unknown[], responses: Record<string, Response> }
interface Doc { paths: Record<string, Record<string, Operation>> }
interface Answer { statusCode: number, headers: Record<string, unknown> }

const METHODS = ['get', 'put', 'post', 'delete', 'patch']

function operations (doc: Doc, prefix: string): Array<{ path: string, method: string, op: Operation }> {
  return Object.entries(doc.paths).filter(([path]) => path.startsWith(prefix))
    .flatMap(([path, item]) => Object.entries(item).filter(([m]) => METHODS.includes(m)).map(([method, op]) => ({ path, method, op })))
}

// Headers the document describes on some responses: one sent must be documented on its response.
const DESCRIBED_HEADERS = ['etag', 'x-cache', 'x-cache-reason', 'age', 'retry-after', 'idempotent-replayed', 'write-read-back']
// Headers a response that documents them always carries.
const ALWAYS_SENT = ['etag', 'x-cache', 'age']

/** The answer's status is documented for the operation, with the headers it carries and its media type. */
function conforms (t: Test, doc: Doc, method: string, path: string, res: Answer, status: number): void {
  const name = `${method.toUpperCase()} ${path} ${res.statusCode}`
  t.equal(res.statusCode, status, `${name}: the answer expected`)
  const response = doc.paths[path]?.[method]?.responses[String(res.statusCode)]
  if (response === undefined) {
    t.fail(`${name} is answered but not documented`)
    return
  }
  const documented = new Set(Object.keys(response.headers ?? {}).map((h) => h.toLowerCase()))
  for (const header of DESCRIBED_HEADERS) {
    if (res.headers[header] !== undefined) t.ok(documented.has(header), `${name}: ${header} is sent and documented`)
  }
  for (const header of ALWAYS_SENT) {
    if (documented.has(header)) t.not(res.headers[header], undefined, `${name}: ${header} is documented and sent`)
  }
  if (documented.has('cache-control')) t.not(res.headers['cache-control'], 'no-store', `${name}: a cacheable Cache-Control is documented and sent`)
  const type = String(res.headers['content-type'] ?? '').split(';')[0] ?? ''
  if (type !== '') t.ok(Object.keys(response.content ?? {}).includes(type), `${name}: ${type} is a documented media type`)
}

interface Documented { app: FastifyInstance, sandbox: Sandbox, doc: Doc, auth: Record<string, string>, readOnlyKey: string, key: string }

/** The app with a key of every scope and a read-only key with max_batch 1, and its document. */
async function documented (t: Test): Promise<Documented> {
  const all = makeConsumer('all', { scopes: ['read', 'write:vra', 'write:custom-lists', 'write:detection-list', 'admin'], lists: ['*'] })
  const ro = makeConsumer('ro', { scopes: ['read'], max_batch: 1 })
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [all, ro]), IDEMPOTENCY_WAIT_MS: 0 } })
  const doc = (await app.inject({ url: '/openapi.json' })).json() as Doc
  return { app, sandbox, doc, auth: bearer(all.key), readOnlyKey: ro.key, key: all.key }
}

test('406: every v1 operation documents it, and an Accept the route cannot answer gets it', async (t) => {
  const { app, doc, auth } = await documented(t)
  for (const { path, method, op } of operations(doc, '/v1/')) t.ok(op.responses['406'], `${method.toUpperCase()} ${path} documents 406`)
  conforms(t, doc, 'get', '/v1/objects/{id}/lightcurve', await app.inject({ url: `/v1/objects/${A}/lightcurve?format=csv`, headers: { ...auth, accept: 'application/json' } }), 406)
  conforms(t, doc, 'get', '/v1/objects/{id}', await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, accept: 'text/html' } }), 406)
  conforms(t, doc, 'get', '/v1/objects', await app.inject({ url: `/v1/objects?ids=${A},${B}`, headers: auth }), 200)
})

test('413 and 415: every v1 operation whose method carries a body documents them, and answers them', async (t) => {
  const { app, doc, auth } = await documented(t)
  const { C } = FIXTURE_IDS
  const withBody = operations(doc, '/v1/').filter((o) => o.method !== 'get')
  t.ok(withBody.length >= 8, `${withBody.length} v1 operations take a body`)
  for (const { path, method, op } of withBody) {
    t.ok(op.responses['413'], `${method.toUpperCase()} ${path} documents 413`)
    t.ok(op.responses['415'], `${method.toUpperCase()} ${path} documents 415`)
  }
  const form = { ...auth, 'content-type': 'application/x-www-form-urlencoded' }
  conforms(t, doc, 'post', '/v1/vra/todo', await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: form, payload: `id=${C}` }), 415)
  // A route that reads no body of its own still parses one sent to it.
  conforms(t, doc, 'put', '/v1/custom-lists/{name}/objects/{id}', await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${C}`, headers: { ...auth, 'content-type': 'text/plain' }, payload: 'x' }), 415)
  const big = JSON.stringify({ list: 'eyeball', pad: 'x'.repeat(1_100_000) })
  conforms(t, doc, 'put', '/v1/objects/{id}/detection-list', await app.inject({ method: 'PUT', url: `/v1/objects/${C}/detection-list`, headers: { ...auth, 'content-type': 'application/json' }, payload: big }), 413)
})

test('404: every v1 operation on a named list or table documents it, and an unknown one gets it', async (t) => {
  const { app, doc, auth } = await documented(t)
  const named = operations(doc, '/v1/').filter((o) => /\{(name|table)\}/.test(o.path))
  t.ok(named.length >= 6, `${named.length} operations name a list or table`)
  for (const { path, method, op } of named) t.ok(op.responses['404'], `${method.toUpperCase()} ${path} documents 404`)
  conforms(t, doc, 'get', '/v1/lists/{name}/objects', await app.inject({ url: '/v1/lists/nosuch/objects', headers: auth }), 404)
  conforms(t, doc, 'get', '/v1/custom-lists/{name}/objects', await app.inject({ url: '/v1/custom-lists/nosuch/objects', headers: auth }), 404)
})

// A request for every v1 read, each answered 200.
const READS: Record<string, string> = {
  '/v1/objects/{id}': `/v1/objects/${A}`,
  '/v1/objects': `/v1/objects?ids=${A},${B}`,
  '/v1/objects/{id}/lightcurve': `/v1/objects/${A}/lightcurve`,
  '/v1/cone': '/v1/cone?ra=10&dec=10&radius=5',
  '/v1/crossmatches': '/v1/crossmatches?names=2020abc',
  '/v1/lists': '/v1/lists',
  '/v1/lists/{name}/objects': '/v1/lists/good/objects',
  '/v1/custom-lists/{name}/objects': '/v1/custom-lists/vra/objects',
  '/v1/objects/{id}/custom-lists': `/v1/objects/${A}/custom-lists`,
  '/v1/vra/scores': '/v1/vra/scores',
  '/v1/vra/todo': '/v1/vra/todo',
  '/v1/vra/ranks': '/v1/vra/ranks',
  '/v1/me': '/v1/me',
  '/v1/lists/{name}/events': '/v1/lists/good/events',
  '/v1/vra/{table}/events': '/v1/vra/scores/events',
  '/v1/admin/audit': '/v1/admin/audit',
  '/v1/admin/usage': '/v1/admin/usage?month=2026-12',
  '/v1/admin/consumers': '/v1/admin/consumers'
}

/** A GET over HTTP, as status and headers; an event stream (which never ends) is closed once they came. */
async function get (base: string, url: string, headers: Record<string, string>): Promise<Answer> {
  if (url.endsWith('/events')) {
    const stream = await openSse(base + url, headers)
    await stream.close()
    return { statusCode: stream.status, headers: stream.headers }
  }
  const res = await fetch(base + url, { headers })
  await res.arrayBuffer()
  return { statusCode: res.status, headers: Object.fromEntries(res.headers) }
}

test('cache headers: every v1 read sends those its 200 documents, and documents those it sends', async (t) => {
  const { app, doc, auth } = await documented(t)
  const reads = operations(doc, '/v1/').filter((o) => o.method === 'get').map((o) => o.path)
  t.same(reads.filter((p) => READS[p] === undefined), [], 'every v1 read has a request here')
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  for (const path of reads) conforms(t, doc, 'get', path, await get(base, READS[path] as string, auth), 200)
})

test('304: every v1 read that documents an ETag documents 304, and answers If-None-Match with it', async (t) => {
  const { app, doc, auth } = await documented(t)
  for (const { path, method, op } of operations(doc, '/v1/')) {
    const hasEtag = op.responses['200']?.headers?.ETag !== undefined
    t.equal(op.responses['304'] !== undefined, hasEtag, `${method.toUpperCase()} ${path}: 304 documented ${hasEtag ? 'with' : 'without'} an ETag`)
  }
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  for (const path of Object.keys(READS)) {
    const first = await get(base, READS[path] as string, auth)
    if (first.headers.etag === undefined) continue
    conforms(t, doc, 'get', path, await get(base, READS[path] as string, { ...auth, 'if-none-match': String(first.headers.etag) }), 304)
  }
})

test('defaults: no parameter with a default is required, and the default applies when it is left out', async (t) => {
  const { app, doc, auth } = await documented(t)
  const parameters = operations(doc, '/').flatMap(({ path, method, op }) => (op.parameters ?? []).map((p) => ({ name: `${method.toUpperCase()} ${path} ${p.in} ${p.name}`, p })))
  const defaulted = parameters.filter(({ p }) => p.schema?.default !== undefined)
  t.ok(defaulted.length >= 3, `${defaulted.length} parameters have a default`)
  for (const { name, p } of defaulted) t.not(p.required, true, `${name} (default ${String(p.schema?.default)}) is optional`)
  const cone = await app.inject({ url: '/v1/cone?ra=10&dec=10&radius=5', headers: auth })
  conforms(t, doc, 'get', '/v1/cone', cone, 200)
  t.equal(cone.json().mode, 'all', 'cone without mode: mode all')
  for (let k = 0; k <= DEFAULT_PAGE; k++) {
    const record = { time: new Date().toISOString(), consumer: 'all', request_id: `req-${k}`, route: 'POST /v1/vra/todo', dialect: 'v1' as const, endpoint: 'vratodo' }
    await app.audit.store.append({ ...record, object_ids: [A], list: null, fields: { objectid: A }, outcome: 'created', upstream_status: 201, error: null })
  }
  const audit = await app.inject({ url: '/v1/admin/audit', headers: auth })
  conforms(t, doc, 'get', '/v1/admin/audit', audit, 200)
  t.equal(audit.json().records.length, DEFAULT_PAGE, `audit without limit: a page of ${DEFAULT_PAGE}`)
  t.type(audit.json().next_cursor, 'string', 'and a cursor to the rest')
})

test('event streams: documented as text/event-stream only, and an Accept that excludes it gets 406', async (t) => {
  const { app, doc, auth } = await documented(t)
  const streams = operations(doc, '/v1/').filter((o) => o.op.responses['200']?.content?.['text/event-stream'] !== undefined)
  t.equal(streams.length, 2, 'two event streams')
  for (const { path, op } of streams) t.same(Object.keys(op.responses['200']?.content ?? {}), ['text/event-stream'], `GET ${path} 200: text/event-stream only`)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  for (const { path } of streams) {
    const url = READS[path] as string
    conforms(t, doc, 'get', path, await get(base, url, { ...auth, accept: 'application/json' }), 406)
    conforms(t, doc, 'get', path, await get(base, url, { ...auth, accept: 'text/event-stream' }), 200)
  }
})

test('write and bulk headers: Idempotent-Replayed, Write-Read-Back, Retry-After and the bulk read\'s X-Cache are documented', async (t) => {
  const { app, sandbox, doc, auth } = await documented(t)
  const { C, D, E } = FIXTURE_IDS
  for (const { path, method, op } of operations(doc, '/v1/')) {
    const name = `${method.toUpperCase()} ${path}`
    for (const status of ['409', '429', '503']) {
      if (op.responses[status] !== undefined) t.ok(op.responses[status]?.headers?.['Retry-After'], `${name} ${status} documents Retry-After`)
    }
    if (!(op.parameters ?? []).some((p) => p.in === 'header' && p.name === 'idempotency-key')) continue
    for (const [status, response] of Object.entries(op.responses)) {
      if (status.startsWith('2')) t.ok(response.headers?.['Idempotent-Replayed'], `${name} ${status} documents Idempotent-Replayed`)
    }
  }
  const json = { ...auth, 'content-type': 'application/json' }
  conforms(t, doc, 'post', '/v1/objects/query', await app.inject({ method: 'POST', url: '/v1/objects/query', headers: json, payload: { ids: [A] } }), 200)

  const keyed = { ...json, 'idempotency-key': 'openapi-replay' }
  // C is queued in the sandbox already: 200 already_queued.
  conforms(t, doc, 'post', '/v1/vra/todo', await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: keyed, payload: { id: C } }), 200)
  const replay = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: keyed, payload: { id: C } })
  t.equal(replay.headers['idempotent-replayed'], 'true')
  conforms(t, doc, 'post', '/v1/vra/todo', replay, 200)

  // A key another request holds while it runs.
  const fingerprint = requestFingerprint({ method: 'POST', route: '/v1/vra/todo', params: {}, body: { id: E } })
  const held = await app.atlas.idempotency.begin('all', 'openapi-running', fingerprint)
  if (held.kind !== 'run') throw new Error('the key was free')
  const running = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...json, 'idempotency-key': 'openapi-running' }, payload: { id: E } })
  t.equal(running.headers['retry-after'], '1')
  conforms(t, doc, 'post', '/v1/vra/todo', running, 409)
  await app.atlas.idempotency.finish(held.claim, undefined)

  // A reply with no known outcome after the write was applied: read back, answered with the header.
  const member = `/v1/custom-lists/vra/objects/${D}`
  await app.inject({ method: 'PUT', url: member, headers: auth })
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 201, body: '{"info":"Something else."}' })
  const readBack = await app.inject({ method: 'PUT', url: member, headers: auth })
  t.equal(readBack.headers['write-read-back'], 'applied')
  conforms(t, doc, 'put', '/v1/custom-lists/{name}/objects/{id}', readBack, 201)
})

test('compat: every status the upstream dialect answers is documented, and a GET on a write endpoint as the stub it is', async (t) => {
  const { app, sandbox, doc, key, readOnlyKey } = await documented(t)
  const { D, F } = FIXTURE_IDS
  const writes = new Set([...WRITE_ENDPOINTS].filter((e) => e !== 'auth-token').map((e) => `/atlas/api/${e}/`))
  for (const { path, method, op } of operations(doc, '/atlas/api/')) {
    const name = `${method.toUpperCase()} ${path}`
    const has = (statuses: string[], why: string) => { for (const s of statuses) t.ok(op.responses[s], `${name} documents ${s} (${why})`) }
    has(['200', '400', '404', '406', '503'], 'any request')
    if (op.security?.length === 0) continue
    has(['401', '403', '429'], 'the key')
    if (writes.has(path) && method === 'get') {
      t.same(op.parameters ?? [], [], `${name} reads no parameter`)
      t.match(JSON.stringify(op.responses['200']), /GET is not implemented for this service/, `${name} answers the stub`)
      continue
    }
    has(['502', '504'], 'the upstream')
    if (writes.has(path)) has(['201'], 'a row created')
    if (path === '/atlas/api/objects/') has(['413'], 'max_batch')
    if (path === '/atlas/api/objectgroupsdelete/') has(['204'], 'a removal')
  }

  const form = (k: string) => ({ authorization: `Token ${k}`, 'content-type': 'application/x-www-form-urlencoded' })
  const post = async (path: string, payload: string, k = key) => await app.inject({ method: 'POST', url: path, headers: form(k), payload })
  conforms(t, doc, 'post', '/atlas/api/vratodo/', await post('/atlas/api/vratodo/', `objectid=${F}`), 201)
  conforms(t, doc, 'post', '/atlas/api/objectgroups/', await post('/atlas/api/objectgroups/', `objectid=${A}&objectgroupid=73`), 201)
  conforms(t, doc, 'post', '/atlas/api/objectgroupsdelete/', await post('/atlas/api/objectgroupsdelete/', `objectid=${A}&objectgroupid=73`), 204)
  conforms(t, doc, 'post', '/atlas/api/vrascores/', await post('/atlas/api/vrascores/', `objectid=${F}&preal=0.5`, readOnlyKey), 403)
  conforms(t, doc, 'post', '/atlas/api/objects/', await post('/atlas/api/objects/', `objects=${A},${B}`, readOnlyKey), 413)
  sandbox.inject({ endpoint: 'vraranklist', kind: 'html500', times: 10 })
  conforms(t, doc, 'post', '/atlas/api/vraranklist/', await post('/atlas/api/vraranklist/', ''), 502)
  const token = { authorization: `Token ${key}` }
  const stub = await app.inject({ url: `/atlas/api/vrascores/?objectid=${D}&preal=0.9`, headers: token })
  t.same(stub.json(), { Error: 'GET is not implemented for this service.' })
  conforms(t, doc, 'get', '/atlas/api/vrascores/', stub, 200)
  conforms(t, doc, 'get', '/atlas/api/vratodolist/', await app.inject({ url: '/atlas/api/vratodolist/?format=xml', headers: token }), 404)
  conforms(t, doc, 'get', '/atlas/api/vratodolist/', await app.inject({ url: '/atlas/api/vratodolist/', headers: { ...token, accept: 'application/xml' } }), 406)
})

test('GET /v1/objects: more ids than a URL takes is a documented 400, and its 413 is max_batch alone', async (t) => {
  const { app, doc, auth, readOnlyKey } = await documented(t)
  for (const { path, op } of operations(doc, '/v1/').filter((o) => o.method === 'get' && o.op.responses['413'] !== undefined)) {
    t.notMatch(op.responses['413']?.description, /route|body/, `GET ${path} reads no body: its 413 is max_batch alone`)
  }
  const op = doc.paths['/v1/objects']?.get as Operation & { description?: string }
  t.match(op.description, /more is a 400/, 'the operation says what more than 100 ids gets')
  const ids = Array.from({ length: 101 }, (_, i) => (1000000000000000000n + BigInt(i)).toString()).join(',')
  const tooMany = await app.inject({ url: `/v1/objects?ids=${ids}`, headers: auth })
  t.equal(tooMany.json().code, 'GW_VALIDATION')
  conforms(t, doc, 'get', '/v1/objects', tooMany, 400)
  conforms(t, doc, 'get', '/v1/objects', await app.inject({ url: `/v1/objects?ids=${A},${B}`, headers: bearer(readOnlyKey) }), 413)
})
