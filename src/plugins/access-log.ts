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

/**
 * A value from a small set (consumer ids, route templates, methods, cache outcomes) as a JSON string,
 * escaped once per distinct value instead of once per request. Should the set ever grow past
 * QUOTED_MAX (say, consumers reloaded many times), it starts over.
 */
const QUOTED_MAX = 10_000
const quotedValues = new Map<string, string>()
function quoted (value: string): string {
  let json = quotedValues.get(value)
  if (json === undefined) {
    if (quotedValues.size >= QUOTED_MAX) quotedValues.clear()
    json = JSON.stringify(value)
    quotedValues.set(value, json)
  }
  return json
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
      // The request id needs no escaping: genReqId (logger.ts) keeps a caller's id only when it is made
      // of [A-Za-z0-9._:-], and otherwise makes a UUID.
      stream.write(`{"level":${INFO}${time()}${bindings},"request_id":"${request.id}",` +
        `"consumer":${quoted(consumerLabel(request))},"route":${quoted(routeLabel(request))},` +
        `"method":${quoted(request.method)},"url":${JSON.stringify(redactUrl(request.url))},` +
        `"status":${reply.statusCode},"duration_ms":${Math.round(reply.elapsedTime * 100) / 100},` +
        `"cache":${quoted(request.cacheStatus === '' ? '-' : request.cacheStatus)},"upstream_calls":${request.upstreamCalls},` +
        `"msg":"${request.isClientGone ? 'the client closed the connection before the response was complete' : 'request completed'}"}\n`)
    }
    done()
  })
}, { name: 'access-log', fastify: '5.x' })
