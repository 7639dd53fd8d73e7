// Malformed paths, odd headers and protocol-level oddities, sent byte for byte over node:net.
import fc from 'fast-check'
import { A, B, BAD_KEY, KEY, KEY_PCT, KEY_UPPER, OMIT, U, oddText, q, type Expectation, type FuzzRequest } from './model.js'

type Weighted = { weight: number, arbitrary: fc.Arbitrary<FuzzRequest> }

const V1_KEY: Array<[string, string]> = [['authorization', `Bearer ${KEY}`], ['accept', 'application/json']]
const COMPAT_KEY: Array<[string, string]> = [['authorization', `Token ${KEY}`], ['accept', 'application/json']]
const NOT_A_ROUTE: Expectation = { noUpstream: 'the path names no route' }

/** Paths that name no route: they must not reach the upstream, whatever they answer. */
const NON_ROUTES = [
  '/v1', '/v1/', '/v1//me', '/v1/me/', '/V1/me', '/v1/ME', '/v1/objects/', '/v1/objects//custom-lists', '/v1/objects/../me',
  '/v1/%2e%2e/healthz', '/v1/objects/%2F', `/v1/objects/${A}/`, `/v1/objects/${A}/custom-lists/`, '/v1/lists/good/objects/',
  '/v1/vra', '/v1/vra/', '/v1/unknown', `/v1/objects/${A}%2Fcustom-lists`, '/v1/objects;x=1', '/v1/me;jsessionid=1', '/v1/me%00',
  '/v1/me%', '/v1/me%zz', '/v1/lists/%E0%A4%A/objects', '/v1/lists/%FF/objects', '/v1/lists/%C0%AE%C0%AE/objects', '/v1\\me',
  `/v1/objects/${A}\\..\\..\\me`, '/v1/%76ra/todo%3Fids=1', '/v1/lists/good%2Fobjects', '/v1/custom-lists//objects',
  `/v1/custom-lists/vra/objects/${A}/x`, '/atlas/api', '/atlas/api/', '/atlas/api//cone/', '/atlas/api/cone//', '/atlas/api/../api/cone/',
  '/atlas/api/cone/x/', '/atlas/api/CONE/', '/atlas/api/http://evil.example/', '/atlas/api/cone/%2e%2e/objects/', '/atlas/api/%2e%2e/%2e%2e/v1/me',
  '/atlas/api/objects%2F', '/atlas/api/cone/.', '/atlas/api/auth-token//', '/atlas/api/vrascoreslist/%2e%2e/', '/atlas/api/..%2fobjects/',
  '/atlas/api/%2Fobjects/', '/atlas/api/objects/.%2e/', '/atlas/api/\\objects/', '/atlas/api/objects/?/../../', '/atlas//api/objects/',
  '/atlas/API/objects/', '/atlas/api/objectlist%00/', '/atlas/api/api/objects/', '/api/objects/', '/sne/atlas4/api/objects/'
]

/** Targets that may route (or not); only the global invariants apply. */
const ODD_TARGETS = [
  '/', '/healthz', '/metrics', '/openapi.json', '/docs', '/favicon.ico', '/v1/me?', '/v1/me#frag', `/v1/objects/%31${A.slice(1)}`,
  '/v1/me?&&&', '/v1/me?=', '/v1/lists?a', '/atlas/api/%63one/', '/atlas/api/objectlist/?objectlistid=2&format=json',
  '/atlas/api/objectlist/?objectlistid=2&format=api', '/atlas/api/cone/?format=xml', `/v1/objects?ids=${A}&ids=${B}`
]

const LONG_PATHS = [
  { target: '/v1/objects/' + '1'.repeat(10_000), expect: NOT_A_ROUTE },
  { target: '/v1/me?' + 'a=1&'.repeat(5000), expect: {} },
  { target: '/v1/lists/' + 'x'.repeat(200_000) + '/objects', expect: NOT_A_ROUTE },
  { target: '/atlas/api/objects/?objects=' + `${U},`.repeat(600) + U, expect: {} }
]

function raw (family: string, method: string, target: string, headers: Array<[string, string]>, expect: Expectation, body?: string): FuzzRequest {
  return { family: `raw: ${family}`, method, target, headers, ...(body === undefined ? {} : { body }), expect }
}

const malformed = (req: FuzzRequest): FuzzRequest => ({ ...req, isMalformedHttp: true })

function rawFamilies (): Weighted[] {
  const out: Weighted[] = []
  const add = (weight: number, arbitrary: fc.Arbitrary<FuzzRequest>) => out.push({ weight, arbitrary })
  const carrier = fc.constantFrom<[string, Array<[string, string]>]>(['/v1/me', V1_KEY], ['/v1/lists/good/objects', V1_KEY], ['/atlas/api/objectlist/?objectlistid=2', COMPAT_KEY])

  add(10, fc.tuple(fc.constantFrom(...NON_ROUTES), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), fc.boolean()).map(([target, method, compatKey]) =>
    raw('path that names no route', method, target, compatKey ? COMPAT_KEY : V1_KEY, NOT_A_ROUTE)))
  add(4, fc.tuple(fc.constantFrom(...ODD_TARGETS), fc.constantFrom('GET', 'HEAD', 'POST')).map(([target, method]) =>
    raw('odd target', method, target, target.startsWith('/atlas') ? COMPAT_KEY : V1_KEY, {})))
  add(1, fc.constantFrom(...LONG_PATHS).map((p) => raw('very long target', 'GET', p.target, V1_KEY, p.expect)))
  add(3, fc.tuple(fc.constantFrom('/v1/lists/', '/v1/custom-lists/', '/atlas/api/'), oddText).map(([prefix, text]) =>
    raw('odd unicode path segment', 'GET', prefix + q(text) + (prefix.startsWith('/atlas') ? '/' : '/objects'), prefix.startsWith('/atlas') ? COMPAT_KEY : V1_KEY,
      { noUpstream: 'an unknown list or endpoint' })))
  // Bytes no request-target may carry: the HTTP parser must refuse them, without an upstream call.
  add(2, fc.tuple(fc.constantFrom('/v1/me', '/v1/lists/good/objects', '/atlas/api/objectlist/'), fc.constantFrom(' x', '\u0000', '\t', '\u007f', 'ü', '💥', '\u00ff', '"<>', '{|}')).map(([path, bad]) =>
    malformed(raw('raw byte in target', 'GET', path + bad + (path.startsWith('/atlas') ? '?objectlistid=2' : ''), path.startsWith('/atlas') ? COMPAT_KEY : V1_KEY, { noUpstream: 'an unparseable or unknown target' }))))
  add(1, fc.constantFrom('http://127.0.0.1/v1/me', 'http://evil.example/v1/me', 'https://evil.example/atlas/api/objects/?objects=1', '*', 'v1/me', '//evil.example/v1/me').map((target) =>
    raw('absolute or odd request-target', target === '*' ? 'OPTIONS' : 'GET', target, target.includes('/atlas') ? COMPAT_KEY : V1_KEY, {})))

  // Headers.
  add(2, fc.tuple(carrier, fc.constantFrom<[string, string]>(
    ['authorization', 'Bearer'], ['authorization', 'Bearer '], ['authorization', `Basic ${Buffer.from(`demo:${BAD_KEY}`).toString('base64')}`],
    ['authorization', `Bearer ${KEY_UPPER}`], ['authorization', `Bearer ${KEY_PCT}`], ['authorization', `Bearer ${BAD_KEY}`],
    ['authorization', `Token ${BAD_KEY}`], ['authorization', 'Bearer ' + 'f'.repeat(40)], ['authorization', 'Bearer ' + 'g'.repeat(40)], ['x-api-key', '']
  )).map(([[target], header]) => raw(`bad credentials ${header[0]}: ${header[1].split(' ')[0] ?? ''}`, 'GET', target, [['accept', 'application/json'], header],
    { statuses: { why: 'no valid key', codes: [401] } })))
  add(3, fc.tuple(carrier, fc.constantFrom<[string, string]>(
    ['cookie', `session=${KEY}; token=${KEY}`], ['x-request-id', 'x'.repeat(500)], ['x-request-id', '../../etc\u00ff'], ['x-forwarded-for', '1.2.3.4, 5.6.7.8'], ['forwarded', 'for=1.2.3.4;proto=https'], ['x-http-method-override', 'DELETE'], ['content-encoding', 'gzip'],
    ['if-none-match', '"x", W/"y", *'], ['cache-control', 'no-cache'], ['range', 'bytes=0-10'], ['expect', '100-continue'], ['accept-charset', 'latin1'],
    ['x-api-key', `${KEY}, ${BAD_KEY}`], ['accept', 'application/json;q=0.5, */*;q=0.1'], ['accept', '*/*'], ['accept', ';;;,,,'], ['accept-encoding', 'gzip, br'],
    ['host', 'evil.example'], ['x-odd', 'caf\u00e9 \u00ff']
  )).map(([[target, headers], header]) => raw(`odd header ${header[0]}`, 'GET', target, [...headers, header], {})))
  add(1, carrier.map(([target, headers]) => malformed(raw('header of 20 KB', 'GET', target, [...headers, ['x-big', 'a'.repeat(20_000)]], { noUpstream: 'headers above the limit' }))))
  add(1, carrier.map(([target, headers]) => raw('300 headers', 'GET', target, [...headers, ...Array.from({ length: 300 }, (_, i): [string, string] => [`x-h${i}`, String(i)])], {})))
  add(1, carrier.map(([target, headers]) => raw('duplicate authorization', 'GET', target, [...headers, ['authorization', `Bearer ${BAD_KEY}`]], {})))
  // Protocol-level oddities the HTTP parser refuses (a 4xx, no upstream call).
  add(3, fc.tuple(carrier, fc.constantFrom<[string, Array<[string, string]>, string?]>(
    ['CL and TE both', [['content-length', '4'], ['transfer-encoding', 'chunked']], '0\r\n\r\n'],
    ['bad chunk', [['transfer-encoding', 'chunked'], ['content-type', 'application/json']], 'zz\r\n{}\r\n0\r\n\r\n'],
    ['bad content-length', [['content-length', 'abc']]],
    ['two content-lengths', [['content-length', '1'], ['content-length', '2']], 'ab'],
    ['NUL in a header value', [['x-nul', 'a\u0000b']]],
    ['obs-fold header', [['x-fold', 'a\r\n b']]],
    ['space before colon', [['x-space ', 'a']]],
    ['empty host', [['host', '']]],
    ['no host', [['host', OMIT]]]
  )).map(([[target, headers], [name, extra, body]]) => malformed(raw(`protocol: ${name}`, 'POST', target, [...headers, ...extra], { noUpstream: 'a malformed message' }, body))))
  add(1, fc.tuple(carrier, fc.constantFrom('PROPFIND', 'TRACE', 'SEARCH', 'QUERY', 'OPTIONS')).map(([[target, headers], method]) =>
    raw(`method ${method}`, method, target, headers, { noUpstream: `${method} is no method of the route` })))
  // Methods the HTTP parser itself refuses (unknown token, lower case).
  add(1, fc.tuple(carrier, fc.constantFrom('FOO', 'get', 'G ET')).map(([[target, headers], method]) =>
    malformed(raw(`unparseable method ${method}`, method, target, headers, { noUpstream: 'a malformed message' }))))
  return out
}

export function rawArbitrary (): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(...rawFamilies())
}
