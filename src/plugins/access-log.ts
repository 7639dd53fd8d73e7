// One access log line per request, replacing Fastify's "incoming request" / "request completed" pair
// (app.ts sets disableRequestLogging). It names the route template and the consumer, and only fields
// that cannot hold a secret: headers are never logged and the URL goes through redactUrl.
// On the hot path: a callback hook (no promise per request), one object of strings and numbers with
// the same shape every time (no serializer runs on it), written by a child logger whose redaction
// covers the flat fields of this line only (logger.ts FLAT_REDACT) rather than every nested path, and
// redactUrl scans only URLs with a `=`.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { FLAT_REDACT, redactUrl } from '../logger.js'
import { consumerLabel, routeLabel } from './metrics.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The cache outcome of this request (HIT, MISS, STALE, BYPASS); '' when no cache was involved. */
    cacheStatus: string
    /** How many upstream calls this request caused (0 for a cache hit). */
    upstreamCalls: number
  }
}

export const accessLogPlugin = fp(async (app) => {
  app.decorateRequest('cacheStatus', '')
  app.decorateRequest('upstreamCalls', 0)

  // One child for every line, with the request id as a field (no route sets a log level of its own).
  const accessLog = app.log.child({}, { redact: FLAT_REDACT })
  app.addHook('onResponse', function accessLine (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    accessLog.info({
      request_id: request.id,
      consumer: consumerLabel(request),
      route: routeLabel(request),
      method: request.method,
      url: redactUrl(request.url),
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      cache: request.cacheStatus === '' ? '-' : request.cacheStatus,
      upstream_calls: request.upstreamCalls
    }, 'request completed')
    done()
  })
}, { name: 'access-log', fastify: '5.x' })
