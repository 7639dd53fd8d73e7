// buildApp(config) assembles the gateway: plugins are registered in one explicit order, because each
// builds on the ones before it (config → errors → health → redis → upstream → cache → auth → quota → routes).
import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { buildLoggerOptions, genReqId, lazyRequestLogger } from './logger.js'
import { clientErrorHandler, frameworkErrorsWith, problemHandlerPlugin } from './plugins/problem-handler.js'
import { clientGoneOnSend, healthPlugin } from './plugins/health.js'
import { openapiPlugin } from './plugins/openapi.js'
import { metricsEndpointPlugin, metricsPlugin } from './plugins/metrics.js'
import { accessLogPlugin } from './plugins/access-log.js'
import { redisPlugin } from './plugins/redis.js'
import { consumerAuthPlugin, routeGuardPlugin } from './auth/plugin.js'
import { v1Routes } from './routes/v1/index.js'
import { COMPAT_PREFIX, answerUnroutable, compatNegotiationPlugin, compatRoutes } from './routes/compat/index.js'
import { upstreamPlugin } from './upstream/plugin.js'
import { createListCatalog, type ListCatalog } from './lists.js'
import { cachePlugin } from './cache/plugin.js'
import { servicePlugin } from './service/index.js'
import { auditPlugin } from './audit/plugin.js'
import { usagePlugin } from './usage/plugin.js'
import { compressPlugin } from './plugins/compress.js'
import { pageRoutes } from './routes/pages.js'
import { pushPlugin } from './push/plugin.js'
import type { Redis } from 'ioredis'
import type { Clock } from './quota/window-store.js'
import { decorateRouteMemo } from './lib/route.js'

export interface AppDeps {
  /** A pino-compatible destination stream for logs (tests capture logs through it). */
  logStream?: NodeJS.WritableStream
  /** An ioredis client to use instead of creating one from REDIS_URL (not closed by the app). */
  redis?: Redis
  /**
   * Tests only: the app's clock, for the daily and hourly limit windows (e.g. to cross a UTC midnight),
   * cache freshness and the Age served, the service's predictions, and the in-memory upstream budget
   * (e.g. to run a simulated hour in seconds). The Redis budget keeps the Redis server's clock.
   */
  now?: Clock
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    lists: ListCatalog
  }
}

export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const loggerOptions = buildLoggerOptions(config)
  const app = Fastify({
    logger: deps.logStream === undefined ? loggerOptions : Object.assign(loggerOptions, { stream: deps.logStream }),
    genReqId,
    // request.log is made only when a request logs something (logger.ts).
    childLoggerFactory: lazyRequestLogger,
    // The LogController carries both log options (the top-level ones are deprecated in Fastify 5.x);
    // plugins/access-log.ts writes one line per request instead of Fastify's two.
    logController: new LogController({ requestIdLogLabel: 'request_id', disableRequestLogging: true }),
    bodyLimit: config.BODY_LIMIT_BYTES,
    trustProxy: false,
    // A request (headers and body) must arrive within REQUEST_TIMEOUT_MS (408); an idle connection is
    // closed after the longest upstream call could have ended.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    connectionTimeout: config.UPSTREAM_TIMEOUT_MS + 30_000,
    // Node enforces requestTimeout only while headersTimeout is not longer, and checks every interval.
    http: {
      // A missing Host gets a problem from plugins/problem-handler.ts instead of Node's empty 400.
      requireHostHeader: false,
      headersTimeout: Math.min(60_000, config.REQUEST_TIMEOUT_MS),
      connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(config.REQUEST_TIMEOUT_MS / 2)))
    },
    // Requests that arrive while the gateway drains get a problem (below), not Fastify's own 503 body.
    return503OnClosing: false,
    clientErrorHandler,
    // A compat path that does not decode gets the upstream's 404; any other URL a problem.
    frameworkErrors: frameworkErrorsWith(answerUnroutable),
    // Routes outside /v1 (health, compat) validate nothing but what they declare; v1 installs its own
    // strict validators (routes/v1/input.ts).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: true } }
  }).withTypeProvider<TypeBoxTypeProvider>()
  // An HTTP/1.1 Expect other than 100-continue: Node answers a bare 417 itself (no body, no X-Request-Id)
  // unless this event has a listener. The request goes through the app, whose problem handler answers
  // 417 GW_EXPECTATION_FAILED (plugins/problem-handler.ts), logged and counted like any other.
  app.server.on('checkExpectation', app.routing)

  app.decorate('config', config)
  app.decorate('lists', createListCatalog(config.CUSTOM_LISTS))
  decorateRouteMemo(app)
  // Callback hooks on the hot path: an async hook costs a promise and a microtask per request. The
  // headers every answer carries are set in this one hook: nosniff, so that no browser reads a JSON,
  // CSV or text answer as HTML or script (an SVG or a problem holding a consumer's input included).
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    done()
  })

  // The route guard first, so it sees every route: each declares a scope or public, or boot fails.
  await app.register(routeGuardPlugin)
  // The problem handler's route map (405 with Allow) next, so that it sees every route, the document's
  // own (/openapi.json, /docs) included; then the OpenAPI document, which sees every route after them.
  await app.register(problemHandlerPlugin)
  await app.register(openapiPlugin)
  await app.register(healthPlugin)
  await app.register(metricsPlugin)
  await app.register(redisPlugin, deps.redis === undefined ? {} : { client: deps.redis })
  await app.register(accessLogPlugin)
  await app.register(metricsEndpointPlugin)
  // The upstream (client, token, budget, batching), then the cache in front of it.
  const clock = deps.now === undefined ? {} : { now: deps.now }
  await app.register(upstreamPlugin, clock)
  await app.register(cachePlugin, clock)
  // Compression (gzip, brotli) for every route registered after it; encoded bodies kept in L1.
  await app.register(compressPlugin)
  // After the app's other onSend steps, so that it sees the response as they leave it (plugins/health.ts).
  app.addHook('onSend', clientGoneOnSend)
  // Every upstream write leaves one audit record (the service records it).
  await app.register(auditPlugin)
  // What both dialects call: reads and writes through the cache and the upstream.
  await app.register(servicePlugin, clock)
  // The compat path's 406 comes before authentication, as upstream; then consumers, auth and limits.
  await app.register(compatNegotiationPlugin)
  await app.register(consumerAuthPlugin, deps.now === undefined ? {} : { now: deps.now })
  // Push: sources polled once for every subscriber, event streams and webhooks (src/push/).
  await app.register(pushPlugin)
  // Usage per consumer per UTC day, counted in memory and flushed in batches.
  await app.register(usagePlugin, clock)
  await app.register(v1Routes, { prefix: '/v1' })
  await app.register(compatRoutes, { prefix: COMPAT_PREFIX })
  // The landing page (/) and the operators' status page (/status).
  await app.register(pageRoutes)

  return app
}
