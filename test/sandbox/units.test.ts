// The sandbox's building blocks on their own: Python-compatible JSON errors, request-data parsing,
// option and rate parsing, the throttle window, negotiation, and the seeded data.
import { test } from 'tap'
import fc from 'fast-check'
import { ApiException, DjangoHtmlError } from '../../src/drf/errors.js'
import { parseQueryDict, parseRequestData } from '../../src/drf/body.js'
import { generateCatalog, isClear } from '../../src/sandbox/data-catalog.js'
import { validate, type DataSource } from '../../src/drf/fields.js'
import { decodeAtlasId, encodeAtlasId } from '../../src/sandbox/ids.js'
import { negotiate } from '../../src/drf/negotiation.js'
import { parseRate, resolveOptions } from '../../src/sandbox/options.js'
import { MAX_JSON_DEPTH, PythonJsonError, pythonJsonLoads } from '../../src/drf/python-json.js'
import { PyFloat, pyFloatRepr } from '../../src/drf/pystr.js'
import { pyPercentF } from '../../src/lib/py-format.js'
import { Store } from '../../src/sandbox/store.js'
import { SlidingWindowThrottle, throttledDetail } from '../../src/sandbox/throttle.js'
import { formatDateTime, parseDateTime } from '../../src/drf/time.js'
import { call, startTestSandbox } from '../fixtures/sandbox-client.js'
import { waitFor } from '../fixtures/wait.js'

function pyError (text: string): string {
  try {
    pythonJsonLoads(text)
  } catch (err) {
    if (err instanceof PythonJsonError) return err.message
    throw err
  }
  return 'no error'
}

test('pystr: repr(float) as Python writes it', async (t) => {
  const cases: Array<[number, string]> = [[30, '30.0'], [0, '0.0'], [-0, '-0.0'], [1e-5, '1e-05'], [0.0001, '0.0001'], [1e16, '1e+16'],
    [9999999999999998, '9999999999999998.0'], [1.5e16, '1.5e+16'], [1e100, '1e+100'], [-2.5e-7, '-2.5e-07'], [0.1, '0.1'],
    [1161600211221604900, '1.1616002112216049e+18'], [60796.5036596, '60796.5036596'], [Infinity, 'inf'], [-Infinity, '-inf'], [NaN, 'nan']]
  for (const [n, text] of cases) t.equal(pyFloatRepr(n), text, text)
})

test('pystr: \'%f\' rounds the exact binary value to six decimals, half to even', async (t) => {
  const cases: Array<[number, string]> = [[60796.5036596, '60796.503660'], [60796.5036594, '60796.503659'], [0.0078125, '0.007812'],
    [0.0234375, '0.023438'], [-0.0078125, '-0.007812'], [2.5, '2.500000'], [1e-7, '0.000000'], [60000, '60000.000000']]
  for (const [n, text] of cases) t.equal(pyPercentF(n), text, text)
})

test('python-json: values as Python reads them', async (t) => {
  t.strictSame(pythonJsonLoads(' {"a": "x\\ty\\u0041\\/", "b": [true, false, null, -1.5e3, 12345678901234567890, 7], "a": 2} '),
    { a: 2, b: [true, false, null, new PyFloat(-1500), 12345678901234567890n, 7] })
  t.strictSame(pythonJsonLoads('[ ]'), [])
  t.strictSame(pythonJsonLoads('{ }'), {})
  const proto = pythonJsonLoads('{"__proto__": 1}') as Record<string, unknown>
  t.ok(Object.hasOwn(proto, '__proto__'), '__proto__ is an ordinary key')
})

test('python-json: error messages and positions as CPython words them', async (t) => {
  const cases: Array<[string, string]> = [
    ['', 'Expecting value: line 1 column 1 (char 0)'],
    ['"\\x"', 'Invalid \\escape: line 1 column 2 (char 1)'],
    ['"\\u12"', 'Invalid \\uXXXX escape: line 1 column 3 (char 2)'],
    ['"\\uZZZZ"', 'Invalid \\uXXXX escape: line 1 column 3 (char 2)'],
    ['"a\nb"', 'Invalid control character at: line 1 column 3 (char 2)'],
    ['"abc', 'Unterminated string starting at: line 1 column 1 (char 0)'],
    ['"abc\\', 'Unterminated string starting at: line 1 column 1 (char 0)'],
    ['\uFEFF{}', 'Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)'],
    ['{"a":1,}', 'Expecting property name enclosed in double quotes: line 1 column 8 (char 7)'],
    ['[1,]', 'Expecting value: line 1 column 4 (char 3)'],
    ['{', 'Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'],
    ['{"a"', "Expecting ':' delimiter: line 1 column 5 (char 4)"],
    ['{"a":', 'Expecting value: line 1 column 6 (char 5)'],
    ['{"a":1', "Expecting ',' delimiter: line 1 column 7 (char 6)"],
    ['[1', "Expecting ',' delimiter: line 1 column 3 (char 2)"],
    ['-', 'Expecting value: line 1 column 1 (char 0)'],
    ['Infinity', "Out of range float values are not JSON compliant: 'Infinity'"],
    ['[-Infinity]', "Out of range float values are not JSON compliant: '-Infinity'"],
    ['"\uD83D\uDE00" x', 'Extra data: line 1 column 5 (char 4)'],
    ['{\n"a" 1}', "Expecting ':' delimiter: line 2 column 5 (char 6)"]
  ]
  for (const [text, message] of cases) t.equal(pyError(text), message, JSON.stringify(text))
})

test('python-json: nesting deeper than the limit is a RecursionError, worded as CPython words it', async (t) => {
  const nested = (n: number): string => '['.repeat(n) + ']'.repeat(n)
  t.ok(Array.isArray(pythonJsonLoads(nested(MAX_JSON_DEPTH))), `${MAX_JSON_DEPTH} levels are read`)
  t.equal(pyError(nested(MAX_JSON_DEPTH + 1)), 'maximum recursion depth exceeded while decoding a JSON array from a unicode string')
  t.equal(pyError(`[${'{"a":'.repeat(MAX_JSON_DEPTH)}1`), 'maximum recursion depth exceeded while decoding a JSON object from a unicode string')
  t.equal(pyError('['.repeat(1_000_000)), 'maximum recursion depth exceeded while decoding a JSON array from a unicode string', 'a million levels')
  t.equal(pyError(`[1 ${'['.repeat(5000)}`), "Expecting ',' delimiter: line 1 column 4 (char 3)", 'an earlier syntax error wins')
  // request.data: the lossless parser never sees a body deeper than the limit.
  const bomb = await parseRequestData('application/json', Buffer.from(nested(100_000))).catch((err: unknown) => err)
  t.ok(bomb instanceof ApiException, 'a DRF exception, not a stack overflow')
  t.match(bomb, { status: 400, detail: 'JSON parse error - maximum recursion depth exceeded while decoding a JSON array from a unicode string' })
  const atLimit = await parseRequestData('application/json', Buffer.from(`{"a": ${nested(MAX_JSON_DEPTH - 1)}, "b": "${'['.repeat(5000)}"}`))
  t.equal(atLimit.kind, 'json', 'brackets inside strings are text, not nesting')
})

test('request data: encodings, limits and UTF-8 errors', async (t) => {
  const detailOf = async (type: string, body: Buffer): Promise<string> => {
    try {
      await parseRequestData(type, body)
      return 'parsed'
    } catch (err) {
      if (err instanceof ApiException) return err.detail
      if (err instanceof DjangoHtmlError) return `html ${err.status}`
      throw err
    }
  }
  t.equal(await detailOf('application/json', Buffer.from([0x7b, 0xff])), "JSON parse error - 'utf-8' codec can't decode byte 0xff in position 1: invalid start byte")
  t.equal(await detailOf('application/json', Buffer.from([0x7b, 0xc3, 0x28])), "JSON parse error - 'utf-8' codec can't decode byte 0xc3 in position 1: invalid continuation byte")
  t.equal(await detailOf('application/json', Buffer.from([0x22, 0xe2, 0x82, 0xac, 0xc3])), "JSON parse error - 'utf-8' codec can't decode byte 0xc3 in position 4: unexpected end of data")
  t.equal(await detailOf('application/json', Buffer.from([0x22, 0xf0, 0x9f, 0x98])), "JSON parse error - 'utf-8' codec can't decode bytes in position 1-3: unexpected end of data")
  t.equal(await detailOf('multipart/form-data; boundary=b', Buffer.from('garbage')), 'Multipart form parse error - Invalid multipart body.')
  t.equal(await detailOf('application/x-www-form-urlencoded', Buffer.from(Array.from({ length: 1001 }, (_, i) => `k${i}=1`).join('&'))), 'html 400')
  const bigField = `--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n${'x'.repeat(2.6 * 1024 * 1024)}\r\n--b--\r\n`
  t.equal(await detailOf('multipart/form-data; boundary=b', Buffer.from(bigField)), 'html 400')
  const twice = '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n--b--\r\n'
  const mp = await parseRequestData('multipart/form-data; boundary=b', Buffer.from(twice))
  t.same(mp.kind === 'querydict' ? mp.map.get('a') : null, ['1', '2'])
  t.same(await parseRequestData('*/*', Buffer.from('{"a":1}')), { kind: 'json', value: { a: 1 } }, '*/* selects the JSON parser')
  t.same(await parseRequestData('application/x-www-form-urlencoded', Buffer.alloc(0)), { kind: 'querydict', map: new Map() })
  t.same(await parseRequestData(undefined, Buffer.alloc(0)), { kind: 'json', value: {} })
  const q = parseQueryDict('a&b=1&&a=2&%zz=%E2%82%AC+x&c=%FF')
  t.same(q.kind === 'querydict' ? Object.fromEntries(q.map) : null, { a: ['', '2'], b: ['1'], '%zz': ['€ x'], c: ['\uFFFD'] })
})

test('parseQueryDict: any text percent-encoded (either hex case, escapes mixed with plain ASCII) reads back as itself; a malformed escape stays as written', async (t) => {
  const hexCases = (escaped: string, upper: boolean): string => upper ? escaped : escaped.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase())
  fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.boolean(), fc.constantFrom('', '%', '%4', '%zz', '%G0'), (text, upper, bad) => {
    const value = hexCases(encodeURIComponent(text), upper)
    const q = parseQueryDict(`k=${value}&m=${value}${bad}`)
    if (q.kind !== 'querydict') return false
    return q.map.get('k')?.[0] === text && q.map.get('m')?.[0] === text + bad
  }), { numRuns: 2000 })
  t.pass('2,000 generated texts read back')
})

test('fields: the root must be a dictionary', async (t) => {
  const root = (value: unknown): unknown => {
    const r = validate([], { kind: 'json', value } satisfies DataSource)
    return r.ok ? 'ok' : r.errors
  }
  t.same(root(true), { non_field_errors: ['Invalid data. Expected a dictionary, but got bool.'] })
  t.same(root(1.5), { non_field_errors: ['Invalid data. Expected a dictionary, but got float.'] })
  t.same(root(3n), { non_field_errors: ['Invalid data. Expected a dictionary, but got int.'] })
  t.same(root('x'), { non_field_errors: ['Invalid data. Expected a dictionary, but got str.'] })
  t.equal(root({}), 'ok')
})

test('options and rates', async (t) => {
  t.same(parseRate('3/min'), { text: '3/min', num: 3, durationS: 60 })
  t.same(parseRate('100000/hour').durationS, 3600)
  t.same(parseRate('5/s').durationS, 1)
  t.same(parseRate('5/day').durationS, 86400)
  for (const bad of ['3/fortnight', 'x/min', '3', '-1/min', '1.5/min']) t.throws(() => parseRate(bad), bad)
  t.throws(() => resolveOptions({ errorRate: 2 }), /errorRate/)
  t.throws(() => resolveOptions({ latencyMs: -1 }), /latencyMs/)
  t.throws(() => resolveOptions({ objects: Number.NaN }), /objects/)
  t.throws(() => resolveOptions({ recordCache: -1 }), /recordCache/)
  t.equal(resolveOptions({}).recordCache, 5000)
  t.equal(resolveOptions({ recordCache: 12000.7 }).recordCache, 12000)
  t.equal(resolveOptions({ prefix: '' }).prefix, '/')
  t.equal(resolveOptions({ prefix: '//sne/atlas4/api' }).prefix, '/sne/atlas4/api/')
  t.equal(resolveOptions({ paths: { vrarank: '/rank/' } }).segments.vrarank, 'rank')
})

test('throttle: DRF sliding window arithmetic', async (t) => {
  const th = new SlidingWindowThrottle()
  const rate = parseRate('2/min')
  t.ok(th.check('k', rate, 0).allowed)
  t.ok(th.check('k', rate, 10_000).allowed)
  t.same(th.check('k', rate, 15_000), { allowed: false, waitS: 45 }, 'the oldest request leaves the window in 45 s')
  t.ok(th.check('k', rate, 60_001).allowed, 'the window slides')
  t.same(th.check('k', parseRate('1/min'), 60_002), { allowed: false, waitS: null }, 'more history than a lowered rate allows: no estimate')
  t.same(th.check('z', parseRate('0/min'), 0), { allowed: false, waitS: 60 })
  t.equal(throttledDetail(null), 'Request was throttled.')
  t.equal(throttledDetail(1), 'Request was throttled. Expected available in 1 second.')
  th.reset()
  t.ok(th.check('k', rate, 60_003).allowed)
})

test('throttle: without an estimate there is no Retry-After', async (t) => {
  const sb = await startTestSandbox(t, { objects: 10, throttleRate: '3/min' })
  for (let i = 0; i < 3; i++) await call(sb, 'GET', 'vraranklist/', { token: 'write' })
  sb.setOptions({ throttleRate: '1/min' })
  const res = await call(sb, 'GET', 'vraranklist/', { token: 'write' })
  t.equal(res.status, 429)
  t.strictSame(res.json, { detail: 'Request was throttled.' })
  t.equal(res.headers['retry-after'], undefined)
})

test('negotiation: DRF precedence and matching', async (t) => {
  t.same(negotiate('text/json', undefined, ['json', 'html']), { error: 'not-acceptable' })
  t.same(negotiate('text/*', undefined, ['json', 'html']), { renderer: 'html' })
  t.same(negotiate('*/*;q=0.5, text/html', undefined, ['json', 'html']), { renderer: 'html' }, 'more specific ranges first')
  t.same(negotiate('application/json; indent=4', undefined, ['json', 'html']), { renderer: 'json' })
  t.same(negotiate(undefined, 'api', ['json', 'html']), { renderer: 'html' })
  t.same(negotiate('', undefined, ['json']), { error: 'not-acceptable' }, 'an empty Accept matches nothing')
})

test('time: DRF datetime input and output', async (t) => {
  t.equal(formatDateTime(Date.UTC(2024, 4, 1, 12) * 1000), '2024-05-01T12:00:00Z')
  t.equal(formatDateTime(Date.UTC(2024, 4, 1, 12) * 1000 + 123456), '2024-05-01T12:00:00.123456Z')
  t.equal(parseDateTime('2024-05-01T12:00:00.5Z'), Date.UTC(2024, 4, 1, 12) * 1000 + 500000)
  t.equal(parseDateTime('2024-05-01T12:00:00,25-0130'), (Date.UTC(2024, 4, 1, 13, 30)) * 1000 + 250000)
  t.equal(parseDateTime('2024-5-1 1:2'), Date.UTC(2024, 4, 1, 1, 2) * 1000)
  t.equal(parseDateTime('2024-05-01T12:00:60'), null)
  t.equal(parseDateTime('2024-05-01T12:00+05:60'), null)
  t.equal(parseDateTime('0000-05-01'), null)
})

test('ids: the digits encode RA and Dec', async (t) => {
  const id = encodeAtlasId(244.000875, 22.2680278, 0)
  t.equal(id, 1161600211221604900n)
  const pos = decodeAtlasId(1033249000275412900n)
  t.ok(Math.abs(pos.ra - 53.2041667) < 1e-6 && Math.abs(pos.dec + 27.9035833) < 1e-6)
  t.match(encodeAtlasId(-0.5, -89.99, 7).toString(), /^1235800000895924007$/, 'RA wraps; the sign digit is 0 for the south')
})

test('data: seeded, fixtures first, clear of the corpus cones, LRU-cached records', async (t) => {
  const a = generateCatalog(5, 40)
  t.same(a.map((m) => m.id), generateCatalog(5, 40).map((m) => m.id), 'the same seed gives the same catalogue')
  t.not(a[10]?.id, generateCatalog(6, 40)[10]?.id, 'another seed, other objects')
  t.same(a.slice(0, 6).map((m) => m.fixture), ['A', 'B', 'C', 'D', 'E', 'F'])
  t.equal(generateCatalog(5, 0).length, 6, 'the fixtures are always there')
  const fixtures = a.slice(0, 6)
  t.notOk(isClear(fixtures[0]?.ra ?? 0, fixtures[0]?.dec ?? 0, fixtures))
  t.notOk(isClear(100, -60, fixtures))
  t.ok(isClear(10, 10, fixtures))
  const tiny = new Store(5, 6)
  t.same(tiny.tables.groupRows.map((r) => r.groupId), [2, 73], 'no random members without random objects')
  const store = new Store(5, 20, 2)
  const [x, y, z] = store.catalog.slice(6, 9).map((m) => m.id)
  const first = store.recordJson(x ?? 0n, null)
  store.recordJson(y ?? 0n, null)
  store.recordJson(z ?? 0n, null)
  t.equal(store.recordJson(x ?? 0n, null), first, 'an evicted record is rebuilt identically')
})

// The upstream keeps a hit when its separation <= radius, nothing else. The sandbox's Dec band before
// that test was radius / 3600 exactly, and a rounding could put a hit at exactly the radius outside it.
test('cone: a radius equal to a hit\'s separation keeps that hit, as the wide search reports it', async (t) => {
  const store = new Store(42, 2000)
  let radii = 0
  const lost: string[] = []
  // Positions north and south of every object, out to nearly 300".
  for (const meta of store.catalog) {
    for (let k = 1; k <= 40; k++) {
      for (const dec of [meta.dec + k * 0.00197, meta.dec - k * 0.00197]) {
        const wide = store.coneSearch(meta.ra, dec, 300)
        for (const hit of wide) {
          radii++
          const narrow = store.coneSearch(meta.ra, dec, hit.separation).map((h) => h.meta.id)
          const expected = wide.filter((h) => h.separation <= hit.separation).map((h) => h.meta.id)
          if (narrow.join() !== expected.join()) lost.push(`ra=${meta.ra} dec=${dec} radius=${hit.separation}`)
        }
      }
    }
  }
  t.ok(radii > 100_000, `${radii} exact-separation radii`)
  t.strictSame(lost, [], 'each narrow search is the wide one cut at its radius')
})

test('fields and routing: the rarer inputs', async (t) => {
  const sb = await startTestSandbox(t, { objects: 20 })
  const json = async (path: string, body: unknown): Promise<unknown> => (await call(sb, 'POST', path, { token: 'write', json: body })).json
  t.strictSame(await json('objectlist/', { objectlistid: [2] }), { objectlistid: ['A valid integer is required.'] })
  t.strictSame(await json('objectlist/', { objectlistid: '1'.repeat(1001) }), { objectlistid: ['String value too large.'] })
  t.strictSame(await json('objectlist/', { objectlistid: 2, datethreshold: 20250603 }), { datethreshold: ['Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].'] })
  t.strictSame(await json('cone/', { ra: 1161600211221604900n, dec: false, radius: '-inf', requestType: false }), { requestType: ['"False" is not a valid choice.'] })
  t.strictSame((await call(sb, 'POST', 'objectlist/', { token: 'write', form: { objectlistid: '' } })).json, { objectlistid: ['A valid integer is required.'] },
    'an empty value of a required field is not "absent"')
  t.equal((await call(sb, 'POST', 'objectlist/', { token: 'write', form: { objectlistid: '73', getcustomlist: 'true', datethreshold: '2030-01-01T00:00+05' } })).text, '[]')
  t.equal((await call(sb, 'GET', '%E0%A4%A/', { token: 'write' })).status, 404, 'a path that does not decode')
  const noColon = await call(sb, 'POST', 'auth-token/', { headers: { Authorization: `Basic ${Buffer.from('nocolon').toString('base64')}` } })
  t.strictSame(noColon.json, { detail: 'Invalid username/password.' })
  sb.inject({ kind: 'status' })
  t.equal((await call(sb, 'GET', 'cone/')).status, 500, 'a status fault defaults to 500')
})

test('server: optional empty form values, default delays, a client that leaves, IPv6', async (t) => {
  const sb = await startTestSandbox(t, { objects: 20 })
  const table = await call(sb, 'POST', 'vrascoreslist/', { token: 'write', form: {} })
  t.equal((await call(sb, 'POST', 'vrascoreslist/', { token: 'write', form: { objects: '', debug: '' } })).text, table.text,
    'an empty optional form value counts as absent')
  t.strictSame((await call(sb, 'POST', 'cone/', { token: 'write', json: { ra: 1, dec: 1, radius: 1, requestType: true } })).json,
    { requestType: ['"True" is not a valid choice.'] })
  sb.inject({ kind: 'delay' })
  t.equal((await call(sb, 'GET', 'vraranklist/', { token: 'write' })).status, 200)

  // A client that gives up while its answer waits out the latency: the answer is dropped.
  sb.setOptions({ latencyMs: 20 })
  const { request } = await import('node:http')
  const gone = request(`${sb.baseUrl}vraranklist/`, { headers: { Authorization: `Token ${sb.tokens.write}` } })
  gone.on('error', () => {})
  gone.end()
  await waitFor('the sandbox to receive the abandoned vraranklist/ request', () => (sb.calls.get('vraranklist') ?? 0) >= 2)
  gone.destroy()
  // Same latency, started later: by the time it answers, the first timer has fired.
  t.equal((await call(sb, 'GET', 'vraranklist/', { token: 'write' })).status, 200)

  const v6 = await startTestSandbox(t, { objects: 10, host: '::1' })
  t.match(v6.baseUrl, /^http:\/\/\[::1\]:\d+\/api\/$/)
})
