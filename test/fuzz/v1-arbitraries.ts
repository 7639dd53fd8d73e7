// Generated v1 requests: for every route, valid requests (authenticated or not) and requests with
// exactly one thing wrong, so that what the gateway must answer is unambiguous.
import fc from 'fast-check'
import {
  KEY, LIST_KEY, READ_KEY, U, jsonObject, nested, nestingDepth, q, qAll, v1AuthArb, v1AuthHeaders,
  type Expectation, type FuzzRequest, type V1Auth
} from './model.js'
import { V1_ROUTES, inexactId, type V1Route, type ValueSpec } from './v1-routes.js'

type Pairs = Array<[string, string]>
type Weighted = { weight: number, arbitrary: fc.Arbitrary<FuzzRequest> }

const UNKNOWN_PARAMS = ['foo', 'vra_min', 'token', 'ID', 'ids[]', 'mjd', 'objectlistid', 'format', 'callback', 'limit', '__proto__', 'since ', 'Ra']
const UNKNOWN_FIELDS = ['rnak', 'extra', 'ID', 'Id', 'id ', 'adds', 'token', 'objectid', 'constructor', '__proto__', 'mjd']
const WRONG_TYPES = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream', 'application/jsonx', 'json']
const MALFORMED_JSON = ['{', '{"id":}', "{'id':'1'}", '{"id":"1"', '{"a":1}}', '\u0000', '{"id":NaN}', '{"id":Infinity}', '{"a":1,}', 'nul', '{"a":"\\x"}', '{"a":"\ud800"']
const BAD_ACCEPT = ['application/xml', 'text/html', 'image/png', 'text/csv']
const OTHER_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH']
// Large enough for any body limit that follows a max_batch of 10,000 ids (issue 11 item 9).
const OVERSIZED_IDS = 150_000

function fillPath (template: string, values: Record<string, string>, encode = q): string {
  return template.replace(/:([a-z_]+)/g, (_m, name: string) => encode(values[name] ?? ''))
}

function queryText (pairs: Pairs, encode = q): string {
  return pairs.length === 0 ? '' : '?' + pairs.map(([k, v]) => `${encode(k)}=${encode(v)}`).join('&')
}

const names = (specs: Record<string, ValueSpec> | undefined) => Object.keys(specs ?? {})

/** Valid values: every required key, a random subset of the optional ones. */
function validValues (specs: Record<string, ValueSpec> | undefined, required: readonly string[] = []): fc.Arbitrary<Pairs> {
  if (specs === undefined) return fc.constant([])
  const model = Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, s.valid]))
  return fc.record(model, { requiredKeys: [...required] }).map((r) => Object.entries(r) as Pairs)
}

function withValue (pairs: Pairs, name: string, value: string): Pairs {
  return [...pairs.filter(([k]) => k !== name), [name, value]]
}

interface Parts { path: Record<string, string>, query: Pairs, body: Pairs }

function validParts (route: V1Route): fc.Arbitrary<Parts> {
  return fc.record({
    path: validValues(route.pathParams, names(route.pathParams)).map((p) => Object.fromEntries(p)),
    query: validValues(route.query, route.requiredQuery),
    body: validValues(route.body, route.requiredBody)
  })
}

interface BuildOptions {
  method?: string
  auth?: V1Auth
  key?: string
  headers?: Array<[string, string]>
  body?: string
  contentType?: string | null
  accept?: string
  encode?: (s: string) => string
}

function build (route: V1Route, family: string, parts: Parts, expect: Expectation, o: BuildOptions = {}): FuzzRequest {
  const method = o.method ?? route.method
  const encode = o.encode ?? q
  const headers: Array<[string, string]> = [...v1AuthHeaders(o.auth ?? 'bearer', o.key ?? KEY), ['accept', o.accept ?? 'application/json']]
  let body = o.body
  if (body === undefined && route.body !== undefined && method === route.method) body = jsonObject(parts.body)
  if (body !== undefined && o.contentType !== null) headers.push(['content-type', o.contentType ?? 'application/json'])
  headers.push(...(o.headers ?? []))
  return {
    family: `v1 ${route.method} ${route.template}: ${family}`,
    method,
    target: fillPath(route.template, parts.path, encode) + queryText(parts.query, encode),
    headers,
    ...(body === undefined ? {} : { body }),
    expect
  }
}

/** One of `specs` replaced by an invalid value, the rest valid. */
function oneInvalid (specs: Record<string, ValueSpec> | undefined, required: readonly string[] | undefined): fc.Arbitrary<{ name: string, pairs: Pairs }> | undefined {
  const keys = names(specs)
  if (specs === undefined || keys.length === 0) return undefined
  return fc.oneof(...keys.map((name) => fc.tuple(validValues(specs, required), (specs[name] as ValueSpec).invalid)
    .map(([pairs, bad]) => ({ name, pairs: withValue(pairs, name, bad) }))))
}

function routeFamilies (route: V1Route): Weighted[] {
  const out: Weighted[] = []
  const add = (weight: number, arbitrary: fc.Arbitrary<FuzzRequest>) => out.push({ weight, arbitrary })
  const parts = validParts(route)
  const refused = (why: string): Expectation => ({ refused: why })

  add(6, fc.tuple(parts, v1AuthArb).map(([p, auth]) => build(route, auth === 'bearer' || auth === 'x-api-key' ? 'valid' : `auth ${auth}`, p,
    auth === 'bearer' || auth === 'x-api-key' ? {} : { statuses: { why: 'no valid key', codes: [401] } }, { auth })))
  if (route.method === 'GET') add(1, parts.map((p) => build(route, 'HEAD', p, {}, { method: 'HEAD' })))
  if (route.template === '/v1/objects/query') add(2, parts.map((p) => build(route, 'NDJSON', p, {}, { accept: 'application/x-ndjson' })))
  if (route.scope === 'write') {
    add(1, parts.map((p) => build(route, 'read-only key', p, { statuses: { why: 'key without the write scope', codes: [403] } }, { key: READ_KEY })))
  }
  if (route.writesList === true) {
    add(1, parts.filter((p) => p.path.name !== 'mookodi').map((p) =>
      build(route, 'list not granted', p, { statuses: { why: 'key may write only mookodi', codes: [403] } }, { key: LIST_KEY })))
  }

  const badPath = oneInvalid(route.pathParams, names(route.pathParams))
  if (badPath !== undefined) {
    add(3, fc.tuple(parts, badPath).map(([p, bad]) =>
      build(route, `bad path ${bad.name}`, { ...p, path: Object.fromEntries(bad.pairs) }, refused(`invalid ${bad.name}`))))
  }
  const badQuery = oneInvalid(route.query, route.requiredQuery)
  if (badQuery !== undefined) {
    add(4, fc.tuple(parts, badQuery).map(([p, bad]) => build(route, `bad query ${bad.name}`, { ...p, query: bad.pairs }, refused(`invalid ${bad.name}`))))
  }
  for (const name of route.requiredQuery ?? []) {
    add(1, parts.map((p) => build(route, `missing ${name}`, { ...p, query: p.query.filter(([k]) => k !== name) }, refused(`${name} is required`))))
  }
  {
    const unknown = fc.constantFrom(...UNKNOWN_PARAMS.filter((n) => !names(route.query).includes(n)))
    add(2, fc.tuple(parts, unknown, fc.constantFrom('1', 'x', '', KEY)).map(([p, name, value]) =>
      build(route, `unknown query ${name}`, { ...p, query: [...p.query, [name, value]] }, refused(`unknown parameter ${name}`))))
    if (route.query !== undefined && route.method === 'GET') {
      add(2, parts.filter((p) => p.query.length > 0).chain((p) => fc.constantFrom(...p.query).map(([k, v]) =>
        build(route, 'repeated parameter', { ...p, query: [...p.query, [k, v]] }, refused(`${k} given twice`)))))
    }
  }
  add(1, parts.map((p) => build(route, 'percent-encoded everything', p, {}, { encode: qAll })))

  if (route.body !== undefined) {
    const badBody = oneInvalid(route.body, route.requiredBody) as fc.Arbitrary<{ name: string, pairs: Pairs }>
    add(4, fc.tuple(parts, badBody).map(([p, bad]) => build(route, `bad body ${bad.name}`, { ...p, body: bad.pairs }, refused(`invalid ${bad.name}`))))
    add(2, fc.tuple(parts, fc.constantFrom(...UNKNOWN_FIELDS.filter((n) => !names(route.body).includes(n))), fc.constantFrom('1', '"x"', 'null', '{}', `"${KEY}"`))
      .map(([p, name, value]) => build(route, `unknown body field ${name}`, { ...p, body: [...p.body, [name, value]] }, refused(`unknown field ${name}`))))
    for (const name of route.requiredBody ?? []) {
      add(1, parts.map((p) => build(route, `missing body ${name}`, { ...p, body: p.body.filter(([k]) => k !== name) }, refused(`${name} is required`))))
    }
    for (const field of route.idFields ?? []) {
      const isList = field !== 'id'
      const idsArb = fc.array(fc.oneof(inexactId, fc.constantFrom(U)), { minLength: 1, maxLength: isList ? 3 : 1 })
      add(3, fc.tuple(parts, idsArb).map(([p, ids]) => build(route, `${field} as JSON number`,
        { ...p, body: withValue(p.body, field, isList ? `[${ids.join(',')}]` : ids[0] as string) }, { exactIds: ids })))
    }
    add(1, fc.tuple(parts, fc.constantFrom('null', '[]', '"x"', '1', 'true', '[{}]')).map(([p, body]) =>
      build(route, 'body not an object', p, refused('the body must be an object'), { body })))
    add(2, fc.tuple(parts, fc.constantFrom(...MALFORMED_JSON, '')).map(([p, body]) =>
      build(route, body === '' ? 'empty JSON body' : 'malformed JSON', p, { statuses: { why: 'unparseable JSON', codes: [400] } }, { body })))
    const firstField = names(route.body)[0] as string
    add(2, fc.tuple(parts, nestingDepth, fc.constantFrom<'array' | 'object'>('array', 'object')).map(([p, depth, kind]) =>
      build(route, `nesting bomb (${kind})`, { ...p, body: withValue(p.body, firstField, nested(depth, kind)) }, refused(`${firstField} nested ${depth} deep`))))
    add(2, fc.tuple(parts, fc.constantFrom<string | null>(...WRONG_TYPES, null)).map(([p, type]) =>
      build(route, `content-type ${type ?? 'missing'}`, p, { statuses: { why: 'v1 takes JSON only', codes: [415] } }, { contentType: type })))
    add(1, parts.map((p) => build(route, 'content-type APPLICATION/JSON; charset=UTF-8', p, {}, { contentType: 'APPLICATION/JSON; charset=UTF-8' })))
    add(0.25, parts.map((p) => ({
      ...build(route, 'oversized body', p, { statuses: { why: 'body above the limit', codes: [413] } }, { body: '' }),
      body: undefined,
      bodyRepeat: { prefix: '{"ids":[', chunk: `"${U}",`, times: OVERSIZED_IDS, suffix: `"${U}"]}` }
    })))
  }

  const wrong = OTHER_METHODS.filter((m) => !route.allowed.includes(m))
  if (wrong.length > 0) {
    add(2, fc.tuple(parts, fc.constantFrom(...wrong)).map(([p, method]) =>
      build(route, `method ${method}`, p, { statuses: { why: `${route.template} answers ${route.allowed.join(', ')}`, codes: [405] } }, { method })))
  }
  add(1, fc.tuple(parts, fc.constantFrom(...BAD_ACCEPT)).map(([p, accept]) =>
    build(route, `Accept ${accept}`, p, { statuses: { why: 'no acceptable representation', codes: [406] } }, { accept })))
  return out
}

/** Every v1 route's families, weighted so that each route gets a similar share. */
export function v1Arbitrary (): fc.Arbitrary<FuzzRequest> {
  const all = V1_ROUTES.flatMap((route) => {
    const families = routeFamilies(route)
    const total = families.reduce((s, f) => s + f.weight, 0)
    return families.map((f) => ({ weight: Math.max(1, Math.round((f.weight / total) * 100)), arbitrary: f.arbitrary }))
  })
  return fc.oneof(...all)
}
