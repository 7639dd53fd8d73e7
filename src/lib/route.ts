// The matched route's options, read once per request. Fastify's `request.routeOptions` is a getter
// that builds a new object of 13 fields on every read, and a cache hit reads it about ten times
// (authentication, permission, metrics, usage, the access line): this keeps the first one.
import type { FastifyInstance, FastifyRequest } from 'fastify'

type RequestRoute = FastifyRequest['routeOptions']

declare module 'fastify' {
  interface FastifyRequest {
    /** request.routeOptions as first read (see routeOf); null before. */
    routeMemo: RequestRoute | null
  }
}

/** request.routeOptions, built once per request. */
export function routeOf (request: FastifyRequest): RequestRoute {
  const memo = request.routeMemo
  if (memo !== null) return memo
  const route = request.routeOptions
  request.routeMemo = route
  return route
}

export function decorateRouteMemo (app: FastifyInstance): void {
  app.decorateRequest('routeMemo', null)
}

// The scheme and authority of an absolute-form request target (RFC 9112 §3.2.2), which HTTP/1.1 servers
// must accept: `GET http://host/path?q` is the request for `/path?q`.
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/

/** A request target in origin form: the path and query, without an absolute form's scheme and host. */
export function originForm (url: string): string {
  return url.replace(ABSOLUTE_FORM, '')
}

/** The path of a request target: origin form, without the query. */
export function targetPath (url: string): string {
  const target = originForm(url)
  const query = target.indexOf('?')
  return query === -1 ? target : target.slice(0, query)
}
