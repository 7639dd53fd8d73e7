// Cache headers and conditional answers for a cached result. These headers are written here rather than
// through @fastify/caching: that plugin keeps its own ETag store and answers 304 from an onRequest hook,
// i.e. before consumer auth, quota and our two-tier cache have run, and it sets one Cache-Control for
// the whole instance, while ours differs per route and shrinks with the entry's age.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FetchResult } from './cache.js'
import { buildCacheControl, type Freshness } from './freshness.js'

export type CacheHeaderOptions = { cacheControl: string } | { freshness: Freshness }

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, so W/"x" matches "x"; `*` matches any. */
export function matchesIfNoneMatch (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((candidate) => {
    const tag = candidate.trim()
    return tag === '*' || tag === etag || tag === `W/${etag}`
  })
}

/**
 * Answers with a cached entry: X-Cache, Age, Cache-Control, ETag and the body bytes as stored (no
 * re-serialisation), or 304 with no body when the caller already holds those bytes.
 */
export function sendCached (
  request: FastifyRequest, reply: FastifyReply, result: FetchResult, opts: CacheHeaderOptions
): FastifyReply {
  const { entry, status, ageS } = result
  const cacheControl = 'cacheControl' in opts ? opts.cacheControl : buildCacheControl(opts.freshness, ageS)
  reply.header('x-cache', status)
  reply.header('age', String(ageS))
  reply.header('cache-control', cacheControl)
  reply.header('etag', entry.etag)
  const isSuccess = entry.status >= 200 && entry.status < 300
  const ifNoneMatch = request.headers['if-none-match']
  if (isSuccess && (request.method === 'GET' || request.method === 'HEAD') && matchesIfNoneMatch(ifNoneMatch, entry.etag)) {
    return reply.code(304).send()
  }
  return reply.code(entry.status).type(entry.contentType).send(entry.body)
}

function hasNoCache (value: string | string[] | undefined): boolean {
  const text = Array.isArray(value) ? value.join(',') : value
  if (text === undefined) return false
  return text.split(',').some((directive) => directive.trim().toLowerCase() === 'no-cache')
}

/** request.consumer is decorated by the consumer-auth plugin; read it without depending on its type. */
function isBypassAllowed (request: FastifyRequest): boolean {
  const consumer: unknown = Reflect.get(request, 'consumer')
  return typeof consumer === 'object' && consumer !== null &&
    (consumer as { allow_bypass?: unknown }).allow_bypass === true
}

/**
 * Whether to skip the cached value: the caller asked (Cache-Control or Pragma no-cache) and its consumer
 * config allows it. Otherwise the request is served from cache, and X-Cache says so.
 */
export function wantsBypass (request: FastifyRequest): boolean {
  const asked = hasNoCache(request.headers['cache-control']) || hasNoCache(request.headers.pragma)
  return asked && isBypassAllowed(request)
}
