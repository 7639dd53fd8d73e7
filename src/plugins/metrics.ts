// Prometheus metrics (prom-client). Every metric the gateway exports is created here, so names and
// label sets are in one place; other modules receive `app.metrics` and only inc/observe. Label values
// are bounded: route templates (never raw URLs), endpoint names, consumer ids, fixed outcome words.
import { createHash, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { UnauthenticatedError } from '../errors.js'
import { routeOf } from '../lib/route.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export type Metrics = ReturnType<typeof createMetrics>

/** The route label of a request that matched no route: raw URLs would make label values unbounded. */
export const UNMATCHED_ROUTE = 'unmatched'
export const ANONYMOUS_CONSUMER = 'anonymous'

/** Counts of the upstream connection pool (undici PoolStats), read when /metrics is scraped. */
export interface PoolCounts { connected: number, free: number, pending: number, queued: number, running: number }

/**
 * State owned by other modules that the gauges below read at scrape time. Owners register a reader
 * (the upstream client does, for its pool and the token manager's login backoff).
 */
export interface LiveSources {
  pool?: () => PoolCounts
  loginBackoff?: () => { reason: string | undefined, retryAfterS: number }
}

export function createMetrics (registry = new Registry()) {
  const registers = [registry]
  const live: LiveSources = {}
  return {
    registry,
    live,
    requests: new Counter({ name: 'gateway_requests_total', help: 'requests by route template, status and consumer', labelNames: ['route', 'status', 'consumer'] as const, registers }),
    requestDuration: new Histogram({ name: 'gateway_request_duration_seconds', help: 'request duration by route template', labelNames: ['route'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers }),
    cacheResults: new Counter({ name: 'gateway_cache_results_total', help: 'cache outcomes by route (hit, miss, stale, bypass)', labelNames: ['route', 'result'] as const, registers }),
    upstreamCalls: new Counter({ name: 'gateway_upstream_calls_total', help: 'upstream calls by endpoint and status: the HTTP status, or timeout (sent, no whole reply within the deadline), network (sent, the connection failed), not_sent (never left the gateway), too_large (reply over UPSTREAM_MAX_RESPONSE_BYTES)', labelNames: ['endpoint', 'status'] as const, registers }),
    upstreamDuration: new Histogram({ name: 'gateway_upstream_duration_seconds', help: 'upstream call duration by endpoint', labelNames: ['endpoint'] as const, buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600], registers }),
    objectsWait: new Histogram({ name: 'gateway_upstream_objects_wait_seconds', help: 'how long an object id a consumer asked for waited before its objects/ call started: the batching window, or the hold while UPSTREAM_CONNECTIONS calls are in flight (a wait for a connection after that is in gateway_upstream_duration_seconds)', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers }),
    upstreamBudgetRemaining: new Gauge({ name: 'gateway_upstream_budget_remaining', help: 'upstream calls left in the global budget (last seen)', registers }),
    upstreamPauseSeconds: new Gauge({ name: 'gateway_upstream_pause_seconds', help: 'seconds left of an upstream 429 pause (0 when not paused)', registers }),
    upstreamBudgetRefunds: new Counter({ name: 'gateway_upstream_budget_refunds_total', help: 'budget tokens given back for calls that never reached the upstream (refused connection, DNS failure, no free connection)', registers }),
    upstreamBreakerState: new Gauge({ name: 'gateway_upstream_breaker_state', help: 'upstream circuit breaker: 0 closed, 1 half-open, 2 open', registers }),
    upstreamBreakerTransitions: new Counter({ name: 'gateway_upstream_breaker_transitions_total', help: 'upstream circuit breaker state changes', labelNames: ['from', 'to'] as const, registers }),
    upstreamBreakerRejections: new Counter({ name: 'gateway_upstream_breaker_rejections_total', help: 'upstream calls not made because the circuit breaker was open (or its probe was in flight)', registers }),
    upstreamPoolConnections: new Gauge({
      name: 'gateway_upstream_pool_connections',
      help: 'upstream pool connections by state (connected, free)',
      labelNames: ['state'] as const,
      registers,
      collect () {
        const stats = live.pool?.()
        if (stats === undefined) return
        this.set({ state: 'connected' }, stats.connected)
        this.set({ state: 'free' }, stats.free)
      }
    }),
    upstreamPoolRequests: new Gauge({
      name: 'gateway_upstream_pool_requests',
      help: 'upstream pool requests by state: running (sent), pending (on a connection, not sent), queued (waiting for a connection now, each at most UPSTREAM_POOL_WAIT_MS)',
      labelNames: ['state'] as const,
      registers,
      collect () {
        const stats = live.pool?.()
        if (stats === undefined) return
        this.set({ state: 'running' }, stats.running)
        this.set({ state: 'pending' }, stats.pending)
        this.set({ state: 'queued' }, stats.queued)
      }
    }),
    upstreamPoolWaitTimeouts: new Counter({ name: 'gateway_upstream_pool_wait_timeouts_total', help: 'upstream calls that found no free connection within UPSTREAM_POOL_WAIT_MS', registers }),
    tokenRefreshBackoffSeconds: new Gauge({
      name: 'gateway_token_refresh_backoff_seconds',
      help: 'seconds until the next upstream login may be tried, by why the last one failed (reason="none" and 0 when not backing off)',
      labelNames: ['reason'] as const,
      registers,
      collect () {
        const backoff = live.loginBackoff?.()
        this.reset()
        this.set({ reason: backoff?.reason ?? 'none' }, backoff?.retryAfterS ?? 0)
      }
    }),
    tokenRefreshes: new Counter({ name: 'gateway_token_refreshes_total', help: 'upstream token refreshes by result: ok, failed, locked_out (not tried: logins are backing off)', labelNames: ['result'] as const, registers }),
    bulkStreams: new Gauge({ name: 'gateway_bulk_streams', help: 'bulk object streams (NDJSON, or JSON of more than one chunk) open on this replica; BULK_MAX_STREAMS at most', registers }),
    limitRejections: new Counter({ name: 'gateway_limit_rejections_total', help: 'rate-limit and quota rejections by consumer and kind', labelNames: ['consumer', 'kind'] as const, registers }),
    coalesced: new Counter({ name: 'gateway_coalesced_total', help: 'reads served by joining another in-flight upstream call (single flight or id batching)', labelNames: ['kind'] as const, registers }),
    predicted: new Counter({ name: 'gateway_predicted_total', help: 'object records fetched ahead of any request (riding along a consumer\'s objects/ call or in a prefetch call), by source: list (members of lists read recently), refresh (hot records close to going stale)', labelNames: ['source'] as const, registers }),
    predictedRead: new Counter({ name: 'gateway_predicted_read_total', help: 'predicted records that a consumer then read while they were fresh, by source; prediction hit rate = predicted_read / predicted', labelNames: ['source'] as const, registers }),
    pushSubscribers: new Gauge({ name: 'gateway_push_subscribers', help: 'push subscribers by source and kind: sse (event streams open on this replica), webhook (webhooks configured)', labelNames: ['source', 'kind'] as const, registers }),
    pushEvents: new Counter({ name: 'gateway_push_events_total', help: 'push events written by this replica\'s polls, by source and type', labelNames: ['source', 'type'] as const, registers }),
    pushDeliveries: new Counter({ name: 'gateway_push_deliveries_total', help: 'webhook delivery attempts by consumer and outcome: delivered, retry (failed, will be retried), dead_letter (given up), gap (events trimmed before they were delivered, noted in the dead-letter list), undecodable (a stored event that does not decode: not sent, kept in the dead-letter list as text)', labelNames: ['consumer', 'outcome'] as const, registers }),
    pushPolls: new Counter({ name: 'gateway_push_polls_total', help: 'push polls by source and result: ok, baseline (first poll, no events), error, budget_low (skipped), lost_lead', labelNames: ['source', 'result'] as const, registers }),
    pushPollCalls: new Counter({ name: 'gateway_push_poll_calls_total', help: 'upstream calls made by push polls, by source (0 when the cache answered)', labelNames: ['source'] as const, registers }),
    lightCurveParses: new Counter({ name: 'gateway_lightcurve_parses_total', help: 'light curves read from a whole stored record (a parse of it): once per record version while L1\'s derived memo keeps the curve, which then serves every format and mjd_min', registers }),
    redisErrors: new Counter({ name: 'gateway_redis_errors_total', help: 'Redis errors (timeouts, disconnects) seen by the gateway', registers }),
    dependencyUp: new Gauge({ name: 'gateway_dependency_up', help: 'last background check of each dependency (redis, upstream, token): 1 up, 0 down', labelNames: ['dependency'] as const, registers }),
    redisAvailable: new Gauge({ name: 'gateway_redis_available', help: '1 while the gateway uses Redis; 0 while it skips Redis after a failure (until a probe answers), and without REDIS_URL', registers }),
    redisSkipped: new Counter({ name: 'gateway_redis_skipped_total', help: 'Redis calls not made because Redis was unavailable, by the user that skipped it (cache, lock, pubsub, limits, token, budget, idempotency, push, audit, usage, admin)', labelNames: ['user'] as const, registers })
  }
}

export const metricsPlugin = fp(async (app) => {
  const metrics = createMetrics()
  collectDefaultMetrics({ register: metrics.registry })
  app.decorate('metrics', metrics)
}, { name: 'metrics', fastify: '5.x' })

/** The route template of a request (`/v1/objects/:id`), never its raw URL. */
export function routeLabel (request: FastifyRequest): string {
  return routeOf(request).url ?? UNMATCHED_ROUTE
}

/**
 * The consumer id of a request. `request.consumer` is decorated by the consumer-auth plugin, which may
 * be absent (tests, or before auth ran on a rejected request), so it is read without assuming it exists.
 */
export function consumerLabel (request: FastifyRequest): string {
  const id = (request as { consumer?: { id?: unknown } | null }).consumer?.id
  return typeof id === 'string' && id !== '' ? id : ANONYMOUS_CONSUMER
}

/** Constant-time comparison of a presented secret with the expected one (digests make lengths equal). */
export function isSameSecret (given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** The secret a request presents: a Bearer token, or (when `isBasicAllowed`) the password of HTTP Basic. */
function presentedSecret (request: FastifyRequest, isBasicAllowed: boolean): string {
  const header = request.headers.authorization
  if (typeof header !== 'string') return ''
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (bearer !== null) return bearer[1] as string
  if (!isBasicAllowed) return ''
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (basic === null) return ''
  const decoded = Buffer.from(basic[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon < 0 ? '' : decoded.slice(colon + 1)
}

/**
 * Whether a request presents METRICS_TOKEN as `Authorization: Bearer <token>`; false while it is empty,
 * so that an open gateway shows no operator-only detail to anyone (/healthz's raw check errors).
 */
export function presentsMetricsToken (request: FastifyRequest): boolean {
  const expected = request.server.config.METRICS_TOKEN
  return expected !== '' && isSameSecret(presentedSecret(request, false), expected)
}

/**
 * The operators' routes (/metrics, /status): when METRICS_TOKEN is set, a request must present it as
 * `Authorization: Bearer <token>`, or for a page a browser opens (`isPage`), as the password of HTTP
 * Basic (any user name; the Basic challenge makes the browser ask for it); else 401.
 */
export function requireMetricsToken (request: FastifyRequest, reply: FastifyReply, isPage = false): void {
  const expected = request.server.config.METRICS_TOKEN
  if (expected === '' || isSameSecret(presentedSecret(request, isPage), expected)) return
  reply.header('www-authenticate', isPage ? 'Basic realm="atlas-gateway operators", charset="UTF-8"' : 'Bearer realm="metrics"')
  const url = routeOf(request).url ?? ''
  throw new UnauthenticatedError(`${url} needs Authorization: Bearer <METRICS_TOKEN>${isPage ? ' (or HTTP Basic with it as the password)' : ''}.`)
}

/**
 * GET /metrics (Prometheus text) and the per-request metrics. A root hook applies to every route,
 * including those registered before this plugin (Fastify binds hooks to routes at ready time).
 */
export const metricsEndpointPlugin = fp(async (app) => {
  const { metrics } = app

  app.addHook('onResponse', (request, reply, done) => {
    const route = routeLabel(request)
    metrics.requests.inc({ route, status: String(reply.statusCode), consumer: consumerLabel(request) })
    metrics.requestDuration.observe({ route }, reply.elapsedTime / 1000)
    done()
  })

  // Public to the route guard: METRICS_TOKEN, when set, guards it here.
  app.get('/metrics', { config: { public: true }, schema: { hide: true } }, async (request, reply) => {
    requireMetricsToken(request, reply)
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}, { name: 'metrics-endpoint', fastify: '5.x', dependencies: ['metrics'] })
