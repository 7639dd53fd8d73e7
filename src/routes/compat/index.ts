// The upstream's own dialect at /atlas/api/<endpoint>/, so scripts built on the official Python client
// work by changing only base URL and token. Every request runs through the same consumer auth, limits,
// cache, batching and upstream budget as v1; answers are upstream-shaped (ids as bare integers). Only
// the endpoints below exist: paths are never forwarded, so nothing a client sends can reach another URL.
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { sendCompatError } from '../../auth/plugin.js'
import type { Scope } from '../../consumers/scopes.js'
import { MAX_FORM_BYTES, parseQueryDict, parseRequestData } from '../../drf/body.js'
import { requestCharset } from '../../drf/charset.js'
import { ApiException, DjangoHtmlError } from '../../drf/errors.js'
import { validate, type DataSource } from '../../drf/fields.js'
import { negotiate } from '../../drf/negotiation.js'
import { PyFloat, pyStr } from '../../drf/pystr.js'
import { DEFAULT_PATHS, DETAILS, GET_STUB, LOGIN_FAILED, WRITE_ENDPOINTS, authTokenReply, type UpstreamEndpoint } from '../../upstream/endpoints.js'
import { SERIALIZERS } from '../../upstream/serializers.js'
import { allowOf, optionsMetadata, parsersOf, renderersOf, varyHeaderOf } from '../../upstream/metadata.js'
import * as reads from './reads.js'
import { write, type WriteEndpoint } from './writes.js'
import { originForm, routeOf, targetPath } from '../../lib/route.js'
import { expiredMessage } from '../../consumers/expiry.js'
import { RateLimitedError, withRetryAfter } from '../../errors.js'
import { ANONYMOUS_CONSUMER } from '../../plugins/metrics.js'

export const COMPAT_PREFIX = '/atlas/api'
const JSON_TYPE = 'application/json'
const GET_STUB_BODY = JSON.stringify(GET_STUB)
// The upstream reads a form up to Django's limit (the official client's 50,000 ids, commas encoded as
// %2C, are 1.1 MB, over the gateway's default); past it Django refuses the form, as the gateway does
// any body (the upstream would read a JSON one that big, but no meaningful request is).
const BODY_LIMIT_BYTES = MAX_FORM_BYTES
// The gateway manages the upstream token; a consumer key does not expire on its own (a year, in seconds).
const KEY_EXPIRES_IN_S = 31_536_000

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The compat request's Content-Type (set aside from Fastify), then its data (query for GET, body
     * for POST) or the DRF error parsing it gave.
     */
    compat: { contentType?: string, data?: DataSource, error?: ApiException | DjangoHtmlError } | null
  }
  interface FastifyContextConfig {
    /** The upstream view a compat route stands for: its parsers, renderers and headers follow from it. */
    endpoint?: UpstreamEndpoint
  }
}

interface Parsed { values: reads.Values, original: Record<string, string> }

const ENDPOINTS = Object.keys(DEFAULT_PATHS) as UpstreamEndpoint[]

const WRITE_SCOPES: Readonly<Record<WriteEndpoint, Scope>> = {
  vrascores: 'write:vra',
  vratodo: 'write:vra',
  vrarank: 'write:vra',
  objectgroups: 'write:custom-lists',
  objectgroupsdelete: 'write:custom-lists',
  objectdetectionlist: 'write:detection-list'
}

// A path that is no endpoint answers with the headers of the API views (all but auth-token/ share them).
const API_VIEW: UpstreamEndpoint = 'cone'

function send (reply: FastifyReply, status: number, body: string): FastifyReply {
  return sendAs(reply, routeOf(reply.request).config.endpoint ?? API_VIEW, status, body)
}

function sendAs (reply: FastifyReply, endpoint: UpstreamEndpoint, status: number, body: string): FastifyReply {
  reply.header('vary', varyHeaderOf(endpoint)).header('allow', allowOf(endpoint)).code(status)
  // A 204 has no body, so no type (as upstream).
  if (status === 204) return reply.send()
  // A Buffer keeps Fastify from adding a charset: the upstream's type is plain application/json.
  return reply.type(JSON_TYPE).send(Buffer.from(body))
}

const detail = (text: string) => JSON.stringify({ detail: text })
// What the gateway answers where Django refuses a request with its 400 page (too big, too many fields).
const BAD_REQUEST = detail('Bad request.')
// Django's 404 page for a path that is no endpoint, as JSON (README).
const NOT_FOUND = detail(DETAILS.notFound)

/** The raw query string: everything after the first `?` (a later `?` belongs to a value, as in Django). */
function queryOf (url: string): string | undefined {
  const q = url.indexOf('?')
  return q === -1 ? undefined : url.slice(q + 1)
}

/** The values a request's data validates to, with the original strings (datetimes are re-sent as given). */
function parse (endpoint: UpstreamEndpoint, data: DataSource): Parsed | { errors: Record<string, string[]> } {
  const result = validate(SERIALIZERS[endpoint], data)
  if (!result.ok) return { errors: result.errors }
  const original: Record<string, string> = {}
  for (const spec of SERIALIZERS[endpoint]) {
    const raw = data.kind === 'json'
      ? (data.value as Record<string, unknown>)[spec.name]
      : data.map.get(spec.name)?.at(-1)
    if (typeof raw === 'string' || typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean' || raw instanceof PyFloat) original[spec.name] = pyStr(raw)
  }
  return { values: result.values, original }
}

function parsedOf (request: FastifyRequest, endpoint: UpstreamEndpoint): Parsed | undefined {
  const data = request.compat?.data
  if (data === undefined) return undefined
  const p = parse(endpoint, data)
  return 'values' in p ? p : undefined
}

async function answer (app: FastifyInstance, request: FastifyRequest, endpoint: UpstreamEndpoint, p: Parsed): Promise<reads.CompatReply> {
  const { values: v, original } = p
  switch (endpoint) {
    case 'cone': return reads.cone(app, request, v)
    case 'objects': return reads.objects(app, request, v)
    case 'objectlist': return reads.objectlist(app, request, v, original)
    case 'vrascoreslist':
    case 'vratodolist':
    case 'vraranklist': return reads.vraList(app, request, endpoint, v, original)
    case 'objectgroupslist': return reads.objectgroupslist(app, request, v)
    case 'externalxmlist': return reads.externalxmlist(app, request, v)
    case 'auth-token': {
      // Answers with the caller's own key when the credentials are a consumer id and its key.
      const password = String(v.password)
      const consumer = app.consumers.authenticate(password)
      if (consumer === undefined || consumer.id !== String(v.username)) {
        return { status: 400, body: JSON.stringify({ non_field_errors: [LOGIN_FAILED] }) }
      }
      // A key with an expiry: refused once it has passed (as every request with it is), and its
      // expires_in runs to it rather than a year.
      const leftS = consumer.expiresAt === undefined ? KEY_EXPIRES_IN_S : (consumer.expiresAt - app.auth.now()) / 1000
      if (leftS <= 0) return { status: 400, body: JSON.stringify({ non_field_errors: [expiredMessage(consumer.expires as string)] }) }
      return { status: 200, body: authTokenReply(password, Math.min(KEY_EXPIRES_IN_S, leftS)) }
    }
    default: return write(app, request, endpoint as WriteEndpoint, v, original)
  }
}

function handlerFor (app: FastifyInstance, endpoint: UpstreamEndpoint, method: 'GET' | 'POST') {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const isWrite = WRITE_ENDPOINTS.has(endpoint) && endpoint !== 'auth-token'
    // GET on a write endpoint never writes (the upstream's GET on objectdetectionlist/ does).
    if (method === 'GET' && isWrite) return send(reply, 200, GET_STUB_BODY)
    const state = request.compat
    if (state?.error !== undefined) throw state.error
    const data = state?.data as DataSource
    const p = parse(endpoint, data)
    if ('errors' in p) return send(reply, 400, JSON.stringify(p.errors))
    const r = await answer(app, request, endpoint, p)
    return send(reply, r.status, r.body)
  }
}

/** Object units (one per requested id that can exist) and the custom list a membership write targets. */
function unitsOf (request: FastifyRequest): number {
  const p = parsedOf(request, 'objects')
  return p === undefined ? 0 : reads.objectUnits(p.values)
}

function listOf (endpoint: UpstreamEndpoint) {
  return (request: FastifyRequest): string | undefined => {
    const p = parsedOf(request, endpoint)
    if (p === undefined) return undefined
    // Custom lists have small ids; a larger one names no list (and Number() would round it).
    const groupId = p.values.objectgroupid as bigint
    const name = groupId <= BigInt(Number.MAX_SAFE_INTEGER) && groupId >= 0n ? request.server.lists.customName(Number(groupId)) : undefined
    return name ?? `group-${groupId}`
  }
}

/** Django's HttpResponsePermanentRedirect to the request's path with the slash: its default type, no body. */
async function redirectToSlash (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  // An absolute-form target (`http://host/atlas/api/cone?…`) redirects by its path, as Django's does,
  // never to the host it names.
  const target = originForm(request.url)
  const query = queryOf(target)
  const path = query === undefined ? target : target.slice(0, -query.length - 1)
  return reply.code(301).type('text/html; charset=utf-8').header('location', `${path}/${query === undefined ? '' : `?${query}`}`).send('')
}

/**
 * A target under /atlas/api that Fastify cannot route (a path that does not decode: a malformed %-escape,
 * bytes that are not UTF-8): Django matches no endpoint either, so it is the upstream's 404, the answer
 * of any path that is no endpoint. Nothing of the URL is repeated (it may hold `?token=<key>`). Returns
 * false for a target outside the compatibility path.
 */
export function answerUnroutable (request: FastifyRequest, reply: FastifyReply): boolean {
  const path = targetPath(request.url)
  if (path !== COMPAT_PREFIX && !path.startsWith(`${COMPAT_PREFIX}/`)) return false
  sendAs(reply, API_VIEW, 404, NOT_FOUND)
  return true
}

/**
 * auth-token/ takes no key, so its POSTs are counted by client address (AUTH_TOKEN_RATE), in onRequest:
 * a refused request's body (up to 2.5 MiB of form) is never read or parsed. The upstream too throttles
 * anonymous callers before its view reads the data, and after content negotiation (a 406 first).
 */
function limitLogins (app: FastifyInstance): onRequestHookHandler {
  return async (request, reply) => {
    let charge
    try {
      charge = await app.quota.chargeLogin(request.ip)
    } catch (err) {
      return sendCompatError(reply, err as FastifyError)
    }
    if (charge === undefined || charge.isAllowed) return undefined
    app.metrics.limitRejections.inc({ consumer: ANONYMOUS_CONSUMER, kind: 'auth_token' })
    return sendCompatError(reply, withRetryAfter(new RateLimitedError(
      `This address may make ${app.config.AUTH_TOKEN_RATE} auth-token/ requests; retry after ${charge.resetSeconds} s.`
    ), charge.resetSeconds))
  }
}

export const compatRoutes: FastifyPluginAsync = async (app) => {
  app.decorateRequest('compat', null)
  // Bodies are read raw and parsed the way DRF does (form, multipart, JSON with exact big integers).
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })

  app.setErrorHandler((err: FastifyError & { retryAfter?: number }, request, reply) => {
    if (err instanceof ApiException) return send(reply, err.status, detail(err.detail))
    // A body over the limit is a form Django would refuse as too big (RequestDataTooBig).
    if (err instanceof DjangoHtmlError || err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return send(reply, 400, BAD_REQUEST)
    if (err.code === 'GW_UPSTREAM_BUDGET' || err.code === 'GW_QUOTA_EXHAUSTED' || err.code === 'GW_RATE_LIMITED') {
      return sendCompatError(reply, Object.assign(err, { code: 'GW_RATE_LIMITED' }))
    }
    const status = err.statusCode ?? 500
    // An upstream outage, a circuit open or a login backing off: say when to come back, as v1 does.
    if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter))
    if (status >= 500) request.log.error({ err }, 'compat request failed')
    const text = status >= 500 && err.code?.startsWith('GW_') !== true ? DETAILS.serverError : err.message
    return send(reply, status, detail(text))
  })
  app.setNotFoundHandler((_request, reply) => sendAs(reply, API_VIEW, 404, NOT_FOUND))

  // DRF, not Fastify, judges the Content-Type: Fastify refuses one it cannot read as a media type with
  // its own 415, even when there is no body (which DRF never parses). Set aside, the header reaches
  // parseRequestData alone, and Fastify reads any body raw through the catch-all parser.
  app.addHook('preParsing', (request, _reply, payload, done) => {
    request.compat = { contentType: request.headers['content-type'] }
    delete request.headers['content-type']
    done(null, payload)
  })

  app.addHook('preValidation', async (request) => {
    if (routeOf(request).config.dialect !== 'compat') return
    const query = queryOf(request.url) ?? ''
    try {
      request.compat = request.method === 'POST'
        ? { data: await parseRequestData(request.compat?.contentType, (request.body as Buffer | undefined) ?? Buffer.alloc(0), parsersOf(routeOf(request).config.endpoint as UpstreamEndpoint)) }
        : { data: parseQueryDict(Buffer.from(query, 'latin1'), requestCharset(request.compat?.contentType)) }
    } catch (err) {
      if (err instanceof ApiException || err instanceof DjangoHtmlError) request.compat = { error: err }
      else throw err
    }
  })

  for (const endpoint of ENDPOINTS) {
    const url = `/${endpoint}/`
    const isWrite = WRITE_ENDPOINTS.has(endpoint) && endpoint !== 'auth-token'
    const isAnonymous = endpoint === 'auth-token'
    const readScope: Scope | undefined = isAnonymous ? undefined : 'read'
    const postScope: Scope | undefined = isAnonymous ? undefined : isWrite ? WRITE_SCOPES[endpoint as WriteEndpoint] : 'read'
    const list = endpoint === 'objectgroups' || endpoint === 'objectgroupsdelete' ? listOf(endpoint) : undefined
    const units = endpoint === 'objects' ? unitsOf : undefined
    const base = { dialect: 'compat' as const, endpoint, ...(units === undefined ? {} : { units }) }

    if (isAnonymous) {
      app.get(url, { config: { dialect: 'compat', endpoint, public: true }, schema: { hide: true } }, async (_request, reply) => send(reply, 405, detail(DETAILS.methodNotAllowed('GET'))))
    } else {
      app.get(url, { config: { ...base, scope: readScope }, schema: { hide: true } }, handlerFor(app, endpoint, 'GET'))
    }
    app.post(url, {
      config: { ...base, ...(postScope === undefined ? { public: true } : { scope: postScope }), ...(list === undefined ? {} : { list }) },
      ...(isAnonymous ? { onRequest: limitLogins(app) } : {}),
      bodyLimit: BODY_LIMIT_BYTES,
      schema: { hide: true }
    }, handlerFor(app, endpoint, 'POST'))
    // The view's other methods need what its GET needs (auth-token/ nothing), as upstream.
    const readAccess = readScope === undefined ? { public: true } : { scope: readScope }
    const metadata = JSON.stringify(optionsMetadata(endpoint))
    app.options(url, { config: { dialect: 'compat', endpoint, ...readAccess }, schema: { hide: true } }, async (_request, reply) => send(reply, 200, metadata))
    app.route({
      method: ['PUT', 'PATCH', 'DELETE'],
      url,
      config: { dialect: 'compat', endpoint, ...readAccess },
      schema: { hide: true },
      handler: async (request, reply) => send(reply, 405, detail(DETAILS.methodNotAllowed(request.method)))
    })
    // Django's APPEND_SLASH: a 301 with an empty body to the same path with the slash, query kept.
    // Answered in onRequest, so the body is never read (Node discards what the client still sends): the
    // route is public, and a body read first let anyone have the gateway buffer 2.5 MiB per request with
    // no limit, where the slashed route checks the key or AUTH_TOKEN_RATE before the body.
    app.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: `/${endpoint}`,
      // A redirect to the same path with the slash, where the real route checks the key.
      config: { public: true },
      schema: { hide: true },
      onRequest: redirectToSlash,
      // Never reached (onRequest has answered); Fastify needs one.
      handler: redirectToSlash
    })
  }
}

/**
 * Content negotiation runs before authentication upstream (a bad Accept is a 406 even without a token),
 * so it is a root hook registered ahead of consumer auth.
 */
export const compatNegotiationPlugin = fp(async (app) => {
  // A callback hook: every request passes here (v1 ones included), and an async hook costs each of
  // them a promise. A refusal is sent and done is not called.
  app.addHook('onRequest', (request, reply, done) => {
    if (routeOf(request).config.dialect !== 'compat') return done()
    let query: ReturnType<typeof parseQueryDict>
    try {
      // Node takes only ASCII in a request target: its Latin-1 string is the bytes Django decodes.
      query = parseQueryDict(Buffer.from(queryOf(request.url) ?? '', 'latin1'), requestCharset(request.headers['content-type']))
    } catch (err) {
      // A query Django refuses (too many fields) is its 400 before anything else looks at the request; so
      // is one in a charset the gateway cannot read.
      send(reply, 400, err instanceof ApiException ? detail(err.detail) : BAD_REQUEST)
      return
    }
    // QueryDict.get: the last of repeated values.
    const last = query.map.get('format')?.at(-1)
    const format = typeof last === 'string' ? last : undefined
    const result = negotiate(request.headers.accept, format, renderersOf(routeOf(request).config.endpoint as UpstreamEndpoint))
    if (!('error' in result)) return done()
    if (result.error === 'not-found') send(reply, 404, NOT_FOUND)
    else send(reply, 406, detail(DETAILS.notAcceptable))
  })
}, { name: 'compat-negotiation', fastify: '5.x' })
