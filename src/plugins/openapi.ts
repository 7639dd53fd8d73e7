// OpenAPI 3.1 document at /openapi.json and a browsable page at /docs, generated from the route schemas.
// What every operation shares is added here, centrally, in the swagger transform, so that route files
// declare only their own schemas: an operationId from method and path, problem responses as
// application/problem+json with the shared Problem schema, the problems the v1 input rules answer on
// every route (406; 413 and 415 where a body is read), the response headers (RateLimit,
// RateLimit-Policy, Retry-After; X-Cache, Age, ETag on the reads whose `cached` config says so;
// Idempotent-Replayed and Write-Read-Back on the writes whose config says so), extra media types a
// route produces (NDJSON; an event stream's instead of JSON), and `security: []` on public routes.
// The compat path and the operational routes (/, /status, health, metrics, this document) are
// described under tags of their own. Every route the app has is in the
// document except the docs page's own files and the compat path's 405 and trailing-slash redirects;
// test/pages/openapi-lint.test.ts lints the live document (0 errors, 0 warnings).
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { RouteOptions } from 'fastify'
import { SERIALIZERS } from '../upstream/serializers.js'
import { DETAILS, GET_STUB, WRITE_ENDPOINTS, WRITE_INFO, type UpstreamEndpoint } from '../upstream/endpoints.js'
import type { FieldKind } from '../drf/fields.js'

export const DOCS_PREFIX = '/docs'
// The docs page's policy: Swagger UI's scripts and style sheets are files of its own (no inline script;
// it styles elements through the DOM, which style-src does not govern), its icons are data: URLs, and
// "Try it out" calls this gateway. Its one inline <style>, the colours of the logo in its top bar
// (`.logo_small_svg__cls-2{fill:#fff}…`), is allowed by its hash; a Swagger UI that changes it fails
// the browser test (test/browser/pages.test.ts: no CSP violation on /docs) until the hash is updated.
const SWAGGER_LOGO_STYLE = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"
export const DOCS_POLICY = `default-src 'none'; script-src 'self'; style-src 'self' ${SWAGGER_LOGO_STYLE}; img-src 'self' data:; ` +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
// Not imported from routes/compat (plugins import no route module); checked by the lint test.
export const COMPAT_DOC_PREFIX = '/atlas/api'

const TAGS = [
  { name: 'objects', description: 'Object records, light curves, cone searches and crossmatches (scope `read`).' },
  { name: 'lists', description: 'Detection lists and custom lists, filtered by the gateway (scope `read`).' },
  { name: 'custom lists', description: 'Custom list membership: reads (`read`) and writes (`write:custom-lists` and the list).' },
  { name: 'vra', description: 'Virtual Research Assistant scores, to-do queue and ranks.' },
  { name: 'consumers', description: 'The calling consumer: identity, limits and usage.' },
  { name: 'events', description: 'Server-sent events of list members and VRA rows, polled once for every subscriber (scope `read`).' },
  { name: 'admin', description: 'For the people who review data access: the audit of upstream writes, usage per consumer per day, the consumers (scope `admin`).' },
  {
    name: 'compat',
    description: 'The upstream\'s own dialect at `/atlas/api/<endpoint>/`: scripts built on the official ATLAS client work by ' +
      'changing only their base URL and token (`Authorization: Token <consumer key>`). Bodies are form-encoded (or JSON), ' +
      'answers and errors are the upstream\'s (`{"detail": …}`, DRF field errors), ids are bare JSON integers.'
  },
  { name: 'operations', description: 'For people and operators: the landing page, the status page, health probes, Prometheus metrics and this document.' }
]

// Descriptions of routes registered without a schema of their own (plugins/health.ts, metrics.ts, this file).
const OPERATIONS: Record<string, { summary: string, description?: string, type: string, security?: boolean }> = {
  '/healthz': { summary: 'Liveness, with each dependency as the background check last saw it', type: 'application/json' },
  '/readyz': { summary: 'Readiness: 200 while this replica takes traffic, 503 while starting or draining', type: 'application/json' },
  '/metrics': { summary: 'Prometheus metrics', description: 'Needs `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.', type: 'text/plain', security: true },
  '/openapi.json': { summary: 'This OpenAPI document', type: 'application/json' }
}

const h = (description: string, schema: Record<string, unknown> = { type: 'string' }): Record<string, unknown> => ({ ...schema, description })
const RATE_HEADERS = {
  'RateLimit-Policy': h('the key\'s request rate policy (IETF draft), e.g. `"requests";q=600;w=60`'),
  RateLimit: h('requests left in the current window and seconds until it resets, e.g. `"requests";r=599;t=60`'),
  'X-Request-Id': h('the request id (yours when you sent a safe one)')
}
// What a read served from the cache says of it (routes/v1/send.ts cacheHeaders).
const CACHE_STATE_HEADERS = {
  'X-Cache': h('HIT, MISS, STALE or BYPASS: how the cache served the read'),
  'X-Cache-Reason': h('on a STALE answer that is not being refreshed: budget-low or upstream-error'),
  Age: h('seconds since the data was fetched from the upstream', { type: 'integer', minimum: 0 })
}
// And a read answered with sendDerived: a validator, and how long the answer may be reused.
const VALIDATED_HEADERS = {
  ...CACHE_STATE_HEADERS,
  ETag: h('strong validator of this representation; send it back in If-None-Match for a 304'),
  'Cache-Control': h('how long the answer may be reused')
}
const CACHE_HEADERS: Record<string, Schema> = { validated: VALIDATED_HEADERS, reported: CACHE_STATE_HEADERS }
const RETRY_AFTER = { 'Retry-After': h('seconds to wait before retrying', { type: 'integer', minimum: 0 }) }
const RETRY_STATUSES = new Set(['409', '429', '503'])
// Writes (routes/v1/writes.ts): a replay under an Idempotency-Key, and an outcome read back.
const REPLAYED = { 'Idempotent-Replayed': h('`true` on the answer kept for an earlier request with this Idempotency-Key (sent again, nothing sent upstream)') }
const READ_BACK = { 'Write-Read-Back': h('`applied` when the write\'s reply was lost and a read-back showed the write in effect') }
// What a write that holds its Idempotency-Key answers and keeps (service/idempotency.ts isFinalOutcome):
// refusals before the key is claimed (401, 403, 406, 413, 415, 422, 429) and transient failures are not kept.
const isReplayable = (status: string): boolean => status.startsWith('2') || status === '400' || status === '404' || status === '504'
const MEDIA_NOTES: Record<string, string> = {
  'application/x-ndjson': 'NDJSON: one JSON document per line, streamed',
  'text/event-stream': 'Server-sent events'
}

const capital = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)
const words = (s: string): string => s.split(/[^a-zA-Z0-9]+/).filter((w) => w !== '').map(capital).join('')

/** `getObjectsByIdLightcurve` for GET /v1/objects/:id/lightcurve; `compatPostObjects` for the compat path. */
export function operationIdOf (method: string, url: string): string {
  const isCompat = url.startsWith(COMPAT_DOC_PREFIX + '/')
  const path = isCompat ? url.slice(COMPAT_DOC_PREFIX.length) : url.replace(/^\/v1(?=\/)/, '')
  const parts = path.split('/').filter((s) => s !== '').map((s) => s.startsWith(':') ? 'By' + words(s.slice(1)) : words(s))
  const name = method.toLowerCase() + (parts.length === 0 ? 'Root' : parts.join(''))
  return isCompat ? 'compat' + capital(name) : name
}

type Schema = Record<string, unknown>

const isProblemRef = (s: unknown): boolean => s !== null && typeof s === 'object' && (s as Schema).$ref === 'Problem'

function problemResponse (status: string, headers: Schema, description: unknown): Schema {
  return {
    description: typeof description === 'string' ? description : PROBLEM_TEXT[status] ?? 'a problem (RFC 9457)',
    headers,
    content: { 'application/problem+json': { schema: { $ref: 'Problem' } } }
  }
}
const PROBLEM_TEXT: Record<string, string> = {
  400: 'invalid input; `errors` names each field',
  401: 'no key, or an unknown, revoked or disabled key',
  403: 'the key lacks the scope or the list',
  404: 'not found',
  406: 'the Accept header allows none of the media types this route answers with',
  409: 'a request with the same Idempotency-Key is still running',
  // A route's own limits (GET /v1/objects: 100 ids in a URL) are 400s, not 413s.
  413: 'more ids than the key\'s max_batch allows',
  415: 'a body whose Content-Type is not application/json, or with a Content-Encoding (other than identity) or a charset other than utf-8',
  422: 'the Idempotency-Key was used for another request',
  429: 'a limit of the key (request rate, daily object units, upstream share) or the upstream budget is spent',
  502: 'the upstream failed or answered something unreadable',
  503: 'the upstream or a dependency is unavailable, or this replica is shutting down',
  504: 'the upstream did not answer in time'
}

/** Problems as problem+json; v1: headers documented, extra media types on the 200. */
function withProblems (route: RouteOptions, responses: Schema): Schema {
  const isV1 = route.url.startsWith('/v1/')
  const config = (route.config ?? {}) as { cached?: string, produces?: readonly string[], producesJson?: boolean, idempotent?: boolean, readBack?: number }
  const { produces = [], producesJson = true } = config
  // Only the reads that say so send cache headers (every other v1 answer is Cache-Control: no-store).
  const cacheHeaders = (isV1 && config.cached !== undefined ? CACHE_HEADERS[config.cached] : undefined) ?? {}
  /** The headers an answer with `status` may carry besides the rate headers and the cache's. */
  const extra = (status: string): Schema => ({
    ...(RETRY_STATUSES.has(status) ? RETRY_AFTER : {}),
    ...(config.idempotent === true && isReplayable(status) ? REPLAYED : {}),
    ...(String(config.readBack) === status ? READ_BACK : {})
  })
  const out: Schema = {}
  for (const [status, schema] of Object.entries(responses)) {
    const retry = extra(status)
    if (isProblemRef(schema)) {
      out[status] = problemResponse(status, { ...(isV1 ? RATE_HEADERS : {}), ...retry }, (schema as Schema).description)
      continue
    }
    const s = schema as Schema
    if (!isV1) {
      out[status] = s
      continue
    }
    const headers = { ...RATE_HEADERS, ...(status === '200' || status === '304' ? cacheHeaders : {}), ...retry }
    if (status === '304') {
      out[status] = { description: 'not modified (If-None-Match matched the ETag)', type: 'null', headers }
      continue
    }
    if (status.startsWith('2') && s.content === undefined && produces.length > 0) {
      const content: Schema = producesJson ? { 'application/json': { schema: s } } : {}
      for (const type of produces) content[type] = { schema: { type: 'string', description: MEDIA_NOTES[type] ?? type } }
      out[status] = { description: (s.description as string | undefined) ?? 'OK', headers, content }
      continue
    }
    out[status] = { ...s, headers: { ...headers, ...(s.headers as Schema | undefined) } }
  }
  return out
}

const FIELD_TYPES: Record<FieldKind, Schema> = {
  char: { type: 'string' },
  int: { type: 'integer' },
  float: { type: 'number' },
  bool: { type: 'boolean' },
  choice: { type: 'string' },
  datetime: { type: 'string', description: 'a date or datetime, as the upstream reads it' }
}

/** A compat GET or POST on /atlas/api/<endpoint>/: the upstream's fields, form-encoded, and what it answers. */
function compatSchema (route: RouteOptions): Schema {
  const endpoint = route.url.slice(COMPAT_DOC_PREFIX.length).replace(/^\/|\/$/g, '') as UpstreamEndpoint
  const config = (route.config ?? {}) as { public?: boolean, units?: unknown }
  const method = String(route.method)
  const isPublic = config.public === true
  const isWrite = WRITE_ENDPOINTS.has(endpoint) && endpoint !== 'auth-token'
  const detail = { description: 'the upstream dialect\'s error: `{"detail": …}` or DRF field errors', type: 'object', additionalProperties: true }
  const answer = { description: 'the upstream\'s answer, as the upstream would send it', type: 'object', additionalProperties: true }
  const response: Schema = {
    200: answer,
    400: detail,
    // Negotiated before anything else, as upstream (routes/compat/index.ts).
    404: { ...detail, description: `a \`format\` the endpoint does not render (\`{"detail": "${DETAILS.notFound}"}\`)` },
    406: { ...detail, description: 'an Accept header the endpoint cannot satisfy' },
    503: { ...detail, description: 'the upstream or a dependency is unavailable, or this replica is shutting down', headers: RETRY_AFTER }
  }
  // The login endpoint is the one that takes no key.
  if (!isPublic) {
    Object.assign(response, {
      401: { ...detail, description: 'no key, or a key the gateway does not know' },
      403: { ...detail, description: 'the key lacks the scope (or the custom list), or the upstream refused the write' },
      429: { ...detail, description: 'throttled: a limit of the key or the upstream budget', headers: RETRY_AFTER }
    })
  }
  const base = { tags: ['compat'], security: isPublic ? [] : [{ compatToken: [] }], response }
  // A GET on a write endpoint reads nothing and writes nothing (the upstream's GET on objectdetectionlist/ writes).
  if (method === 'GET' && isWrite) {
    response[200] = {
      description: 'the upstream\'s stub, whatever the query: nothing is written',
      type: 'object',
      properties: { Error: { type: 'string', const: GET_STUB.Error } },
      required: ['Error']
    }
    return { ...base, summary: `${endpoint}/ with GET: not implemented (the upstream's stub)` }
  }
  if (!isPublic) {
    Object.assign(response, {
      502: { ...detail, description: 'the upstream failed or answered something unreadable' },
      504: { ...detail, description: 'the upstream did not answer in time' }
    })
  }
  if (config.units !== undefined) response[413] = { ...detail, description: 'more ids than the key\'s max_batch allows' }
  if (isWrite) response[201] = { ...answer, description: `the write's reply as the upstream sends it, e.g. \`{"objectid": …, "info": "${WRITE_INFO.created}"}\` (also \`${WRITE_INFO.unknownObject}\`)` }
  if (endpoint === 'objectgroupsdelete') response[204] = { description: 'removed: no body, as upstream', type: 'null' }
  const specs = SERIALIZERS[endpoint] ?? []
  const properties = Object.fromEntries(specs.map((f) => [f.name, { ...FIELD_TYPES[f.kind], ...(f.kind === 'choice' && f.choices !== undefined ? { enum: [...f.choices] } : {}) }]))
  const required = specs.filter((f) => f.required === true).map((f) => f.name)
  const fields = { type: 'object', properties, ...(required.length > 0 ? { required } : {}) }
  return {
    ...base,
    summary: `${endpoint}/ in the upstream's dialect (${method})`,
    ...(method === 'POST'
      ? { body: fields, consumes: ['application/x-www-form-urlencoded', 'multipart/form-data', 'application/json'] }
      : { querystring: fields })
  }
}

function operationSchema (route: RouteOptions): Schema | undefined {
  const op = OPERATIONS[route.url]
  if (op === undefined) return undefined
  const response = (route.schema as Schema | undefined)?.response as Schema | undefined
  const ok = response?.['200'] ?? response?.[200]
  return {
    summary: op.summary,
    ...(op.description === undefined ? {} : { description: op.description }),
    tags: ['operations'],
    security: op.security === true ? [{ metricsToken: [] }] : [],
    produces: [op.type],
    response: {
      ...(response ?? {}),
      200: ok ?? { description: 'OK', type: op.type === 'application/json' ? 'object' : 'string' },
      // Any route: a request the gateway cannot read (no Host header, a malformed URL) is a 400 problem.
      400: { $ref: 'Problem' },
      ...(op.security === true ? { 401: { $ref: 'Problem' } } : {})
    }
  }
}

const PROBLEM = { $ref: 'Problem' }
const BODYLESS_METHODS = new Set(['GET', 'HEAD'])
const BODY_TOO_LARGE = 'a body larger than the route accepts'

/**
 * What the v1 context's input rules (routes/v1/input.ts) answer on any v1 route, whatever its own
 * schema declares: 406 to an Accept that allows none of the route's media types; 413 and 415 to a body.
 */
function inputProblems (route: RouteOptions, declared: Schema): Schema {
  if (!route.url.startsWith('/v1/')) return {}
  const out: Schema = { 406: PROBLEM }
  // Fastify reads a body sent with any method but GET and HEAD, whether or not the route takes one:
  // only JSON (else 415), within the route's body limit (else 413).
  if (!BODYLESS_METHODS.has(String(route.method))) {
    const isBatch = declared[413] !== undefined
    out[413] = { ...PROBLEM, description: isBatch ? `${PROBLEM_TEXT[413] as string}, or ${BODY_TOO_LARGE}` : BODY_TOO_LARGE }
    out[415] = PROBLEM
  }
  return out
}

/** The transform: hides what is not an API operation and completes what is. */
export function transformRoute ({ schema, url, route }: { schema: unknown, url: string, route: RouteOptions }): { schema: Schema, url: string } {
  const s = { ...((schema ?? {}) as Schema) }
  const method = String(route.method)
  const hidden = { schema: { ...s, hide: true }, url }
  if (url.startsWith(DOCS_PREFIX)) return hidden
  const config = (route.config ?? {}) as { public?: boolean, scope?: string }
  if (url.startsWith(COMPAT_DOC_PREFIX + '/')) {
    // The real endpoints only: the 405 answers and APPEND_SLASH redirects are the upstream's quirks.
    const isEndpoint = url.endsWith('/') && (method === 'POST' || (method === 'GET' && config.scope !== undefined))
    if (!isEndpoint) return hidden
    return { schema: { ...compatSchema(route), operationId: operationIdOf(method, url) }, url }
  }
  delete s.hide
  const completed: Schema = { ...s, ...(operationSchema(route) ?? {}) }
  if (completed.operationId === undefined) completed.operationId = operationIdOf(method, url)
  if (config.public === true && completed.security === undefined) completed.security = []
  if (completed.response !== undefined) completed.response = withProblems(route, { ...(completed.response as Schema), ...inputProblems(route, completed.response as Schema) })
  return { schema: completed, url }
}

export const openapiPlugin = fp(async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'atlas-gateway',
        version: '1',
        description: 'A stable facade over the ATLAS Transient Server API. Every ATLAS id (19 digits, above 2^53) ' +
          'is a JSON string in v1, and so is any other integer beyond 2^53. Errors are RFC 9457 problem+json ' +
          'documents with a stable `code`.',
        license: { name: 'MIT', url: 'https://opensource.org/licenses/MIT' }
      },
      servers: [{ url: '/', description: 'this gateway' }],
      tags: TAGS,
      // Every v1 route needs a consumer key; public routes say `security: []`.
      security: [{ bearer: [] }, { apiKey: [] }],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'the consumer key (40 hex)' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
          compatToken: { type: 'apiKey', in: 'header', name: 'Authorization', description: '`Token <consumer key>`, as the upstream\'s own clients send their token' },
          metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN (operators), when set' }
        }
      }
    },
    // Shared schemas keep their $id as their name (components/schemas/Problem), not def-N.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}` },
    transform: transformRoute as never
  })
  // The docs page's routes are registered by @fastify/swagger-ui, which takes no route config: they are
  // marked public in a context of their own.
  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => { (route.config ??= {}).public = true })
    // swagger-ui redirects /static/index.html to the page, but not with a query (it would redirect to
    // itself, without end): every form of it goes to the page here, query kept.
    docs.addHook('onRequest', (request, reply, done) => {
      const [path, query] = request.url.split('?', 2) as [string, string | undefined]
      if (path !== `${DOCS_PREFIX}/static/index.html`) return done()
      reply.redirect(`${DOCS_PREFIX}/${query === undefined ? '' : `?${query}`}`)
    })
    // People type their keys into this page ("Authorize"): no other site may frame it, and it runs no
    // script, style or request but Swagger UI's own files and this gateway's API.
    docs.addHook('onSend', (_request, reply, payload, done) => {
      reply.header('content-security-policy', DOCS_POLICY)
      done(null, payload)
    })
    await docs.register(swaggerUi, { routePrefix: DOCS_PREFIX })
  })
  app.get('/openapi.json', { config: { public: true } }, async () => app.swagger())
}, { name: 'openapi', fastify: '5.x' })
