// Generated compat requests (/atlas/api/<endpoint>/): GET query strings, POST form, multipart and JSON
// bodies, PUT/PATCH/DELETE; DRF-invalid values, impossible ids, encodings and the upstream's auth forms.
import fc from 'fast-check'
import { BAD_KEY, KEY, READ_KEY, U, jsonObject, nested, nestingDepth, q, type Expectation, type FuzzRequest } from './model.js'
import { COMPAT_ENDPOINTS, JSON_INVALID, jsonValue, type CompatEndpoint, type CompatField } from './compat-endpoints.js'
import { inexactId } from './v1-routes.js'

export const COMPAT_PREFIX = '/atlas/api/'
const BOUNDARY = 'fuzzBoundary7MA4YWxkTrZu0gW'

type Encoding = 'query' | 'form' | 'multipart' | 'json'
type Auth = 'header' | 'header-lower' | 'query' | 'query-pct' | 'none' | 'bad' | 'query-bracket' | 'query-semicolon'
/** A field value: its text, or a raw JSON text that only the JSON encoding can carry. */
interface Field { name: string, text: string, kind: CompatField['kind'], rawJson?: string }
type Weighted = { weight: number, arbitrary: fc.Arbitrary<FuzzRequest> }

const authArb: fc.Arbitrary<Auth> = fc.oneof(
  { weight: 16, arbitrary: fc.constant<Auth>('header') },
  { weight: 3, arbitrary: fc.constantFrom<Auth>('header-lower', 'query') },
  { weight: 2, arbitrary: fc.constantFrom<Auth>('none', 'bad', 'query-pct', 'query-bracket', 'query-semicolon') }
)
const REFUSED_AUTH: ReadonlySet<Auth> = new Set(['none', 'bad', 'query-bracket', 'query-semicolon'])

function authParts (auth: Auth, key: string): { headers: Array<[string, string]>, query: string } {
  switch (auth) {
    case 'header': return { headers: [['authorization', `Token ${key}`]], query: '' }
    case 'header-lower': return { headers: [['authorization', `token ${key}`]], query: '' }
    case 'bad': return { headers: [['authorization', `Token ${BAD_KEY}`]], query: '' }
    case 'none': return { headers: [], query: '' }
    case 'query': return { headers: [], query: `token=${key}` }
    case 'query-pct': return { headers: [], query: `%74oken=${key}` }
    case 'query-bracket': return { headers: [], query: `token[]=${key}` }
    case 'query-semicolon': return { headers: [], query: `;token=${key}` }
  }
}

const formText = (fields: readonly Field[]) => fields.map((f) => `${q(f.name)}=${q(f.text)}`).join('&')

function encodeBody (encoding: Encoding, fields: readonly Field[]): { body: string, type: string } {
  switch (encoding) {
    case 'json': return { body: jsonObject(fields.map((f) => [f.name, f.rawJson ?? jsonValue(f.kind, f.text)])), type: 'application/json' }
    case 'multipart': return {
      body: fields.map((f) => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${f.name}"\r\n\r\n${f.text}\r\n`).join('') + `--${BOUNDARY}--\r\n`,
      type: `multipart/form-data; boundary=${BOUNDARY}`
    }
    default: return { body: formText(fields), type: 'application/x-www-form-urlencoded' }
  }
}

interface BuildOptions {
  method?: string
  auth?: Auth
  key?: string
  accept?: string
  contentType?: string | null
  body?: string
  slash?: boolean
}

function build (ep: CompatEndpoint, family: string, encoding: Encoding, fields: readonly Field[], expect: Expectation, o: BuildOptions = {}): FuzzRequest {
  const method = o.method ?? (encoding === 'query' ? 'GET' : 'POST')
  const auth = authParts(o.auth ?? 'header', o.key ?? KEY)
  const params = [encoding === 'query' ? formText(fields) : '', auth.query].filter((s) => s !== '').join('&')
  const headers: Array<[string, string]> = [...auth.headers, ['accept', o.accept ?? 'application/json']]
  let body: string | undefined
  if (encoding !== 'query') {
    const enc = encodeBody(encoding, fields)
    body = o.body ?? enc.body
    if (o.contentType !== null) headers.push(['content-type', o.contentType ?? enc.type])
  }
  return {
    family: `compat ${method} ${ep.name}/ (${encoding}): ${family}`,
    method,
    target: `${COMPAT_PREFIX}${ep.name}${o.slash === false ? '' : '/'}${params === '' ? '' : `?${params}`}`,
    headers,
    ...(body === undefined ? {} : { body }),
    expect
  }
}

function validFields (ep: CompatEndpoint): fc.Arbitrary<Field[]> {
  const model = Object.fromEntries(ep.fields.map((f) => [f.name, f.valid]))
  const required = ep.fields.filter((f) => f.required === true).map((f) => f.name)
  return fc.record(model, { requiredKeys: required }).map((r) => ep.fields.filter((f) => f.name in r).map((f) => ({ name: f.name, text: r[f.name] as string, kind: f.kind })))
}

function replace (fields: readonly Field[], field: Field): Field[] {
  return [...fields.filter((f) => f.name !== field.name), field]
}

function endpointFamilies (ep: CompatEndpoint): Weighted[] {
  const out: Weighted[] = []
  const add = (weight: number, arbitrary: fc.Arbitrary<FuzzRequest>) => out.push({ weight, arbitrary })
  const valid = validFields(ep)
  const readable = !ep.isWrite && ep.name !== 'auth-token'
  const encodings: Encoding[] = readable ? ['query', 'form', 'multipart', 'json'] : ['form', 'multipart', 'json']
  const encodingArb = fc.constantFrom(...encodings)
  const postEncodingArb = fc.constantFrom<Encoding>('form', 'multipart', 'json')

  add(6, fc.tuple(valid, encodingArb, authArb, fc.boolean()).map(([fields, enc, auth, extra]) => {
    const all = extra ? [...fields, { name: 'rank_alt2', text: '1', kind: 'float' as const }] : fields
    const needsKey = ep.name !== 'auth-token'
    const expect: Expectation = needsKey && REFUSED_AUTH.has(auth) ? { statuses: { why: `no usable key (${auth})`, codes: [401] } } : {}
    return build(ep, auth === 'header' ? (extra ? 'valid, unknown field' : 'valid') : `auth ${auth}`, enc, all, expect, { auth })
  }))
  if (ep.isWrite) {
    add(1, fc.tuple(valid, postEncodingArb).map(([fields, enc]) => build(ep, 'read-only key', enc, fields, { statuses: { why: 'key without write scope', codes: [403] } }, { key: READ_KEY })))
    add(1, valid.map((fields) => build(ep, 'GET on a write endpoint', 'query', fields, { noUpstream: 'GET never writes' })))
  }
  const fieldArb = fc.constantFrom(...ep.fields)
  const invalidFields = ep.fields.filter((f) => f.invalid !== undefined)
  if (invalidFields.length > 0) {
    add(5, fc.tuple(valid, encodingArb, fc.oneof(...invalidFields.map((f) => (f.invalid as fc.Arbitrary<string>).map((text) => ({ name: f.name, text, kind: f.kind })))))
      .map(([fields, enc, bad]) => build(ep, `DRF-invalid ${bad.name}`, enc, replace(fields, bad), { refused: `DRF refuses ${bad.name}=${JSON.stringify(bad.text)}` })))
  }
  const charFields = ep.fields.filter((f) => f.kind === 'char' && ep.name !== 'auth-token')
  if (charFields.length > 0) {
    add(1, fc.tuple(valid, encodingArb, fc.constantFrom(...charFields), fc.constantFrom('a\u0000b', '\u0000', `${U}\u0000`)).map(([fields, enc, f, text]) =>
      build(ep, `NUL in ${f.name}`, enc, replace(fields, { name: f.name, text, kind: f.kind }), { refused: 'DRF: Null characters are not allowed.' })))
  }
  add(3, fc.tuple(valid, fieldArb).chain(([fields, f]) => JSON_INVALID[f.kind].map((raw) =>
    build(ep, `JSON ${raw} for ${f.name}`, 'json', replace(fields, { name: f.name, text: '', kind: f.kind, rawJson: raw }), { refused: `DRF refuses ${f.name}: ${raw}` }))))
  for (const f of ep.fields.filter((x) => x.required === true)) {
    add(1, fc.tuple(valid, encodingArb).map(([fields, enc]) => build(ep, `missing ${f.name}`, enc, fields.filter((x) => x.name !== f.name), { refused: `${f.name} is required` })))
  }
  for (const f of ep.fields.filter((x) => x.impossible !== undefined)) {
    add(3, fc.tuple(valid, encodingArb, f.impossible as fc.Arbitrary<string>).map(([fields, enc, text]) =>
      build(ep, `no-such-id ${f.name}`, enc, replace(f.soleFilter === true ? [] : fields, { name: f.name, text, kind: f.kind }), { noUpstream: `${f.name}=${JSON.stringify(text)} names no ATLAS object (issue 11 item 8)` })))
  }
  for (const f of ep.fields.filter((x) => x.ids !== undefined)) {
    add(3, fc.tuple(valid, fc.oneof(inexactId, fc.constant(U))).map(([fields, id]) =>
      build(ep, `${f.name} as JSON number`, 'json', replace(fields, { name: f.name, text: id, kind: f.kind, rawJson: id }), { exactIds: [id] })))
  }
  add(1, fc.tuple(valid, nestingDepth, fieldArb).map(([fields, depth, f]) =>
    build(ep, 'nesting bomb', 'json', replace(fields, { name: f.name, text: '', kind: f.kind, rawJson: nested(depth, 'array') }), { refused: `JSON nested ${depth} deep` })))
  add(1, fc.tuple(valid, fc.constantFrom('{', '{"objectid":}', "{'a':1}", '[1,', '{"a":NaN}', '\u0000', '{"a":"\\ud800"}x')).map(([fields, body]) =>
    build(ep, 'malformed JSON', 'json', fields, { statuses: { why: 'JSON parse error', codes: [400] } }, { body })))
  // DRF only looks at the type of a non-empty body, so the body always carries a (harmless) extra field.
  add(1, fc.tuple(valid, fc.constantFrom<string | null>('text/plain', 'application/xml', 'text/csv', null)).map(([fields, type]) =>
    build(ep, `content-type ${type ?? 'missing'}`, 'form', [...fields, { name: 'rank_alt2', text: '1', kind: 'float' }], { statuses: { why: 'unsupported media type', codes: [415] } }, { contentType: type })))
  add(1, valid.map((fields) => build(ep, 'multipart without boundary', 'multipart', fields, { statuses: { why: 'multipart parse error', codes: [400] } }, { contentType: 'multipart/form-data' })))
  add(2, fc.tuple(valid, fc.constantFrom('PUT', 'PATCH', 'DELETE')).map(([fields, method]) =>
    build(ep, `method ${method}`, 'form', fields, { statuses: { why: 'the upstream allows GET, POST, HEAD, OPTIONS', codes: [405] } }, { method })))
  add(1, fc.tuple(valid, fc.constantFrom<Encoding>('query', 'form')).map(([fields, enc]) =>
    build(ep, 'no trailing slash', enc, fields, { statuses: { why: 'APPEND_SLASH', codes: [301] }, noUpstream: 'a redirect' }, { slash: false })))
  add(1, fc.tuple(valid, encodingArb, fc.constantFrom('application/xml', 'image/png', 'text/csv')).map(([fields, enc, accept]) =>
    build(ep, `Accept ${accept}`, enc, fields, { statuses: { why: 'DRF: Could not satisfy the request Accept header.', codes: [406] } }, { accept })))
  add(0.25, valid.map((fields) => ({
    ...build(ep, 'oversized form', 'form', fields, { refused: 'a form body above Django\'s 2.5 MB' }),
    body: undefined,
    bodyRepeat: { prefix: `${formText(fields)}&objects=`, chunk: `${U}%2C`, times: 130_000, suffix: U }
  })))
  return out
}

export function compatArbitrary (): fc.Arbitrary<FuzzRequest> {
  const all = COMPAT_ENDPOINTS.flatMap((ep) => {
    const families = endpointFamilies(ep)
    const total = families.reduce((s, f) => s + f.weight, 0)
    return families.map((f) => ({ weight: Math.max(1, Math.round((f.weight / total) * 100)), arbitrary: f.arbitrary }))
  })
  return fc.oneof(...all)
}
