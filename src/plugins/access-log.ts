// One access log line per request, replacing Fastify's "incoming request" / "request completed" pair
// (app.ts sets disableRequestLogging). It names the route template and the consumer, and only fields
// that cannot hold a secret: headers are never logged and the URL goes through redactUrl.
import fp from 'fastify-plugin'
import { redactUrl } from '../logger.js'
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

  app.addHook('onResponse', async (request, reply) => {
    // The request id is already bound to request.log (requestIdLogLabel 'request_id').
    request.log.info({
      consumer: consumerLabel(request),
      route: routeLabel(request),
      method: request.method,
      url: redactUrl(request.url),
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      cache: request.cacheStatus === '' ? '-' : request.cacheStatus,
      upstream_calls: request.upstreamCalls
    }, 'request completed')
  })
}, { name: 'access-log', fastify: '5.x' })
