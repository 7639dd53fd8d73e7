// Nothing a consumer sends is changed, dropped or charged for nothing: ids arrive digit for digit or the
// request fails by name; unknown fields, unknown or repeated parameters, impossible dates and numbers
// the upstream cannot take are 400s before any cache read, charge or upstream call; units are given
// back when the gateway answers 5xx; the upstream share counts every upstream call.
import { connect } from 'node:net'
import { gzipSync } from 'node:zlib'
import { test } from 'tap'
import fc from 'fast-check'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../../helper.js'
import { consumersFile, makeConsumer } from '../../consumer-helper.js'
import { rawRequest } from '../../fixtures/raw-http.js'

const { A, B, C, D, U } = FIXTURE_IDS
const json = { 'content-type': 'application/json' }

/** The form fields of the last request the sandbox received for `endpoint`. */
function lastFields (sandbox: { received: Array<{ endpoint: string, body: string }> }, endpoint: string): URLSearchParams {
  const hit = [...sandbox.received].reverse().find((r) => r.endpoint === endpoint)
  return new URLSearchParams(hit?.body ?? '')
}

test('property: an id sent as a JSON number or string reaches the upstream digit for digit', async (t) => {
  const writer = makeConsumer('writer', { scopes: ['read', 'write:vra', 'write:custom-lists'], lists: ['*'], upstream_share: 10000 })
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [writer]), UPSTREAM_BATCH_WINDOW_MS: 0 } })
  const auth = { authorization: `Bearer ${writer.key}`, ...json }
  const routes: Array<{ url: string, body: (id: string) => string, endpoint: string, field: string }> = [
    { url: '/v1/vra/todo', body: (id) => `{"id":${id}}`, endpoint: 'vratodo', field: 'objectid' },
    { url: '/v1/vra/scores', body: (id) => `{"id":${id},"preal":0.5}`, endpoint: 'vrascores', field: 'objectid' },
    { url: '/v1/vra/ranks', body: (id) => `{"id":${id},"rank":3}`, endpoint: 'vrarank', field: 'objectid' },
    { url: '/v1/custom-lists/vra/members', body: (id) => `{"add":[${id}]}`, endpoint: 'objectgroups', field: 'objectid' },
    { url: '/v1/objects/query', body: (id) => `{"ids":[${id}]}`, endpoint: 'objects', field: 'objects' }
  ]
  let checked = 0
  await fc.assert(fc.asyncProperty(
    fc.bigInt(10n ** 18n, 10n ** 19n - 1n), fc.boolean(), fc.constantFrom(...routes),
    async (n, asNumber, route) => {
      const id = n.toString()
      const res = await app.inject({ method: 'POST', url: route.url, headers: auth, payload: route.body(asNumber ? id : `"${id}"`) })
      checked++
      // Random ids are mostly unknown upstream (404 on writes, `missing` on reads): what matters is the id sent.
      return [200, 201, 404].includes(res.statusCode) && lastFields(sandbox, route.endpoint).get(route.field) === id
    }), { seed: 1130, numRuns: 60 })
  t.equal(checked, 60)

  // The classic case: a Python int that float64 would round to …4900.
  sandbox.resetCalls()
  const res = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: '{"id": 1161600211221604901}' })
  t.equal(res.statusCode, 404, '…4901 is unknown upstream: no row was written for the existing …4900')
  t.equal(lastFields(sandbox, 'vratodo').get('objectid'), '1161600211221604901', 'and the upstream got that id')
})

test('ids that cannot be read exactly are refused by name, never rounded', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = { ...demoAuth(app), ...json }
  sandbox.resetCalls()
  for (const payload of ['{"id":1.1616002112216049e18}', '{"id":1161600211221604901.0}', '{"id":-1161600211221604901}', '{"id":116160021122160490}']) {
    const res = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload })
    t.equal(res.statusCode, 400, payload)
    t.equal(res.json().errors[0].path, '/body/id', `${payload} names the field`)
  }
  const big = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: `{"id":"${A}","rank":1e999}` })
  t.equal(big.statusCode, 400, 'a number that overflows to Infinity is refused')
  const huge = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: `{"id":"${A}","rank":123456789012345678901}` })
  t.equal(huge.statusCode, 400, 'an integer beyond 2^53 in a number field is refused, not rounded')
  t.equal(huge.json().errors[0].path, '/body/rank')
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
})

test('a body number whose double is not what was written is refused where that changes it, by name', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_BATCH_WINDOW_MS: 0 } })
  const auth = { ...demoAuth(app), ...json }
  sandbox.resetCalls()
  // An integer field given a fraction that a double reads as an integer (was sent as 5 and as 1), an
  // integer written with a .0 tail beyond 2^53 (was sent as …992, as the bare form is refused), a number
  // that underflows to 0 (was sent as 0): the query's twins of these are refused too.
  const refused: Array<[string, string, string]> = [
    ['/v1/vra/ranks', `{"id":"${A}","rank":1,"is_gal_cand":4.9999999999999999}`, '/body/is_gal_cand'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":1,"is_gal_cand":0.99999999999999999}`, '/body/is_gal_cand'],
    ['/v1/vra/scores', `{"id":"${A}","is_gal_cand":4.9999999999999999}`, '/body/is_gal_cand'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":1,"is_gal_cand":49.999999999999999e-1}`, '/body/is_gal_cand'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":9007199254740993.0}`, '/body/rank'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":9007199254740993}`, '/body/rank'],
    ['/v1/vra/scores', `{"id":"${A}","rank_alt1":9007199254740993.000}`, '/body/rank_alt1'],
    // The same integer in exponent form, in a number field (was sent as …992).
    ['/v1/vra/ranks', `{"id":"${A}","rank":9.007199254740993e15}`, '/body/rank'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":9007199254740993e0}`, '/body/rank'],
    ['/v1/vra/scores', `{"id":"${A}","rank_alt1":90071992547409930e-1}`, '/body/rank_alt1'],
    ['/v1/vra/ranks', `{"id":"${A}","rank":1e-400}`, '/body/rank'],
    ['/v1/vra/scores', `{"id":"${A}","preal":-1e-400}`, '/body/preal'],
    ['/v1/objects/query', `{"ids":["${A}"],"mjd_min":1e-400}`, '/body/mjd_min'],
    ['/v1/vra/todo', '{"id":1161600211221604900.0}', '/body/id']
  ]
  for (const [url, payload, path] of refused) {
    const res = await app.inject({ method: 'POST', url, headers: auth, payload })
    t.equal(res.statusCode, 400, payload)
    t.equal(res.json().code, 'GW_VALIDATION', payload)
    t.equal(res.json().errors?.[0]?.path, path, `${payload} names the field`)
  }
  t.match((await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload: `{"id":"${A}","rank":1,"is_gal_cand":4.9999999999999999}` })).json().detail,
    /^body\/is_gal_cand must be an integer.*4\.9999999999999999/, 'the detail says what was written')
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')

  // What a double holds as written, or a float field's ordinary rounding, goes through as the double.
  const accepted: Array<[string, string, string, string]> = [
    [`{"id":"${A}","rank":1,"is_gal_cand":5.0}`, 'vrarank', 'is_gal_cand', '5'],
    [`{"id":"${A}","rank":1,"is_gal_cand":5e0}`, 'vrarank', 'is_gal_cand', '5'],
    [`{"id":"${A}","rank":4.9999999999999999}`, 'vrarank', 'rank', '5'],
    [`{"id":"${A}","rank":1e-300}`, 'vrarank', 'rank', '1e-300'],
    [`{"id":"${A}","rank":-0.0}`, 'vrarank', 'rank', '0'],
    [`{"id":"${A}","rank":2.5e3}`, 'vrarank', 'rank', '2500']
  ]
  for (const [payload, endpoint, field, sent] of accepted) {
    const res = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: auth, payload })
    t.equal(res.statusCode, 201, payload)
    t.equal(lastFields(sandbox, endpoint).get(field), sent, `${payload}: ${field}=${sent} upstream`)
  }
})

test('unknown fields, unknown and repeated parameters are 400s naming them', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  sandbox.resetCalls()
  const typo = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...auth, ...json }, payload: `{"id":"${A}","preal":0.93,"rnak":5}` })
  t.equal(typo.statusCode, 400)
  t.equal(typo.json().code, 'GW_VALIDATION')
  t.same(typo.json().errors, [{ path: '/body/rnak', message: 'is not a known field' }])
  const adds = await app.inject({ method: 'POST', url: '/v1/custom-lists/vra/members', headers: { ...auth, ...json }, payload: `{"adds":["${A}"]}` })
  t.equal(adds.statusCode, 400)
  t.equal(adds.json().errors[0].path, '/body/adds')
  const empty = await app.inject({ method: 'POST', url: '/v1/custom-lists/vra/members', headers: { ...auth, ...json }, payload: '{}' })
  t.equal(empty.statusCode, 400, 'a change set with nothing in it')
  const nul = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: { ...auth, ...json }, payload: `{"id":"${A}","rank":null}` })
  t.equal(nul.statusCode, 400, 'null is not coerced to 0')
  const text = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: { ...auth, ...json }, payload: `{"id":"${A}","rank":"7"}` })
  t.equal(text.statusCode, 400, 'a string is not coerced to a number in a body')

  const param = await app.inject({ url: '/v1/lists/good/objects?vra_min=5', headers: auth })
  t.equal(param.statusCode, 400)
  t.same(param.json().errors, [{ path: '/querystring/vra_min', message: 'is not a parameter of this route' }])
  const me = await app.inject({ url: '/v1/me?verbose=1', headers: auth })
  t.equal(me.statusCode, 400, 'a route without parameters takes none')
  const twice = await app.inject({ url: '/v1/lists/good/objects?vra_gte=5&vra_gte=6', headers: auth })
  t.equal(twice.statusCode, 400)
  t.match(twice.json().detail, /vra_gte is repeated/)
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
})

test('impossible dates and numbers the upstream cannot take are 400s before any upstream call', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  sandbox.resetCalls()
  const bad = [
    '/v1/lists/good/objects?since=2025-13-45', '/v1/lists/good/objects?since=2025-01-01T25:00',
    '/v1/lists/good/objects?since=2025-01-01T12:61', '/v1/lists/good/objects?since=0000-00-00',
    '/v1/lists/good/objects?since=2025-02-30', '/v1/vra/scores?since=2025-02-30', '/v1/vra/todo?since=2025-13-45',
    '/v1/vra/ranks?since=2025-01-01T24:00', '/v1/vra/scores?after_id=abc', '/v1/vra/scores?after_id=1e400',
    '/v1/vra/scores?after_id=99999999999999999999', '/v1/cone?ra=Infinity&dec=0&radius=5',
    // An integer parameter written as a fraction that rounds to an integer (was read as 5).
    '/v1/vra/scores?after_id=4.9999999999999999', '/v1/vra/scores?after_id=4.5', '/v1/cone?ra=0x10&dec=0&radius=5',
    '/v1/cone?ra=&dec=0&radius=5', '/v1/cone?ra=1&dec=0&radius=NaN', '/v1/crossmatches?names=2018cow%00',
    `/v1/objects/${A}?mjd_min=Infinity`, '/v1/lists/good/objects?vra_gte=1e999',
    // A name the upstream would not be asked for as sent: trailing space (was trimmed), a no-break space
    // (was merged with the plain name), a C1 control character (was sent).
    '/v1/crossmatches?names=2018cow%20', '/v1/crossmatches?names=2018cow%C2%A0,2018cow', '/v1/crossmatches?names=a%C2%85b'
  ]
  for (const url of bad) {
    const res = await app.inject({ url, headers: auth })
    t.equal(res.statusCode, 400, url)
    t.match(res.headers['content-type'], /^application\/problem\+json/, url)
  }
  t.equal(sandbox.totalCalls(), 0, 'no invalid request reached the upstream')
  t.match((await app.inject({ url: '/v1/lists/good/objects?since=2025-02-30', headers: auth })).json().errors[0].message, /calendar date/)
  for (const url of ['/v1/lists/good/objects?since=2024-02-29', '/v1/lists/good/objects?since=2025-01-01T23:59:59.5%2B05:30']) {
    t.equal((await app.inject({ url, headers: auth })).statusCode, 200, url)
  }
})

test('a query value that does not percent-decode is refused, not taken literally', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  sandbox.resetCalls()
  // Each was answered 200 with the undecoded text as the name (externalObjects=SN2018cow%25zz upstream).
  const undecodable: Array<[string, string]> = [
    ['/v1/crossmatches?names=SN2018cow%zz', 'names'], ['/v1/crossmatches?names=caf%E9', 'names'],
    ['/v1/crossmatches?names=caf%C3', 'names'], ['/v1/crossmatches?names=a,b%2', 'names'],
    ['/v1/vra/scores?ids=%ED%A0%80', 'ids'], [`/v1/objects/${A}?mjd_min=1%`, 'mjd_min']
  ]
  for (const [url, name] of undecodable) {
    const res = await app.inject({ url, headers: auth })
    t.equal(res.statusCode, 400, url)
    t.equal(res.json().code, 'GW_VALIDATION', url)
    t.same(res.json().errors, [{ path: `/querystring/${name}`, message: 'is not valid percent-encoded UTF-8' }], `${url} names the parameter`)
  }
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
  // Escapes that decode are taken as they decode: a `%` sent as %25, é as %C3%A9.
  const ok = await app.inject({ url: '/v1/crossmatches?names=SN2018cow%25zz,caf%C3%A9', headers: auth })
  t.equal(ok.statusCode, 200)
  t.same(Object.keys(ok.json().results), ['SN2018cow%zz', 'café'])
})

test('charges: validation first, units back on 5xx, the share counts every upstream call', async (t) => {
  const reader = makeConsumer('reader', { scopes: ['read'], upstream_share: 1000, daily_objects: 100000 })
  const { app, sandbox } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [reader]), UPSTREAM_MAX_IDS_PER_CALL: 500, UPSTREAM_RETRIES: 0 }
  })
  const auth = { authorization: `Bearer ${reader.key}` }
  const usage = async () => (await app.inject({ url: '/v1/me', headers: auth })).json().usage

  const ids150 = Array.from({ length: 150 }, (_, i) => (BigInt(U) + BigInt(i) * 1000n).toString())
  const tooMany = await app.inject({ url: `/v1/objects?ids=${ids150.join(',')}`, headers: auth })
  t.equal(tooMany.statusCode, 400)
  t.equal((await usage()).units_today, 0, '150 ids refused: nothing charged')

  sandbox.inject({ endpoint: 'objects', kind: 'html500' })
  const failed = await app.inject({ url: `/v1/objects/${A}`, headers: auth })
  t.equal(failed.statusCode, 502)
  t.equal((await usage()).units_today, 0, 'a 5xx gives its units back')
  t.equal((await usage()).upstream_share_used, 1, 'the failed call still cost an upstream call')

  sandbox.resetCalls()
  const ids = Array.from({ length: 3000 }, (_, i) => (BigInt(U) + BigInt(i + 1) * 1000n).toString())
  const bulk = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...auth, ...json }, payload: JSON.stringify({ ids }) })
  t.equal(bulk.statusCode, 200)
  const calls = sandbox.calls.get('objects') ?? 0
  t.equal(calls, 6, '3,000 ids in calls of 500')
  t.equal((await usage()).upstream_share_used, 1 + calls, 'each upstream call took one unit of the share')
  t.equal((await usage()).units_today, 3000)
})

test('every v1 error is problem+json: 405 with Allow, 406, 413, 415, malformed JSON, nesting, bad URLs', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  sandbox.resetCalls()
  const problem = (res: { statusCode: number, headers: Record<string, unknown>, json: () => { code: string } }, status: number, code: string, what: string) => {
    t.equal(res.statusCode, status, what)
    t.match(String(res.headers['content-type']), /^application\/problem\+json/, what)
    t.equal(res.json().code, code, what)
  }
  const wrong = await app.inject({ method: 'DELETE', url: `/v1/objects/${A}`, headers: auth })
  problem(wrong, 405, 'GW_METHOD_NOT_ALLOWED', 'DELETE on an object')
  t.equal(wrong.headers.allow, 'GET, HEAD')
  const query = await app.inject({ method: 'GET', url: '/v1/objects/query', headers: auth })
  problem(query, 405, 'GW_METHOD_NOT_ALLOWED', 'GET on the bulk query is a wrong method, not a bad id')
  t.equal(query.headers.allow, 'POST')
  const put = await app.inject({ method: 'PUT', url: '/v1/objects/query', headers: auth })
  problem(put, 405, 'GW_METHOD_NOT_ALLOWED', 'PUT on the bulk query')
  t.equal(put.headers.allow, 'POST', 'the methods of the static path, not those of /v1/objects/:id')
  const post = await app.inject({ method: 'POST', url: '/v1/me', headers: auth })
  problem(post, 405, 'GW_METHOD_NOT_ALLOWED', 'POST /v1/me')
  const docs = await app.inject({ method: 'POST', url: '/openapi.json' })
  problem(docs, 405, 'GW_METHOD_NOT_ALLOWED', 'POST /openapi.json (the document\'s own routes too)')
  t.equal(docs.headers.allow, 'GET, HEAD')
  problem(await app.inject({ url: '/v1/nothing', headers: auth }), 404, 'GW_NOT_FOUND', 'unknown route')
  problem(await app.inject({ url: '/v1/me', headers: { ...auth, accept: 'text/html' } }), 406, 'GW_NOT_ACCEPTABLE', 'Accept: text/html')
  t.equal((await app.inject({ url: '/v1/me', headers: { ...auth, accept: 'text/html, application/*;q=0.1' } })).statusCode, 200, 'application/* is fine')
  // A problem is what a refusal is written as, not a representation of the resource: accepting only it,
  // or refusing JSON by name, is a 406.
  problem(await app.inject({ url: '/v1/me', headers: { ...auth, accept: 'application/json;q=0, */*' } }), 406, 'GW_NOT_ACCEPTABLE', 'JSON refused by name')
  problem(await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, accept: 'application/problem+json' } }), 406, 'GW_NOT_ACCEPTABLE', 'problem+json only')
  problem(await app.inject({ url: '/v1/me', headers: { ...auth, accept: 'application/json;q=0, application/*' } }), 406, 'GW_NOT_ACCEPTABLE', 'application/* without JSON')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, 'content-type': 'text/plain' }, payload: A }), 415, 'GW_UNSUPPORTED_MEDIA_TYPE', 'text/plain')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json }, payload: '{"id":' }), 400, 'GW_VALIDATION', 'malformed JSON')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json }, payload: '' }), 400, 'GW_VALIDATION', 'empty JSON body')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json }, payload: '['.repeat(5000) + ']'.repeat(5000) }), 400, 'GW_VALIDATION', 'nested 5,000 deep')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json }, payload: `{"id":"${A}","__proto__":{"x":1}}` }), 400, 'GW_VALIDATION', '__proto__')
  problem(await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json }, payload: `{"id":"${A}","pad":"${'x'.repeat(1_100_000)}"}` }), 413, 'GW_PAYLOAD_TOO_LARGE', 'a body over BODY_LIMIT_BYTES')
  problem(await app.inject({ url: '/v1/objects/%E0%A4%A', headers: auth }), 400, 'GW_VALIDATION', 'a URL that does not decode')
  t.equal(sandbox.totalCalls(), 0)
})

test('a v1 body is read only as sent in UTF-8: another Content-Encoding or charset is a 415', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const body = `{"id":"${A}"}`
  const post = (headers: Record<string, string>, payload: string | Buffer = body) =>
    app.inject({ method: 'POST', url: '/v1/vra/todo', headers: { ...auth, ...json, ...headers }, payload })
  sandbox.resetCalls()
  // A plain body labelled zstd or gzip was written (200); a real gzip body was a 400 "not valid JSON";
  // a UTF-16 body was read as UTF-8.
  const refused: Array<[string, Record<string, string>, string | Buffer]> = [
    ['plain JSON labelled zstd', { 'content-encoding': 'zstd' }, body],
    ['plain JSON labelled gzip', { 'content-encoding': 'gzip' }, body],
    ['a gzip body', { 'content-encoding': 'gzip' }, gzipSync(body)],
    ['gzip after identity', { 'content-encoding': 'identity, gzip' }, body],
    ['charset=utf-16', { 'content-type': 'application/json; charset=utf-16' }, Buffer.from(body, 'utf16le')],
    ['charset=latin1', { 'content-type': 'application/json; charset=latin1' }, body],
    ['charset="utf-8x"', { 'content-type': 'application/json;charset="utf-8x"' }, body],
    // Parameters read as Django reads them (the compatibility path too): the last of a repeated name.
    ['charset=utf-8; charset=latin1', { 'content-type': 'application/json; charset=utf-8; charset=latin1' }, body]
  ]
  for (const [what, headers, payload] of refused) {
    const res = await post(headers, payload)
    t.equal(res.statusCode, 415, what)
    t.match(String(res.headers['content-type']), /^application\/problem\+json/, what)
    t.equal(res.json().code, 'GW_UNSUPPORTED_MEDIA_TYPE', what)
  }
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
  const accepted: Array<Record<string, string>> = [{}, { 'content-encoding': 'identity' }, { 'content-encoding': 'IDENTITY' }, { 'content-type': 'application/json; charset=UTF-8' }, { 'content-type': 'application/json; charset="utf-8"' },
    // Other names of UTF-8 (and ASCII, which UTF-8 reads alike) that a client may send: were a 415.
    { 'content-type': 'application/json; charset=utf8' }, { 'content-type': 'application/json; charset=us-ascii' },
    // A quoted `;charset=` inside another parameter's value is not the charset: was a 415.
    { 'content-type': 'application/json; x="a;charset=latin1"' }, { 'content-type': 'application/json; charset=latin1; charset=utf-8' }]
  for (const headers of accepted) {
    t.ok([200, 201].includes((await post(headers)).statusCode), JSON.stringify(headers))
  }
  // The compatibility path follows Django, which reads no Content-Encoding: unchanged.
  const compat = await app.inject({
    method: 'POST',
    url: '/atlas/api/objects/',
    headers: { authorization: `Token ${(auth.authorization as string).slice(7)}`, 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'zstd' },
    payload: `objects=${A}`
  })
  t.equal(compat.statusCode, 200, 'compat: a form labelled zstd is read as it is')
})

test('a slow body gets 408 and malformed HTTP gets 400, both problem+json, from Node\'s own socket errors', async (t) => {
  const { app } = await buildTestApp(t, { config: { REQUEST_TIMEOUT_MS: 300 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const exchange = (bytes: string): Promise<string> => new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => { socket.write(bytes) })
    let out = ''
    socket.setTimeout(5000, () => { socket.destroy(); reject(new Error('no answer')) })
    socket.on('data', (c) => { out += c.toString() })
    socket.on('close', () => resolve(out))
    socket.on('error', () => resolve(out))
  })
  const key = demoAuth(app).authorization as string
  const slow = await exchange(`POST /v1/vra/todo HTTP/1.1\r\nHost: x\r\nAuthorization: ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id":`)
  t.match(slow, /^HTTP\/1\.1 408 /)
  t.match(slow, /content-type: application\/problem\+json/i)
  t.match(slow, /"code":"GW_REQUEST_TIMEOUT"/)
  const hostless = await exchange(`GET /v1/me HTTP/1.1\r\nAuthorization: ${key}\r\nConnection: close\r\n\r\n`)
  t.match(hostless, /^HTTP\/1\.1 400 /)
  t.match(hostless, /"code":"GW_VALIDATION"/, 'no Host header: a problem, not Node\'s empty 400')
  const garbage = await exchange('GARBAGE\r\n\r\n')
  t.match(garbage, /^HTTP\/1\.1 400 /)
  t.match(garbage, /"code":"GW_VALIDATION"/)
  const huge = await exchange(`GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(huge, /^HTTP\/1\.1 431 /)
  // Every answer carries X-Request-Id and nosniff, these too: the same id as the problem's request_id.
  for (const [what, answer] of [['408', slow], ['400', garbage], ['431', huge], ['400 without Host', hostless]] as const) {
    const header = /\r\nx-request-id: ([^\r]+)\r\n/i.exec(answer)?.[1]
    t.ok(header !== undefined, `${what}: X-Request-Id`)
    t.match(answer, new RegExp(`"request_id":"${header ?? 'none'}"`), `${what}: the body's request_id`)
    t.match(answer, /\r\nx-content-type-options: nosniff\r\n/i, `${what}: nosniff`)
  }
})

test('an Expect other than 100-continue gets a problem+json 417 on every path, not Node\'s empty one', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const key = demoAuth(app).authorization as string
  sandbox.resetCalls()
  const paths: Array<[string, string]> = [['/v1/me', key], [`/v1/objects/${A}`, key], ['/atlas/api/objects/?objects=1', `Token ${key.slice(7)}`], ['/nothing', key]]
  for (const [path, authorization] of paths) {
    const res = await rawRequest({ method: 'GET', url: `http://127.0.0.1:${port}${path}`, headers: { authorization, expect: 'x-something' } })
    t.equal(res.status, 417, path)
    t.match(String(res.headers['content-type']), /^application\/problem\+json/, `${path}: problem+json (was no content type, an empty body)`)
    t.equal(JSON.parse(res.text).code, 'GW_EXPECTATION_FAILED', path)
    t.equal(JSON.parse(res.text).request_id, res.headers['x-request-id'], `${path}: X-Request-Id`)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${path}: nosniff`)
  }
  const posted = await rawRequest({ method: 'POST', url: `http://127.0.0.1:${port}/v1/vra/todo`, headers: { authorization: key, 'content-type': 'application/json', expect: 'x' }, body: `{"id":"${A}"}` })
  t.equal(posted.status, 417, 'a write with one is not applied')
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
  const asked = await rawRequest({ method: 'GET', url: `http://127.0.0.1:${port}/v1/me`, headers: { authorization: key, expect: '100-Continue' } })
  t.equal(asked.status, 200, '100-continue (any case) is still met')
})

test('the bulk body follows the consumer\'s max_batch: 50,000 ids fit', async (t) => {
  const big = makeConsumer('big', { scopes: ['read'], max_batch: 50000, daily_objects: 10 })
  const small = makeConsumer('small', { scopes: ['read'], max_batch: 100 })
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [big, small]) } })
  const ids = Array.from({ length: 50000 }, (_, i) => (BigInt(U) + BigInt(i) * 1000n).toString())
  const payload = JSON.stringify({ ids })
  t.ok(payload.length > 1048576, 'the body is over the 1 MiB default')
  sandbox.resetCalls()
  const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { authorization: `Bearer ${big.key}`, ...json }, payload })
  t.equal(res.statusCode, 429, 'read whole and refused by its daily units, not by size')
  t.equal(res.json().code, 'GW_QUOTA_EXHAUSTED')
  const refused = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { authorization: `Bearer ${small.key}`, ...json }, payload })
  t.equal(refused.statusCode, 413, 'a key with a small max_batch keeps the default limit')
  t.equal(refused.json().code, 'GW_PAYLOAD_TOO_LARGE')
  t.equal(sandbox.totalCalls(), 0)
})

test('a request refused after its units were charged gets them back: the share spent (429), a compat 400, an Idempotency-Key 422', async (t) => {
  const c = makeConsumer('refused', { scopes: ['read', 'write:custom-lists'], lists: ['*'], rate: '1000/minute', daily_objects: 100, upstream_share: 1 })
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [c]), PREFETCH_ENABLED: false } })
  const auth = { authorization: `Bearer ${c.key}` }
  const units = async (): Promise<number> => (await app.inject({ url: '/v1/me', headers: auth })).json().usage.units_today
  t.equal((await app.inject({ url: `/v1/objects/${A}`, headers: auth })).statusCode, 200, 'the one upstream call of its share')
  t.equal(await units(), 1)
  const spent = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: auth, payload: { ids: [B, C, D] } })
  t.equal(spent.statusCode, 429, 'the share is spent')
  t.equal(spent.json().code, 'GW_QUOTA_EXHAUSTED')
  t.equal(await units(), 1, 'the 3 units of the refused batch are back')
  const compat = await app.inject({ url: `/atlas/api/objects/?objects=${A},${B},notanid`, headers: { authorization: `Token ${c.key}` } })
  t.equal(compat.statusCode, 400)
  t.equal(await units(), 1, 'a compat 400 charged nothing')
  const write = (add: string[]) => app.inject({ method: 'POST', url: '/v1/custom-lists/vra/members', headers: { ...auth, 'idempotency-key': 'refused-1' }, payload: { add } })
  const first = await write([A])
  t.ok(first.statusCode < 500, `the first write: ${first.statusCode}`)
  const before = await units()
  const reused = await write([B, C, D])
  t.equal(reused.statusCode, 422)
  t.equal(await units(), before, 'the 422 charged nothing')
})
