// A compat request's text is read in the charset its Content-Type names, as Django reads it: QueryDict
// decodes a form (and the query string) in request.encoding, DRF's JSONParser a JSON body; a charset
// Python's codecs.lookup() does not know is ignored (UTF-8). What reaches the upstream is the same text,
// sent as the gateway sends every form: UTF-8, which the upstream reads by default.
import { test } from 'tap'
import { parseRequestData } from '../../../src/drf/body.js'
import { ApiException } from '../../../src/drf/errors.js'
import { startDialects } from './dialect-helper.js'

const FORM = 'application/x-www-form-urlencoded'

// [Content-Type, body (each character one byte), the pairs Django's QueryDict holds]: Python 3.11's
// parse_qsl(body.decode(enc) or body.decode('iso-8859-1'), keep_blank_values=True, encoding=enc),
// enc the charset cgi.parse_header finds when codecs.lookup() knows it, else utf-8.
const FORM_TABLE: Array<[string, string, Array<[string, string]>]> = [
  [`${FORM}; charset=latin1`, 'externalObjects=caf%E9', [['externalObjects', 'caf\u00e9']]],
  [`${FORM}; charset=ISO-8859-1`, 'x=caf%E9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset="latin-1"`, 'x=caf%E9', [['x', 'caf\u00e9']]],
  [`${FORM}; CHARSET=Latin1`, 'x=caf%E9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset=windows-1252`, 'x=%80%81%9F', [['x', '\u20ac\ufffd\u0178']]],
  [`${FORM}; charset=cp1252`, 'x=\u0080', [['x', '\u20ac']]],
  // 0x81 is no cp1252 character: the whole body is read as ISO-8859-1.
  [`${FORM}; charset=cp1252`, 'x=\u0081\u0080', [['x', '\u0081\u0080']]],
  [`${FORM}; charset=us-ascii`, 'x=caf%E9', [['x', 'caf\ufffd']]],
  [`${FORM}; charset=ascii`, 'x=caf\u00e9', [['x', 'caf\u00e9']]],
  [FORM, 'x=caf%E9', [['x', 'caf\ufffd']]],
  [FORM, 'x=caf\u00e9', [['x', 'caf\u00e9']]],
  [FORM, 'x=caf\u00c3\u00a9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset=foo`, 'x=caf%C3%A9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset=utf8mb4`, 'x=caf%C3%A9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset=latin1; charset=utf-8`, 'x=caf%C3%A9', [['x', 'caf\u00e9']]],
  [`${FORM}; charset=latin1`, 'x=%C3%A9', [['x', '\u00c3\u00a9']]],
  [`${FORM}; charset=latin1`, 'x=\u00c3\u00a9', [['x', '\u00c3\u00a9']]],
  [`${FORM}; charset=latin1`, 'caf%E9=1', [['caf\u00e9', '1']]],
  [`${FORM}; charset=utf-8`, 'x=\u00c3\u00a9%E9', [['x', '\u00e9\ufffd']]],
  [`${FORM}; charset=utf-8`, 'x=%EF%BB%BFa', [['x', '\ufeffa']]],
  [`${FORM}; charset=shift_jis`, 'x=abc%41', [['x', 'abcA']]],
  [`${FORM}; charset="a;b"`, 'x=caf%E9', [['x', 'caf\ufffd']]],
  [`${FORM}; x="a;charset=latin1"`, 'x=caf%E9', [['x', 'caf\ufffd']]],
  [`${FORM}; charset=latin1`, 'x=%E9+%e9%zz%', [['x', '\u00e9 \u00e9%zz%']]]
]

// [Content-Type, body, what DRF's JSONParser makes of it: json.load(codecs.getreader(enc)(stream))].
const JSON_TABLE: Array<[string, string, unknown]> = [
  ['application/json; charset=latin1', '{"x": "caf\u00e9"}', { x: 'caf\u00e9' }],
  ['application/json; charset=cp1252', '{"x": "\u0080"}', { x: '\u20ac' }],
  ['application/json; charset=ascii', '{"x": "caf\u00e9"}', "JSON parse error - 'ascii' codec can't decode byte 0xe9 in position 10: ordinal not in range(128)"],
  ['application/json; charset=cp1252', '{"x": "\u0080\u0081"}', "JSON parse error - 'charmap' codec can't decode byte 0x81 in position 8: character maps to <undefined>"],
  ['application/json', '\u00ef\u00bb\u00bf{"x": 1}', 'JSON parse error - Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)']
]

async function dataOf (contentType: string, body: string): Promise<unknown> {
  try {
    const data = await parseRequestData(contentType, Buffer.from(body, 'latin1'))
    return data.kind === 'json' ? data.value : [...data.map].flatMap(([k, vs]) => vs.map((v) => [k, v]))
  } catch (err) {
    if (err instanceof ApiException) return err.detail
    throw err
  }
}

test('form and JSON bodies are read in the charset Django reads them in (python3 3.11 table)', async (t) => {
  // Before: every body was read as UTF-8; 13 of the 24 forms and all 5 JSON bodies came out otherwise.
  for (const [type, body, pairs] of FORM_TABLE) t.same(await dataOf(type, body), pairs, `${type}: ${JSON.stringify(body)}`)
  for (const [type, body, value] of JSON_TABLE) t.same(await dataOf(type, body), value, `${type}: ${JSON.stringify(body)}`)
})

test('a charset Python knows and the gateway does not decode: ASCII text is read, anything else refused', async (t) => {
  t.same(await dataOf(`${FORM}; charset=shift_jis`, 'x=abc'), [['x', 'abc']], 'ASCII reads alike in any ASCII-compatible charset')
  for (const [type, body] of [[`${FORM}; charset=shift_jis`, 'x=%82%A0'], [`${FORM}; charset=Shift-JIS`, 'x=\u0082\u00a0'], [`${FORM}; charset=utf-16`, 'x=abc'], ['application/json; charset=euc-jp', '{"x": "\u00a4\u00a2"}']] as const) {
    t.match(await dataOf(type, body), /^Unsupported charset "[^"]+" in request/, `${type}: ${JSON.stringify(body)} is a DRF-shaped 400`)
  }
})

test('compat: the upstream gets the text the consumer meant, whatever charset the form was in', async (t) => {
  const d = await startDialects(t)
  const key = d.app.consumers.demoKey as string
  const cases: Array<{ what: string, method: 'GET' | 'POST', url: string, type: string, body?: Buffer }> = [
    { what: 'Latin-1 form (the fuzz review\'s)', method: 'POST', url: '/atlas/api/externalxmlist/', type: `${FORM}; charset=latin1`, body: Buffer.from('externalObjects=caf%E9') },
    { what: 'cp1252 form, raw bytes', method: 'POST', url: '/atlas/api/externalxmlist/', type: `${FORM}; charset=windows-1252`, body: Buffer.from([...Buffer.from('externalObjects=caf'), 0xe9, 0x80]) },
    { what: 'Latin-1 JSON', method: 'POST', url: '/atlas/api/externalxmlist/', type: 'application/json; charset=iso-8859-1', body: Buffer.from('{"externalObjects": "caf\u00e9\u20ac"}'.replace('\u20ac', '\u0080'), 'latin1') },
    { what: 'a GET query, in the charset its Content-Type names', method: 'GET', url: '/atlas/api/externalxmlist/?externalObjects=na%EFve', type: 'text/plain; charset=latin1' }
  ]
  const expected = ['caf\u00e9', 'caf\u00e9\u20ac', 'caf\u00e9\u0080', 'na\u00efve']
  for (const [i, c] of cases.entries()) {
    const before = d.behind.received.length
    const res = await d.app.inject({ method: c.method, url: c.url, headers: { authorization: `Token ${key}`, 'content-type': c.type }, ...(c.body === undefined ? {} : { payload: c.body }) })
    t.equal(res.statusCode, 200, `${c.what}: ${res.body.slice(0, 100)}`)
    const sent = d.behind.received.slice(before).map((r) => r.body)
    // Before: the Latin-1 form reached the upstream as externalObjects=caf%EF%BF%BD (U+FFFD).
    t.same(sent, [new URLSearchParams({ externalObjects: expected[i] as string }).toString()], `${c.what}: the upstream is sent ${JSON.stringify(expected[i])} in UTF-8`)
  }
  const refused = await d.app.inject({ method: 'POST', url: '/atlas/api/externalxmlist/', headers: { authorization: `Token ${key}`, 'content-type': `${FORM}; charset=utf-16` }, payload: Buffer.from('externalObjects=a', 'utf16le') })
  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { detail: /^Unsupported charset "utf-16" in request/ }, 'a charset the gateway cannot read: a DRF-shaped 400')
})
