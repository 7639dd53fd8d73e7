// Conditional requests and cache bypass for cached reads (routes/v1/send.ts writes the headers). They
// are handled here rather than through @fastify/caching: that plugin keeps its own ETag store and
// answers 304 from an onRequest hook, i.e. before consumer auth, quota and our two-tier cache have run,
// and it sets one Cache-Control for the whole instance, while ours differs per route and shrinks with
// the entry's age.
import type { FastifyRequest } from 'fastify'

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, so W/"x" matches "x"; `*` matches any. */
export function matchesIfNoneMatch (header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  return header.split(',').some((candidate) => {
    const tag = candidate.trim()
    return tag === '*' || tag === etag || tag === `W/${etag}`
  })
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
