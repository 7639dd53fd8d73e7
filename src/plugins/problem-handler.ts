// Turns every error into RFC 9457 application/problem+json with a stable `code`: thrown errors,
// validation failures, unknown routes (404), known paths with another method (405 + Allow), bad URLs,
// and the errors Node answers before a request exists (malformed HTTP, slow bodies: 408, huge headers)
// or before it reaches the app (an Expect it cannot meet: 417).
// 5xx bodies hide internals; the cause is logged.
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import FindMyWay, { type HTTPMethod } from 'find-my-way'
import type { FastifyError, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import type { FieldError } from '../errors.js'
import { PROBLEM_TITLES } from '../errors.js'
import { DATETIME_RULE } from '../lib/datetime.js'
import { ProblemSchema } from '../schemas/common.js'
import { routeOf, targetPath } from '../lib/route.js'
import { redactUrl } from '../logger.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

// Node's own test (lib/_http_server.js): an HTTP/1.1 Expect naming 100-continue is met (100 Continue);
// any other is not, and Node emits checkExpectation for it.
const EXPECT_CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i

/** Whether a request's Expect header asks for what the server does not do, as Node decides it. */
export function isExpectationFailed (expect: string | undefined, httpVersion: string): boolean {
  return expect !== undefined && httpVersion === '1.1' && !EXPECT_CONTINUE.test(expect)
}
const TYPE_BASE = 'https://atlas-gateway.dev/problems/'

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: string
  request_id: string
  errors?: Array<{ path: string, message: string }>
}

/** Fastify's own errors (body too large, bad content type…) mapped to our codes. */
function codeOf (err: FastifyError, status: number): string {
  if (typeof err.code === 'string' && err.code.startsWith('GW_')) return err.code
  if (err.validation !== undefined) return 'GW_VALIDATION'
  if (status === 413) return 'GW_PAYLOAD_TOO_LARGE'
  if (status === 415) return 'GW_UNSUPPORTED_MEDIA_TYPE'
  if (status === 408) return 'GW_REQUEST_TIMEOUT'
  if (status === 404) return 'GW_NOT_FOUND'
  if (status === 401) return 'GW_UNAUTHENTICATED'
  if (status === 403) return 'GW_FORBIDDEN'
  if (status === 429) return 'GW_RATE_LIMITED'
  if (status === 503) return 'GW_UNAVAILABLE'
  if (status >= 400 && status < 500) return 'GW_VALIDATION'
  return 'GW_INTERNAL'
}

// How deep a warning follows an error's causes (a write's lost reply → the upstream error → the socket's).
const MAX_CAUSES = 4

/**
 * The chain of `err`'s causes for a log line without a stack: each Error's message and code, down to the
 * transport's; a plain object (a reply's status and snippet, already scrubbed) as it is.
 */
function causesOf (err: Error): { cause?: unknown } {
  const chain: unknown[] = []
  for (let c: unknown = err.cause; c !== undefined && c !== null && chain.length < MAX_CAUSES; c = (c as { cause?: unknown }).cause) {
    chain.push(c instanceof Error ? { message: c.message, code: (c as { code?: unknown }).code } : c)
    if (!(c instanceof Error)) break
  }
  if (chain.length === 0) return {}
  return { cause: chain.length === 1 ? chain[0] : chain }
}

type AjvError = NonNullable<FastifyError['validation']>[number]

/** One Ajv failure as a field error: the field named in the path, the rule said in words. */
function fieldError (context: string, v: AjvError): FieldError {
  const base = `/${context}${v.instancePath}`
  const params = v.params as Record<string, unknown>
  switch (v.keyword) {
    case 'additionalProperties': return { path: `${base}/${String(params.additionalProperty)}`, message: 'is not a known field' }
    case 'required': return { path: `${base}/${String(params.missingProperty)}`, message: 'is required' }
    case 'format': return params.format === 'instant' ? { path: base, message: `must be ${DATETIME_RULE}` } : { path: base, message: v.message ?? 'is invalid' }
    default: return { path: base, message: v.message ?? 'is invalid' }
  }
}

/**
 * A request path as a detail may show it: without the query and with the value of any secret `;name=`
 * parameter redacted, as the access log shows URLs: the compat path takes `?token=<key>`, and an answer
 * never repeats a key.
 */
function shownPath (url: string): string {
  return redactUrl(targetPath(url))
}

export function buildProblem (request: FastifyRequest | undefined, status: number, code: string, detail: string): Problem {
  return {
    type: TYPE_BASE + code.toLowerCase().replaceAll('_', '-'),
    title: PROBLEM_TITLES[code] ?? 'Error',
    status,
    detail,
    code,
    request_id: request?.id ?? randomUUID()
  }
}

export function sendProblem (reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem)
}

export const problemHandlerPlugin = fp(async (app) => {
  // Routes refer to it as { $ref: 'Problem' } in their error responses (schemas/common.ts problems()).
  app.addSchema(ProblemSchema)
  app.setErrorHandler((err: FastifyError & { retryAfter?: number, errors?: FieldError[] }, request, reply) => {
    const raw = err.statusCode ?? 500
    const status = raw >= 400 && raw < 600 ? raw : 500
    const code = codeOf(err, status)
    if (code === 'GW_INTERNAL') {
      request.log.error({ err }, 'request failed')
    } else if (status >= 500) {
      // An outcome the gateway names (budget spent, upstream down or slow, Redis unavailable): a warning
      // with its code, not an error with a stack (about 1.5 KB a line, for every request of an outage).
      request.log.warn({ code, detail: err.message, ...causesOf(err) }, 'request failed')
    } else {
      request.log.info({ code, detail: err.message }, 'request rejected')
    }
    // 5xx from our own code says nothing about internals; upstream/dependency errors carry safe texts.
    const isInternal = code === 'GW_INTERNAL'
    const detail = isInternal ? 'An internal error occurred; quote the request id when reporting it.' : err.message
    const problem = buildProblem(request, status, code, detail)
    if (err.validation !== undefined) {
      problem.errors = err.validation.map((v) => fieldError(err.validationContext ?? '', v))
      const [first] = problem.errors
      if (first !== undefined) problem.detail = `${first.path.slice(1)} ${first.message}`
    } else if (err.errors !== undefined) {
      problem.errors = err.errors
    }
    if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter))
    return sendProblem(reply, problem)
  })

  // Every route is also entered in a router of our own, so that a path that exists under another method
  // answers 405 with Allow instead of 404.
  const router = FindMyWay()
  // Static paths and their methods: `/v1/objects/query` is a POST route even though GET
  // `/v1/objects/:id` would match the same path as an id; a GET there is a 405, not a bad id.
  const staticRoutes = new Map<string, string[]>()
  // Route templates with a parameter or wildcard, known at registration (not tested per request).
  const parametric = new Set<string>()
  app.addHook('onRoute', (route) => {
    const isParametric = /[:*]/.test(route.url)
    if (isParametric) parametric.add(route.url)
    for (const method of [route.method].flat()) {
      if (!isParametric) staticRoutes.set(route.url, [...(staticRoutes.get(route.url) ?? []), method])
      if (router.hasRoute(method as HTTPMethod, route.url)) continue
      router.on(method as HTTPMethod, route.url, () => {})
    }
  })
  // A callback hook: it answers with reply.send and then does not call done.
  app.addHook('onRequest', (request, reply, done) => {
    // HTTP/1.1 needs a Host header (RFC 9112 §3.2); Node's own check answers with an empty 400.
    if (request.headers.host === undefined && request.raw.httpVersion === '1.1') {
      sendProblem(reply, buildProblem(request, 400, 'GW_VALIDATION', 'An HTTP/1.1 request needs a Host header.'))
      return
    }
    // An expectation the gateway cannot meet (anything but 100-continue): Node's own answer is an empty
    // 417, so app.ts routes these requests here instead (RFC 9110 §10.1.1).
    if (isExpectationFailed(request.headers.expect, request.raw.httpVersion)) {
      sendProblem(reply, buildProblem(request, 417, 'GW_EXPECTATION_FAILED', 'The Expect header asks for something other than 100-continue, which this server does not do.'))
      return
    }
    // Unmatched requests are the not-found handlers' (each dialect has its own); this is for a path that
    // matched a parametric route under this method while a static route of that path takes others.
    if (request.is404 || !parametric.has(routeOf(request).url ?? '')) return done()
    const query = request.url.indexOf('?')
    const path = query < 0 ? request.url : request.url.slice(0, query)
    const methods = staticRoutes.get(path)
    if (methods === undefined || methods.includes(request.method)) return done()
    reply.header('allow', methods.join(', '))
    sendProblem(reply, buildProblem(request, 405, 'GW_METHOD_NOT_ALLOWED', `${shownPath(path)} does not take ${request.method}; it takes ${methods.join(', ')}.`))
  })

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    // A static path takes its own methods, though a parametric route of another method would match it
    // (GET /v1/objects/:id and PUT /v1/objects/query). A route of this method that matched and found
    // nothing (a static file that is not there): not found.
    const isMethodWrong = router.find(request.method as HTTPMethod, path) === null
    const staticMethods = staticRoutes.get(path)
    const allowed = staticMethods !== undefined
      ? staticMethods.filter((m) => m !== request.method)
      : isMethodWrong ? METHODS.filter((m) => m !== request.method && router.find(m, path) !== null) : []
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '))
      return sendProblem(reply, buildProblem(request, 405, 'GW_METHOD_NOT_ALLOWED', `${shownPath(path)} does not take ${request.method}; it takes ${allowed.join(', ')}.`))
    }
    return sendProblem(reply, buildProblem(request, 404, 'GW_NOT_FOUND', `No route ${request.method} ${shownPath(path)}`))
  })
}, { name: 'problem-handler', fastify: '5.x' })

const METHODS: HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

// What is wrong with a URL Fastify cannot route, in words. Its own messages quote the raw URL, query
// (and so a `?token=<key>`) included.
const URL_FAULTS: Readonly<Record<string, string>> = {
  FST_ERR_BAD_URL: 'a %-escape in it is malformed or does not decode as UTF-8',
  FST_ERR_MAX_PARAM_LENGTH: 'one of its segments is longer than 100 characters'
}

/** A dialect's own answer to a URL Fastify cannot route; false when the URL is not that dialect's. */
export type UnroutableAnswer = (request: FastifyRequest, reply: FastifyReply) => boolean

/**
 * Fastify's framework errors (a URL it cannot decode, an over-long parameter) as problems, or as the
 * dialect of the path answers them (`dialect`: the compatibility path's 404).
 */
export function frameworkErrorsWith (dialect?: UnroutableAnswer): NonNullable<FastifyServerOptions['frameworkErrors']> {
  return (err, request, reply) => {
    // Sent before any onRequest hook, so the headers every answer carries (app.ts) are set here.
    reply.header('x-request-id', request.id)
    reply.header('x-content-type-options', 'nosniff')
    if (dialect?.(request, reply) === true) return
    const fault = URL_FAULTS[err.code]
    const detail = fault === undefined ? err.message : `The request URL cannot be read: ${shownPath(request.url)}: ${fault}.`
    sendProblem(reply, buildProblem(request, 400, 'GW_VALIDATION', detail))
  }
}

/**
 * Errors Node answers on the socket before a request exists: a malformed request (400), a body that
 * arrives slower than REQUEST_TIMEOUT_MS (408), headers over Node's limit (431).
 */
export function clientErrorHandler (err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, code, detail] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    ? [408, 'GW_REQUEST_TIMEOUT', 'The request did not arrive in time.']
    : err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'GW_HEADERS_TOO_LARGE', 'The request headers are too large.']
      : [400, 'GW_VALIDATION', 'The request is not valid HTTP.']
  const problem = buildProblem(undefined, status, code, detail)
  const body = JSON.stringify(problem)
  if (socket.writable) {
    // X-Request-Id and nosniff as on every answer: the problem's request_id (a fresh UUID, no request was read).
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
      `X-Request-Id: ${problem.request_id}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy(err)
}
