// The DRF APIView pipeline (rest_framework/views.py, initial() then the handler): content
// negotiation (406), authentication (401), permissions (401/403), throttling (429), then the method
// handler (405 if none). DRF exceptions render as {"detail": ...}; Django-level errors are HTML pages.
import type { IncomingHttpHeaders } from 'node:http'
import { stringifyUpstream } from '../lib/json.js'
import { AuthFailed, type SandboxUser, type UserStore } from './auth.js'
import { parseRequestData } from '../drf/body.js'
import { ApiException, DjangoHtmlError } from '../drf/errors.js'
import type { DataSource } from '../drf/fields.js'
import { hasFloats, pythonFloats } from './floats.js'
import { browsablePage } from './html.js'
import { negotiate, type Renderer } from '../drf/negotiation.js'
import type { Rate } from './options.js'
import type { Store } from './store.js'
import { throttledDetail, type SlidingWindowThrottle } from './throttle.js'
import type { EndpointDef, ViewContext, ViewResult } from './view.js'
import { AUTH_DETAILS, DETAILS } from '../upstream/endpoints.js'
import { allowOf, optionsMetadata, parsersOf, renderersOf, VIEW_NAMES } from '../upstream/metadata.js'

export interface ApiRequest {
  method: string
  headers: IncomingHttpHeaders
  query: DataSource
  /** The last value of a query parameter, as QueryDict.get. */
  queryParam: (name: string) => string | undefined
  body: Buffer
  remoteAddress: string
}

export interface ApiDeps {
  store: Store
  users: UserStore
  throttle: SlidingWindowThrottle
  rates: () => { user: Rate, staff: Rate, anon: Rate }
  maxObjectsPerCall: () => number
  nowUs: () => number
}

/** A reply for the HTTP layer. `html` marks a Django page (no DRF headers); body '' means none. */
export interface Reply {
  status: number
  headers: Record<string, string>
  body: string
  html?: 'page404' | 'page500' | 'page400'
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * DRF sends Vary: Accept for a view with more than one renderer; Django's SessionMiddleware adds Vary:
 * Cookie once the session is read, which SessionAuthentication (auth-token/ only) does when it runs.
 */
function varyOf (def: EndpointDef, authenticated: boolean): Record<string, string> {
  const vary = [
    ...(renderersOf(def.name).length > 1 ? ['Accept'] : []),
    ...(authenticated && def.access === 'anon' ? ['Cookie'] : [])
  ]
  return vary.length === 0 ? {} : { Vary: vary.join(', ') }
}

function render (def: EndpointDef, renderer: Renderer, result: ViewResult, extra: Record<string, string> = {}, authenticated = true): Reply {
  const headers: Record<string, string> = { ...varyOf(def, authenticated), Allow: allowOf(def.name), ...extra }
  if (result.data === undefined && result.raw === undefined) return { status: result.status, headers, body: '' }
  const data = result.raw ?? stringifyUpstream(result.data)
  const json = result.raw === undefined && hasFloats(def.name) ? pythonFloats(data, def.name) : data
  if (renderer === 'html') {
    const shown = { Allow: allowOf(def.name), 'Content-Type': 'application/json', Vary: 'Accept', ...extra }
    return { status: result.status, headers: { ...headers, 'Content-Type': 'text/html; charset=utf-8' }, body: browsablePage(VIEW_NAMES[def.name], result.status, shown, json) }
  }
  return { status: result.status, headers: { ...headers, 'Content-Type': 'application/json' }, body: json }
}

function authenticate (def: EndpointDef, req: ApiRequest, deps: ApiDeps): SandboxUser | null {
  const header = req.headers.authorization
  if (def.access === 'anon') return deps.users.authenticateBasic(header)
  const now = deps.nowUs()
  return deps.users.authenticateHeader(header, now) ?? deps.users.authenticateQuery(req.queryParam('token'), now)
}

/** AnonRateThrottle's identity: the raw X-Forwarded-For (NUM_PROXIES unset), else the peer address. */
function anonIdent (req: ApiRequest): string {
  const xff = req.headers['x-forwarded-for']
  return typeof xff === 'string' && xff !== '' ? xff.replace(/\s/g, '') : req.remoteAddress
}

function checkThrottle (key: string, rate: Rate, deps: ApiDeps): void {
  const decision = deps.throttle.check(key, rate, Date.now())
  if (!decision.allowed) {
    const headers: Record<string, string> = decision.waitS ? { 'Retry-After': String(decision.waitS) } : {}
    throw new ApiException(429, throttledDetail(decision.waitS), headers)
  }
}

async function dispatch (def: EndpointDef, req: ApiRequest, deps: ApiDeps): Promise<ViewResult> {
  let user: SandboxUser | null
  try {
    user = authenticate(def, req, deps)
  } catch (err) {
    /* c8 ignore next -- authentication throws nothing else */
    if (!(err instanceof AuthFailed)) throw err
    // The first authentication class decides: Token → 401 with WWW-Authenticate; Session → 403.
    if (def.access === 'anon') throw new ApiException(403, err.message)
    throw new ApiException(401, err.message, { 'WWW-Authenticate': 'Token' })
  }
  const rates = deps.rates()
  if (def.access === 'anon') {
    // Requests authenticated by Basic auth are not anon-throttled.
    if (user === null) checkThrottle(`anon:${anonIdent(req)}`, rates.anon, deps)
  } else {
    if (user === null) throw new ApiException(401, AUTH_DETAILS.notProvided, { 'WWW-Authenticate': 'Token' })
    if (def.access === 'write' && !SAFE_METHODS.has(req.method) && !deps.users.hasWriteAccess(user)) {
      throw new ApiException(403, DETAILS.forbidden)
    }
    // UserAdminRateThrottle: one bucket per user across all endpoints; staff use the admin scope.
    checkThrottle(`${user.isStaff ? 'admin' : 'user'}:${user.id}`, user.isStaff ? rates.staff : rates.user, deps)
  }
  const method = req.method
  if (method === 'OPTIONS') return { status: 200, data: optionsMetadata(def.name) }
  const handler = method === 'GET' || method === 'HEAD' ? def.get : method === 'POST' ? def.post : undefined
  // DRF maps HEAD to get(); PUT, PATCH, DELETE and anything else have no handler here.
  if (handler === undefined) {
    throw new ApiException(405, DETAILS.methodNotAllowed(method))
  }
  let parsed: Promise<DataSource> | undefined
  const ctx: ViewContext = {
    method,
    query: req.query,
    data: async () => { parsed ??= parseRequestData(req.headers['content-type'], req.body, parsersOf(def.name)); return await parsed },
    user,
    store: deps.store,
    users: deps.users,
    maxObjectsPerCall: deps.maxObjectsPerCall,
    nowUs: deps.nowUs
  }
  return await handler(ctx)
}

export async function runApiView (def: EndpointDef, req: ApiRequest, deps: ApiDeps): Promise<Reply> {
  const negotiated = negotiate(req.headers.accept, req.queryParam('format'), renderersOf(def.name))
  if ('error' in negotiated) {
    // A failed negotiation renders with the first renderer (JSON), as DRF's force=True does.
    // Before authentication: no session read yet.
    return negotiated.error === 'not-found'
      ? render(def, 'json', { status: 404, data: { detail: DETAILS.notFound } }, {}, false)
      : render(def, 'json', { status: 406, data: { detail: DETAILS.notAcceptable } }, {}, false)
  }
  try {
    return render(def, negotiated.renderer, await dispatch(def, req, deps))
  } catch (err) {
    if (err instanceof ApiException) return render(def, negotiated.renderer, { status: err.status, data: { detail: err.detail } }, err.headers)
    if (err instanceof DjangoHtmlError) return { status: err.status, headers: {}, body: '', html: err.status === 400 ? 'page400' : 'page500' }
    /* c8 ignore start -- a bug, not an upstream behaviour: the HTTP layer turns it into a 500 page */
    throw err
  }
}
/* c8 ignore stop */
