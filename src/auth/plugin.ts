// Consumer authentication, scopes, per-list permissions and limits, attached to each route as it is
// registered (an onRoute hook, as @fastify/rate-limit does). Authorisation fails closed: every route
// declares `config.scope` (protected) or `config.public: true`; the app refuses to start while any route
// declares neither. Order, per protected route (docs/architecture.md):
//   onRequest:  key → consumer (401) → [compat: scope (403)] → request rate (429) → [v1: scope and the
//               route's custom list (403)]
//   (schema validation)
//   preHandler: [compat: the custom list named in the body (403)] → max_batch (413) → daily object units (429)
//   onResponse: daily units are given back when the answer delivered nothing (a 5xx, or a refusal after
//               the charge: 400, 409, 422, 429; REFUSED_AFTER_CHARGE; or an answer aborted after its
//               status went out: isAnswerAborted), and those of the ids an answer cut short never
//               delivered (undeliveredUnits)
// v1 errors are GW_ problems; the compat dialect answers with the upstream's exact `{"detail"}` bodies.
import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest, RouteOptions, onRequestHookHandler, preHandlerHookHandler, onResponseHookHandler } from 'fastify'
import { consumersPlugin } from '../consumers/plugin.js'
import { COMPAT_INVALID_TOKEN, compatKey, v1Key } from '../consumers/credentials.js'
import type { Consumer } from '../consumers/schema.js'
import { hasScope, mayWriteList, type Scope } from '../consumers/scopes.js'
import { DAY_MS, expiredMessage, sunsetHeader } from '../consumers/expiry.js'
import {
  ForbiddenError, PayloadTooLargeError, QuotaExhaustedError, RateLimitedError, UnauthenticatedError, withRetryAfter
} from '../errors.js'
import { quotaPlugin, type QuotaPluginOptions } from '../quota/plugin.js'
import { DETAILS } from '../upstream/endpoints.js'
import { allowOf, varyHeaderOf } from '../upstream/metadata.js'
import { routeOf } from '../lib/route.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope a consumer needs. A route declares this or `public`, or the app will not start. */
    scope?: Scope
    /** Marks a route that anyone may call (health, docs, metrics). */
    public?: boolean
    /** How rejections are written: v1 problem+json (default) or the upstream's `{"detail"}`. */
    dialect?: 'v1' | 'compat'
    /** Object units the request costs (one per requested id); charged before the handler runs. */
    units?: (request: FastifyRequest) => number
    /** The custom list the request writes; the consumer must be allowed to write it. */
    list?: (request: FastifyRequest) => string | undefined
  }
  interface FastifyRequest {
    /** The authenticated consumer on scoped routes; null elsewhere. */
    consumer: Consumer | null
    /** The key that authenticated the consumer ('' when none did): usage records its last use. */
    consumerKey: string
    /** Daily object units this request was charged (given back if the answer delivered nothing). */
    chargedUnits: number
    /** When the window of those units has surely ended (quota/lease.ts): a refund after it is dropped. */
    chargedUnitsWindowEnd: number
    /** When those units were charged (the app's clock), moved into the quota's day: usage counts them on that day. */
    chargedUnitsAt: number
    /**
     * Set when the answer was aborted after its status went out, having delivered nothing usable (a JSON
     * bulk answer cut short, which no client can parse): its units are given back, whatever the status.
     */
    isAnswerAborted: boolean
    /**
     * Units of the ids an answer ended early never delivered (an NDJSON bulk stream ended by its error
     * line: the lines before it are records the client keeps): given back, the rest of the charge kept.
     */
    undeliveredUnits: number
  }
  interface FastifyInstance {
    /** Every route registered, with its protection: a scope, or 'public'. */
    routeTable: RouteProtection[]
    /** The per-route hooks the route guard attaches to protected routes. */
    auth: {
      authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
      authorize: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>
      /** Gives back `units` of the request's charge (all of it by default). */
      refund: (request: FastifyRequest, units?: number) => Promise<void>
      /** The app's clock (tests inject one): key expiry, usage days. */
      now: () => number
    }
  }
}

const REALM = 'Bearer realm="atlas-gateway"'
const COMPAT_FORBIDDEN = DETAILS.forbidden
const COMPAT_UNAVAILABLE = 'Service temporarily unavailable, try again later.'

type Rejection = FastifyError & { retryAfter?: number }

export interface RouteProtection { method: string, url: string, protection: Scope | 'public' | 'none' }

function sendCompat (reply: FastifyReply, status: number, detail: string): FastifyReply {
  // The view's Vary and Allow, which upstream sends with its refusals too, as the route's own answers
  // do (routes/compat send()). A compat answer outside a view (the slash-less redirect) has neither.
  const endpoint = routeOf(reply.request).config.endpoint
  if (endpoint !== undefined) reply.header('vary', varyHeaderOf(endpoint)).header('allow', allowOf(endpoint))
  // A Buffer, so Fastify sends the type as is: the upstream's is `application/json` with no charset.
  return reply.code(status).type('application/json').send(Buffer.from(JSON.stringify({ detail })))
}

/**
 * Writes a gateway limit/auth error the way the upstream would (`{"detail"}`, DRF wording); rethrows
 * anything else. Exported for the compat routes, e.g. for a GW_QUOTA_EXHAUSTED from takeUpstreamShare.
 */
export function sendCompatError (reply: FastifyReply, err: Rejection): FastifyReply {
  const retryAfter = err.retryAfter ?? 1
  switch (err.code) {
    case 'GW_FORBIDDEN': return sendCompat(reply, 403, COMPAT_FORBIDDEN)
    case 'GW_RATE_LIMITED':
    case 'GW_QUOTA_EXHAUSTED':
      // The only 429 the upstream's clients know is DRF's throttle reply.
      return sendCompat(reply.header('retry-after', String(retryAfter)), 429, DETAILS.throttled(retryAfter))
    case 'GW_UNAVAILABLE': return sendCompat(reply.header('retry-after', String(retryAfter)), 503, COMPAT_UNAVAILABLE)
    case 'GW_PAYLOAD_TOO_LARGE': return sendCompat(reply, 413, err.message)
    default: throw err
  }
}

/** v1: throws the GW_ error for the problem handler. compat: writes the upstream-shaped reply. */
function reject (request: FastifyRequest, reply: FastifyReply, err: Rejection): FastifyReply {
  if (routeOf(request).config.dialect !== 'compat') throw err
  return sendCompatError(reply, err)
}

// Built once per consumer object (a reload makes new ones), not per request.
const policyHeaders = new WeakMap<Consumer, string>()
function policyHeader (consumer: Consumer): string {
  let header = policyHeaders.get(consumer)
  if (header === undefined) {
    header = `"requests";q=${consumer.rate.max};w=${Math.max(1, Math.round(consumer.rate.windowMs / 1000))}`
    policyHeaders.set(consumer, header)
  }
  return header
}

/**
 * The route guard: registered before any route, so it sees every one. Routes with a scope get the
 * authentication, limit and refund hooks; the check that no route declares neither runs when the app
 * is readied (plugins that register third-party routes mark them public in their own context, after
 * this hook has run for them).
 */
// Answers after which a request's daily units are given back: it was refused after they were charged
// (the upstream share or budget spent: 429; input the compat path refuses whole once parsed: 400; an
// Idempotency-Key used for another request or still running: 422, 409) or it failed (5xx). A 404 is an
// answer: the lookup was made.
const REFUSED_AFTER_CHARGE = new Set([400, 409, 422, 429])
const deliveredNothing = (status: number): boolean => status >= 500 || REFUSED_AFTER_CHARGE.has(status)

/** Of a request's charge, what goes back once it is answered: all of it, or the ids it never delivered. */
function unitsToGiveBack (request: FastifyRequest, status: number): number {
  if (deliveredNothing(status) || request.isAnswerAborted) return request.chargedUnits
  return Math.min(request.chargedUnits, request.undeliveredUnits)
}

export const routeGuardPlugin = fp(async (app) => {
  const table: Array<{ method: string, url: string, config: { scope?: Scope, public?: boolean } }> = []
  app.decorate('routeTable', {
    getter (): RouteProtection[] {
      return table.map((r) => ({ method: r.method, url: r.url, protection: r.config.public === true ? 'public' : r.config.scope ?? 'none' }))
    }
  })
  app.decorateRequest('consumer', null)
  app.decorateRequest('consumerKey', '')
  app.decorateRequest('chargedUnits', 0)
  app.decorateRequest('chargedUnitsWindowEnd', 0)
  app.decorateRequest('chargedUnitsAt', 0)
  app.decorateRequest('isAnswerAborted', false)
  app.decorateRequest('undeliveredUnits', 0)

  const onRequest: onRequestHookHandler = async function (request, reply) {
    return await this.auth.authenticate(request, reply)
  }
  const preHandler: preHandlerHookHandler = async function (request, reply) {
    return await this.auth.authorize(request, reply)
  }
  // A callback hook: most requests have nothing to give back, and pay no promise for it. An app-wide
  // hook, not a route's: app hooks run before route hooks and in the order they were added, so the
  // units are given back before any later plugin's onResponse reads the charge (usage counts it).
  const onResponse: onResponseHookHandler = function (request, reply, done) {
    const back = request.chargedUnits === 0 ? 0 : unitsToGiveBack(request, reply.statusCode)
    if (back > 0) this.auth.refund(request, back).then(() => done(), done)
    else done()
  }
  app.addHook('onResponse', onResponse)

  app.addHook('onRoute', (route: RouteOptions) => {
    route.config ??= {}
    const config = route.config as { scope?: Scope, public?: boolean }
    for (const method of [route.method].flat()) table.push({ method, url: route.url, config })
    if (config.scope === undefined) return
    if (config.public === true) throw new Error(`Route ${route.url} declares both a scope and public.`)
    route.onRequest = [...[route.onRequest ?? []].flat(), onRequest]
    route.preHandler = [...[route.preHandler ?? []].flat(), preHandler]
  })
  app.addHook('onReady', async () => {
    const open = app.routeTable.filter((r) => r.protection === 'none')
    if (open.length > 0) {
      throw new Error(`Routes must declare config.scope or config.public: ${open.map((r) => `${r.method} ${r.url}`).join(', ')}`)
    }
  })
}, { name: 'route-guard', fastify: '5.x' })

/**
 * `chargedAt`, moved into the day the quota counted the charge on: the day ending at the charge's
 * `windowEnd`. They differ after the clock stepped back across 00:00 UTC, where the quota keeps the later
 * day (quota/window-store.ts): usage counted such units on the earlier day, past its daily_objects.
 * `windowEnd` is rounded to the nearest day boundary: with Redis it is the server's day end, taken into
 * this clock by the time the call was sent (so off by the clocks' difference and the round trip).
 */
function onChargedDay (chargedAt: number, windowEnd: number): number {
  if (!Number.isFinite(windowEnd) || windowEnd <= 0) return chargedAt
  const dayEnd = Math.round(windowEnd / DAY_MS) * DAY_MS
  return Math.min(Math.max(chargedAt, dayEnd - DAY_MS), dayEnd - 1)
}

export const consumerAuthPlugin = fp(async (app, opts: QuotaPluginOptions) => {
  await app.register(consumersPlugin)
  await app.register(quotaPlugin, opts)
  const now = opts.now ?? Date.now
  const warnMs = app.config.EXPIRY_WARNING_DAYS * DAY_MS

  /**
   * A consumer with `expires`: the 401 message once it has passed (the consumer stays on the request, so
   * logs and usage name it), the Sunset header in its last days. One number comparison otherwise.
   */
  function expiredDetail (reply: FastifyReply, consumer: Consumer): string | undefined {
    const expiresAt = consumer.expiresAt as number
    const leftMs = expiresAt - now()
    if (leftMs <= 0) return expiredMessage(consumer.expires as string)
    if (leftMs <= warnMs) reply.header('sunset', sunsetHeader(expiresAt))
    return undefined
  }

  function authenticateV1 (request: FastifyRequest, reply: FastifyReply): Consumer {
    const key = v1Key(request)
    if (key === undefined) {
      reply.header('www-authenticate', REALM)
      throw new UnauthenticatedError('This API needs a key: send Authorization: Bearer <key> or X-API-Key: <key>.')
    }
    const consumer = app.consumers.authenticate(key)
    if (consumer === undefined) {
      reply.header('www-authenticate', `${REALM}, error="invalid_token"`)
      throw new UnauthenticatedError('This key is not valid: it is unknown, revoked or disabled.')
    }
    request.consumerKey = key
    return consumer
  }

  async function limitRate (request: FastifyRequest, reply: FastifyReply, consumer: Consumer): Promise<FastifyReply | undefined> {
    reply.header('ratelimit-policy', policyHeader(consumer))
    let state
    try {
      state = await app.quota.checkRate(request)
    } catch (err) {
      return reject(request, reply, err as Rejection)
    }
    if (state === undefined) return undefined
    reply.header('ratelimit', `"requests";r=${state.remaining};t=${state.resetSeconds}`)
    if (!state.isExceeded) return undefined
    app.metrics.limitRejections.inc({ consumer: consumer.id, kind: 'rate' })
    return reject(request, reply, withRetryAfter(new RateLimitedError(
      `This key allows ${consumer.rate.text} requests; retry after ${state.resetSeconds} s.`
    ), state.resetSeconds))
  }

  async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const scope = routeOf(request).config.scope as Scope
    if (routeOf(request).config.dialect === 'compat') {
      const credential = compatKey(request)
      const consumer = 'key' in credential ? app.consumers.authenticate(credential.key) : undefined
      if (consumer === undefined) {
        return sendCompat(reply.header('www-authenticate', 'Token'), 401, 'detail' in credential ? credential.detail : COMPAT_INVALID_TOKEN)
      }
      request.consumer = consumer
      request.consumerKey = (credential as { key: string }).key
      const expired = consumer.expiresAt === undefined ? undefined : expiredDetail(reply, consumer)
      if (expired !== undefined) return sendCompat(reply.header('www-authenticate', 'Token'), 401, expired)
      // The upstream checks permission before throttling (a 403 is never a 429); compat keeps that order.
      if (!hasScope(consumer, scope)) return sendCompat(reply, 403, COMPAT_FORBIDDEN)
      return await limitRate(request, reply, consumer)
    }
    const consumer = authenticateV1(request, reply)
    request.consumer = consumer
    const expired = consumer.expiresAt === undefined ? undefined : expiredDetail(reply, consumer)
    if (expired !== undefined) {
      reply.header('www-authenticate', `${REALM}, error="invalid_token"`)
      throw new UnauthenticatedError(expired)
    }
    const limited = await limitRate(request, reply, consumer)
    if (limited !== undefined) return limited
    return permit(request, reply, consumer)
  }

  /**
   * v1's permission, before the input is validated: a key that may not call the route learns nothing
   * about its input (a 403, not a 400), and nothing is charged.
   */
  function permit (request: FastifyRequest, reply: FastifyReply, consumer: Consumer): FastifyReply | undefined {
    const config = routeOf(request).config
    if (!hasScope(consumer, config.scope as Scope)) {
      return reject(request, reply, new ForbiddenError(`This key lacks the scope "${config.scope}" that this operation needs.`))
    }
    const list = config.list?.(request)
    if (list !== undefined && !mayWriteList(consumer, list)) return reject(request, reply, listForbidden(list))
    return undefined
  }

  const listForbidden = (list: string): InstanceType<typeof ForbiddenError> => new ForbiddenError(`This key may not write the custom list "${list}".`)

  async function authorize (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const config = routeOf(request).config
    const consumer = request.consumer
    /* c8 ignore next -- authenticate() has set the consumer or answered */
    if (consumer === null) return undefined
    // Scope (both dialects) and v1's custom list were checked in onRequest. A compat write names its
    // list in the body, which is parsed after onRequest: its list is checked here, before any charge.
    if (config.dialect === 'compat') {
      const list = config.list?.(request)
      if (list !== undefined && !mayWriteList(consumer, list)) return reject(request, reply, listForbidden(list))
    }
    const units = config.units?.(request) ?? 0
    if (units > consumer.max_batch) {
      app.metrics.limitRejections.inc({ consumer: consumer.id, kind: 'max_batch' })
      return reject(request, reply, new PayloadTooLargeError(
        `This request asks for ${units} objects; this key allows at most ${consumer.max_batch} per request. Split the batch.`
      ))
    }
    if (units <= 0) return undefined
    let charge
    const chargedAt = now()
    try {
      charge = await app.quota.chargeUnits(request, consumer, units)
    } catch (err) {
      return reject(request, reply, err as Rejection)
    }
    if (charge === undefined) return undefined
    if (charge.isAllowed) {
      request.chargedUnits = units
      request.chargedUnitsWindowEnd = charge.windowEnd
      request.chargedUnitsAt = onChargedDay(chargedAt, charge.windowEnd)
      return undefined
    }
    app.metrics.limitRejections.inc({ consumer: consumer.id, kind: 'daily_objects' })
    return reject(request, reply, withRetryAfter(new QuotaExhaustedError(
      `This request needs ${units} object units; ${Math.max(0, consumer.daily_objects - charge.used)} of ` +
      `${consumer.daily_objects} are left today. The budget resets at 00:00 UTC.`
    ), charge.resetSeconds))
  }

  async function refund (request: FastifyRequest, units = request.chargedUnits): Promise<void> {
    const consumer = request.consumer
    if (consumer === null) return
    // What stays charged is what usage counts (its onResponse hook runs after this one).
    request.chargedUnits -= units
    try {
      await app.quota.refundUnits(consumer, units, request.chargedUnitsWindowEnd)
    } catch (err) {
      request.log.warn({ err }, 'daily units could not be given back')
    }
  }

  app.decorate('auth', { authenticate, authorize, refund, now })
}, { name: 'consumer-auth', fastify: '5.x', dependencies: ['route-guard', 'health', 'metrics', 'redis'] })
