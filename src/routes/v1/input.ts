// Strict v1 input, set up once for the /v1 context (routes/v1/index.ts):
// - JSON bodies are read losslessly: an id sent as a JSON number arrives as its exact digits or the
//   request fails by name; nothing is rounded (lib/json.ts parseRequestJson). A body with a
//   Content-Encoding or a charset other than UTF-8 is a 415: it is read as sent, as UTF-8, or not at all.
// - Bodies are validated without coercion and without removing anything: an unknown field, a wrong
//   type or a null is a 400 naming the field.
// - Query strings: unknown, repeated or undecodable (%zz) parameters are a 400 naming them; numbers must
//   be written in decimal (no 0x10, Infinity or empty values); then Ajv converts the text to the schema's type.
// - Dates (`format: 'instant'`) are calendar-strict (lib/datetime.ts).
// - A request that accepts none of the answer's media types gets 406 (an event stream's is
//   text/event-stream alone).
// All of this runs before authorisation charges anything and before any cache or upstream work.
import { Ajv, type Options, type ValidateFunction } from 'ajv'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { invalidFields, NotAcceptableError, UnsupportedMediaTypeError, type FieldError } from '../../errors.js'
import { contentTypeParam, pythonCodec } from '../../drf/charset.js'
import { isInstant } from '../../lib/datetime.js'
import { parseRequestJson, RequestJsonError, type BodyPath } from '../../lib/json.js'
import { routeOf } from '../../lib/route.js'

const BASE: Options = { useDefaults: true, removeAdditional: false, allErrors: false, addUsedSchema: false }
// Decimal numbers only: Ajv's own coercion would read "0x10" as 16 and "Infinity" as a number.
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
// An integer parameter in digits (a `.0…` tail allowed): 4.9999999999999999 reads as the double 5 and
// would have passed as 5, though the value sent is not an integer.
const INTEGER = /^[+-]?\d+(\.0*)?$/

function makeAjv (coerceTypes: boolean): Ajv {
  const ajv = new Ajv({ ...BASE, coerceTypes })
  ajv.addFormat('instant', { type: 'string', validate: isInstant })
  return ajv
}

function compiler (ajv: Ajv) {
  return (schema: object): ValidateFunction => {
    const id = (schema as { $id?: unknown }).$id
    const known = typeof id === 'string' ? ajv.getSchema(id) : undefined
    return known ?? ajv.compile(schema)
  }
}

interface QuerySchema { properties?: Record<string, { type?: string }> }

interface BodySchema { type?: string | string[], properties?: Record<string, BodySchema>, items?: BodySchema }

/** Whether the body schema wants an integer at `path` (a place it does not describe: no). */
function isIntegerAt (schema: BodySchema | undefined, path: BodyPath): boolean {
  let at = schema
  for (const key of path) {
    if (at === undefined) return false
    at = typeof key === 'number' ? at.items : at.properties !== undefined && Object.hasOwn(at.properties, key) ? at.properties[key] : undefined
  }
  const type = at?.type
  return type === 'integer' || (Array.isArray(type) && type.includes('integer'))
}

function decodedName (raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    return raw
  }
}

/**
 * Parameters whose name or value does not percent-decode (a lone `%`, `%zz`, bytes that are not UTF-8):
 * Fastify's parser keeps such text as it came, so `names=SN2018cow%zz` would be read as that text.
 */
function undecodableParameters (url: string): FieldError[] {
  const start = url.indexOf('?')
  if (start < 0 || !url.includes('%', start)) return []
  const errors: FieldError[] = []
  for (const pair of url.slice(start + 1).split('&')) {
    if (!pair.includes('%')) continue
    try {
      decodeURIComponent(pair)
    } catch {
      const eq = pair.indexOf('=')
      errors.push({ path: `/querystring/${decodedName(eq < 0 ? pair : pair.slice(0, eq))}`, message: 'is not valid percent-encoded UTF-8' })
    }
  }
  return errors
}

function throwQueryErrors (errors: FieldError[]): void {
  if (errors.length > 0) {
    throw invalidFields(errors.map((e) => `${e.path.slice(1)} ${e.message}`).join('; '), errors)
  }
}

/** Undecodable, unknown, repeated and non-decimal query parameters, named. */
function checkQuery (request: FastifyRequest): void {
  throwQueryErrors(undecodableParameters(request.url))
  const query = request.query as Record<string, string | string[]>
  const names = Object.keys(query)
  if (names.length === 0) return
  const properties = (routeOf(request).schema?.querystring as QuerySchema | undefined)?.properties ?? {}
  const errors: FieldError[] = []
  for (const name of names) {
    const value = query[name]
    const spec = Object.hasOwn(properties, name) ? properties[name] : undefined
    const path = `/querystring/${name}`
    if (spec === undefined) {
      errors.push({ path, message: 'is not a parameter of this route' })
    } else if (Array.isArray(value)) {
      errors.push({ path, message: 'is repeated; send it once' })
    } else if (spec.type === 'integer' && (!INTEGER.test(value as string) || !Number.isSafeInteger(Number(value)))) {
      errors.push({ path, message: 'must be an integer (decimal digits)' })
    } else if (spec.type === 'number' && (!DECIMAL.test(value as string) || !Number.isFinite(Number(value)))) {
      errors.push({ path, message: 'must be a finite decimal number' })
    }
  }
  throwQueryErrors(errors)
}

interface MediaRange { type: string, subtype: string, q: number }

function parseAccept (header: string): MediaRange[] {
  return header.split(',').map((part) => {
    const [range = '', ...params] = part.trim().split(';')
    const [type = '', subtype = ''] = range.trim().toLowerCase().split('/')
    const qParam = params.map((p) => p.trim().toLowerCase()).find((p) => p.startsWith('q='))
    const q = qParam === undefined ? 1 : Number(qParam.slice(2))
    return { type, subtype, q: Number.isFinite(q) ? q : 0 }
  })
}

/**
 * The q an Accept header gives `type` (e.g. 'application/x-ndjson'): that of the most specific range
 * matching it (type/subtype, then type/*, then any), 0 when none does; `isNamed` when the type is named.
 */
export function acceptQuality (header: string | undefined, type: string): { q: number, isNamed: boolean } {
  if (header === undefined || header.trim() === '') return { q: 1, isNamed: false }
  const [main, sub] = type.split('/')
  let best = { q: 0, isNamed: false }
  let specificity = -1
  for (const r of parseAccept(header)) {
    const rank = r.type === main && r.subtype === sub ? 2 : r.type === main && r.subtype === '*' ? 1 : r.type === '*' && r.subtype === '*' ? 0 : -1
    if (rank > specificity) {
      specificity = rank
      best = { q: r.q, isNamed: rank === 2 }
    }
  }
  return best
}

/** Whether an Accept header allows any of `types` (e.g. 'application/json'): its most specific range for it has q > 0. */
export function accepts (header: string | undefined, types: readonly string[]): boolean {
  return types.some((t) => acceptQuality(header, t).q > 0)
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Media types a v1 route answers with besides JSON (e.g. NDJSON). */
    produces?: readonly string[]
    /** False for a route that never answers JSON (an event stream): it answers its `produces` types only. */
    producesJson?: boolean
  }
}

// What a v1 route's answer is written as, besides its `produces` (unless producesJson is false). A problem (application/problem+json)
// is how a refusal is written, not a representation of the resource, so accepting it alone is a 406.
const JSON_TYPE = 'application/json'

/** A Content-Encoding that is not the body as sent ('identity' or none), e.g. 'gzip'; undefined when none is. */
function codingApplied (header: string | undefined): string | undefined {
  return header?.split(',').map((c) => c.trim().toLowerCase()).find((c) => c !== '' && c !== 'identity')
}

// The codecs (Python's names, as the compatibility path resolves a charset) a JSON body is read in as
// UTF-8: UTF-8 under any of its names (utf8, u8…), and ASCII, which UTF-8 reads alike.
const READ_AS_UTF8 = new Set(['utf-8', 'ascii'])

/**
 * Why a JSON body cannot be read as it came, or undefined: v1 decodes no Content-Encoding (a compressed
 * body, or a plain one labelled compressed, would be misread) and reads UTF-8 only (RFC 8259 §8.1).
 */
function unreadableBody (request: FastifyRequest): string | undefined {
  const coding = codingApplied(request.headers['content-encoding'])
  if (coding !== undefined) return `This API reads a body as sent: Content-Encoding ${coding.slice(0, 40)} is not accepted; send it uncompressed.`
  // The Content-Type's parameters as Django reads them (quotes kept together, the last of a repeated name).
  const charset = contentTypeParam(request.headers['content-type'] ?? '', 'charset')
  if (charset !== undefined && !READ_AS_UTF8.has(pythonCodec(charset) ?? '')) return `A JSON body is UTF-8: charset=${charset.slice(0, 40)} is not accepted.`
  return undefined
}

/** Installs the strict input rules on the v1 context. */
export function strictInput (app: FastifyInstance): void {
  const bodyAjv = makeAjv(false)
  const partAjv = makeAjv(true)
  const forBody = compiler(bodyAjv)
  const forParts = compiler(partAjv)
  app.setValidatorCompiler(({ schema, httpPart }) => httpPart === 'body' ? forBody(schema) : forParts(schema))

  // JSON is the only body v1 reads (Fastify would also parse text/plain): anything else is a 415.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const unreadable = unreadableBody(request)
    if (unreadable !== undefined) return done(new UnsupportedMediaTypeError(unreadable), undefined)
    try {
      const schema = routeOf(request).schema?.body as BodySchema | undefined
      done(null, parseRequestJson(body as string, (path) => isIntegerAt(schema, path)))
    } catch (err) {
      if (!(err instanceof RequestJsonError)) return done(invalidFields('The body cannot be read.', [{ path: '/body', message: 'The body cannot be read.' }]), undefined)
      const path = '/body' + err.pointer
      done(invalidFields(err.pointer === '' ? err.message : `${path.slice(1)} ${err.message}`, [{ path, message: err.message }]), undefined)
    }
  })

  // Callback hooks (no promise per request); a request without Accept takes anything.
  app.addHook('onRequest', (request, reply, done) => {
    // Nothing is storable unless it says so (a cached read's own Cache-Control replaces this, send.ts):
    // personal and admin answers, writes and problems. A key may come in X-API-Key, which shared caches
    // do not treat as Authorization (RFC 9111 §3.5), so without it one consumer's answer could be kept
    // by such a cache and given to another.
    reply.header('cache-control', 'no-store')
    if (request.headers.accept === undefined) return done()
    const config = routeOf(request).config
    const types = [...(config.producesJson === false ? [] : [JSON_TYPE]), ...(config.produces ?? [])]
    if (accepts(request.headers.accept, types)) return done()
    done(new NotAcceptableError(`This route answers with ${types.join(' or ')}; the Accept header allows none of them.`))
  })
  app.addHook('preValidation', (request, _reply, done) => {
    try {
      checkQuery(request)
    } catch (err) {
      return done(err as Error)
    }
    done()
  })
}
