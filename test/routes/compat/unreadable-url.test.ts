// A URL whose path does not decode (a malformed %-escape, bytes that are not UTF-8) or whose segment is
// too long for the router. On the compatibility path that is what Django answers for any path that is
// not an endpoint, the upstream's 404 (README: `{"detail": "Not found."}`); on v1 a problem. Neither
// answer, nor any log line, repeats the key a URL may carry (`?token=<key>` is accepted on the compat
// path; `;token=` is a separator for other servers and proxies).
import { test } from 'tap'
import { buildTestApp } from '../../helper.js'

test('an undecodable compat path gets the upstream\'s 404, as a path that is no endpoint, and no key back', async (t) => {
  const { app, logs } = await buildTestApp(t, { useRedis: false, config: { LOG_LEVEL: 'info' } })
  const key = app.consumers.demoKey as string
  const headers = { authorization: `Token ${key}` }
  const contrast = await app.inject({ url: '/atlas/api/nope/', headers })
  t.equal(contrast.statusCode, 404)
  t.equal(contrast.body, '{"detail":"Not found."}')
  for (const url of [
    `/atlas/api/%zz/?token=${key}`,
    '/atlas/api/objects/%FF',
    `/atlas/api/objects/%FF?token=${key}`,
    `/atlas/api/%E0%A4%A/?ra=1&token=${key}`,
    `/atlas/api/%zz;token=${key}`,
    '/atlas/api%zz',
    // An absolute-form target (RFC 9112 §3.2.2) is the request for its path.
    `http://gateway.example/atlas/api/cone/%zz/?token=${key}`
  ]) {
    const what = url.replaceAll(key, '<key>')
    const res = await app.inject({ url, headers })
    // Before: 400 application/problem+json, its detail repeating the raw URL, key included.
    if (url === '/atlas/api%zz') {
      // Not under /atlas/api/: the v1 dialect's problem, as `/atlas/apinope` gets.
      t.equal(res.statusCode, 400, what)
      t.match(res.headers['content-type'], /^application\/problem\+json/, what)
      continue
    }
    t.equal(res.statusCode, 404, what)
    t.equal(res.body, '{"detail":"Not found."}', `${what}: the upstream's body`)
    for (const name of ['content-type', 'vary', 'allow', 'x-content-type-options']) {
      t.equal(res.headers[name], contrast.headers[name], `${what}: ${name} as /atlas/api/nope/ gets`)
    }
    t.ok(typeof res.headers['x-request-id'] === 'string' && res.headers['x-request-id'] !== '', `${what}: a request id, as every answer`)
  }
  t.notOk(logs().replace(`demo consumer key: ${key}`, '').includes(key), 'the key is in no log line')
})

test('v1: a problem whose detail names the path without the key it may carry', async (t) => {
  const { app, logs } = await buildTestApp(t, { useRedis: false, config: { LOG_LEVEL: 'info' } })
  const key = app.consumers.demoKey as string
  const cases: Array<[string, string, number, string]> = [
    // method, URL, status, code
    ['GET', `/v1/objects/%zz?token=${key}`, 400, 'GW_VALIDATION'],
    ['GET', `/v1/objects/%FF;token=${key}`, 400, 'GW_VALIDATION'],
    ['GET', `http://gateway.example/v1/objects/%zz?api_key=${key}`, 400, 'GW_VALIDATION'],
    // A segment over the router's 100 characters, with a `;token=` in the path.
    ['GET', `/v1/lists/${'a'.repeat(120)};token=${key}/objects`, 400, 'GW_VALIDATION'],
    ['GET', `/v1/nope;token=${key}`, 404, 'GW_NOT_FOUND'],
    ['PUT', `/v1/objects/1;token=${key}`, 405, 'GW_METHOD_NOT_ALLOWED'],
    ['GET', `/nope;key=${key}?token=${key}`, 404, 'GW_NOT_FOUND'],
    // A list name that is no list: the route matched, the name is the parameter (`;token=<key>` included).
    ['GET', `/v1/lists/foo;token=${key}/objects`, 404, 'GW_NOT_FOUND'],
    ['DELETE', `/v1/custom-lists/foo;token=${key}/members/1161600211221604900`, 404, 'GW_NOT_FOUND'],
    ['POST', `/v1/custom-lists/foo;token=${key}/members`, 404, 'GW_NOT_FOUND']
  ]
  for (const [method, url, status, code] of cases) {
    const what = `${method} ${url.replaceAll(key, '<key>')}`
    const body = method === 'POST' ? { payload: '{"add":["1161600211221604900"]}', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } } : { headers: { authorization: `Bearer ${key}` } }
    const res = await app.inject({ method: method as 'GET' | 'PUT' | 'DELETE' | 'POST', url, ...body })
    t.equal(res.statusCode, status, what)
    t.match(res.headers['content-type'], /^application\/problem\+json/, what)
    t.equal(res.json().code, code, what)
    // Before: the raw URL (or its path, `;token=<key>` included) in the detail.
    t.notOk(res.body.includes(key), `${what}: the key is not in the answer (${res.json().detail.replaceAll(key, '<key>').slice(0, 120)})`)
    t.ok(res.json().detail.length > 0, `${what}: a detail`)
  }
  t.notOk(logs().replace(`demo consumer key: ${key}`, '').includes(key), 'the key is in no log line')
})
