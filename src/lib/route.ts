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
