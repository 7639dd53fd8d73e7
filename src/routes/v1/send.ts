// How v1 answers a read: the cache headers (X-Cache, X-Cache-Reason, Age, Cache-Control, a strong ETag
// with 304) of the service's read, and bodies sent as bytes (no schema serialisation: upstream data
// passes through).
import type { FastifyReply, FastifyRequest } from 'fastify'
import { computeEtag } from '../../cache/entry.js'
import { buildCacheControl } from '../../cache/freshness.js'
import { matchesIfNoneMatch } from '../../cache/http.js'
import type { CacheInfo } from '../../service/index.js'

const JSON_TYPE = 'application/json; charset=utf-8'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The cache headers a v1 read answers with, as the OpenAPI document shows them: 'validated' when it
     * answers through sendDerived (X-Cache, Age, a cacheable Cache-Control, a strong ETag and 304),
     * 'reported' through cacheHeaders alone (X-Cache and Age). Other v1 answers are not cacheable.
     */
    cached?: 'validated' | 'reported'
  }
}

/** What a read served: X-Cache, Age, and X-Cache-Reason for a STALE answer not being refreshed. */
export function cacheHeaders (reply: FastifyReply, info: CacheInfo): void {
  reply.header('x-cache', info.status)
  reply.header('age', String(info.ageS))
  // Why a STALE answer is not being refreshed now: budget-low (the upstream budget is kept for misses)
  // or upstream-error (stale-if-error). A custom header: RFC 9111 obsoletes Warning (110).
  if (info.status === 'STALE' && info.reason !== undefined) reply.header('x-cache-reason', info.reason)
}

/** Sends a body derived from a cached read with the read's cache headers and its own strong ETag. */
export function sendDerived (request: FastifyRequest, reply: FastifyReply, info: CacheInfo, body: string | Buffer, etag?: string, contentType = JSON_TYPE): FastifyReply {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  const tag = etag ?? computeEtag(bytes)
  cacheHeaders(reply, info)
  reply.header('cache-control', buildCacheControl(request.server.cache.freshness(info.route), info.ageS, request.server.config.CACHE_MAX_STALE_S))
  reply.header('etag', tag)
  if (matchesIfNoneMatch(request.headers['if-none-match'], tag)) return reply.code(304).send()
  return reply.code(200).type(contentType).send(bytes)
}

/** Sends bytes or a stream as they are (no schema serialisation: upstream data passes through). */
export function sendRaw (reply: FastifyReply, contentType: string, body: string | Buffer | NodeJS.ReadableStream, status = 200): FastifyReply {
  return reply.code(status).type(contentType).send(body)
}
