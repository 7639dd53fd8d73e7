// One access log line per request, replacing Fastify's "incoming request" / "request completed" pair
// (app.ts sets disableRequestLogging). It names the route template and the consumer, and only fields
// that cannot hold a secret: headers are never logged and the URL goes through redactUrl.
// On the hot path: a callback hook (no promise per request) that writes the line as one string to the
// logger's own destination, in pino's format (level, time, the logger's bindings, the fields, msg),
// without pino's object walk: the fields are fixed and none is secret-named (the redaction paths of
// logger.ts match none of them), strings that come from outside (URL, consumer, route, request id) are
// JSON-escaped, and redactUrl (which scans only URLs with a `=`) hides secret query values.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { symbols } from 'pino'
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

  const log = app.log as unknown as Record<symbol, unknown>
  const stream = log[symbols.streamSym] as { write: (line: string) => unknown }
  const time = log[symbols.timeSym] as () => string
  // The logger's bindings as pino writes them: `,"pid":…,"hostname":"…"`.
  const bindings = log[symbols.chindingsSym] as string
  const INFO = 30
  app.addHook('onResponse', function accessLine (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    if ((log[symbols.levelValSym] as number) <= INFO) {
      const cache = request.cacheStatus === '' ? '-' : request.cacheStatus
      stream.write(`{"level":${INFO}${time()}${bindings},"request_id":${JSON.stringify(request.id)},` +
        `"consumer":${JSON.stringify(consumerLabel(request))},"route":${JSON.stringify(routeLabel(request))},` +
        `"method":${JSON.stringify(request.method)},"url":${JSON.stringify(redactUrl(request.url))},` +
        `"status":${reply.statusCode},"duration_ms":${Math.round(reply.elapsedTime * 100) / 100},` +
        `"cache":${JSON.stringify(cache)},"upstream_calls":${request.upstreamCalls},"msg":"request completed"}\n`)
    }
    done()
  })
}, { name: 'access-log', fastify: '5.x' })
