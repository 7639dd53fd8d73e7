// Turns every error, 404 and validation failure into RFC 9457 application/problem+json with a stable
// `code`. 5xx bodies hide internals; the cause is logged.
import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { PROBLEM_TITLES } from '../errors.js'
import { ProblemSchema } from '../schemas/common.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'
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
  if (status === 404) return 'GW_NOT_FOUND'
  if (status === 401) return 'GW_UNAUTHENTICATED'
  if (status === 403) return 'GW_FORBIDDEN'
  if (status === 429) return 'GW_RATE_LIMITED'
  if (status === 503) return 'GW_UNAVAILABLE'
  if (status >= 400 && status < 500) return 'GW_VALIDATION'
  return 'GW_INTERNAL'
}

export function buildProblem (request: FastifyRequest, status: number, code: string, detail: string): Problem {
  return {
    type: TYPE_BASE + code.toLowerCase().replaceAll('_', '-'),
    title: PROBLEM_TITLES[code] ?? 'Error',
    status,
    detail,
    code,
    request_id: request.id
  }
}

export function sendProblem (reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type(PROBLEM_CONTENT_TYPE).send(problem)
}

export const problemHandlerPlugin = fp(async (app) => {
  // Routes refer to it as { $ref: 'Problem' } in their error responses (schemas/common.ts problems()).
  app.addSchema(ProblemSchema)
  app.setErrorHandler((err: FastifyError & { retryAfter?: number }, request, reply) => {
    const raw = err.statusCode ?? 500
    const status = raw >= 400 && raw < 600 ? raw : 500
    const code = codeOf(err, status)
    if (status >= 500) {
      request.log.error({ err }, 'request failed')
    } else {
      request.log.info({ code, detail: err.message }, 'request rejected')
    }
    // 5xx from our own code says nothing about internals; upstream/dependency errors carry safe texts.
    const isInternal = code === 'GW_INTERNAL'
    const detail = isInternal ? 'An internal error occurred; quote the request id when reporting it.' : err.message
    const problem = buildProblem(request, status, code, detail)
    if (err.validation !== undefined) {
      problem.errors = err.validation.map((v) => ({
        path: `${err.validationContext ?? ''}${v.instancePath}`,
        message: v.message ?? 'is invalid'
      }))
    }
    if (err.retryAfter !== undefined) reply.header('retry-after', String(err.retryAfter))
    return sendProblem(reply, problem)
  })

  app.setNotFoundHandler((request, reply) => {
    return sendProblem(reply, buildProblem(request, 404, 'GW_NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0] ?? ''}`))
  })
}, { name: 'problem-handler', fastify: '5.x' })
