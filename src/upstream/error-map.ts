// The one switch from transport failures and upstream replies to GW_ errors (reply-from style), keeping
// the original as `cause` for the logs. Consumers see a stable code and a safe text, never upstream HTML.
import { UpstreamBudgetError, UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError, withRetryAfter } from '../errors.js'

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED'
])

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** Short, secret-free words for logs and the breaker: an error code (its own or its cause's), or its name. */
export function describeError (err: unknown): string {
  const e = err as { code?: unknown, name?: unknown, cause?: { code?: unknown } } | null
  const code = e?.code ?? e?.cause?.code
  return typeof code === 'string' ? code : typeof e?.name === 'string' ? e.name : 'error'
}

export function isTimeout (err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name
  return name === 'TimeoutError' || TIMEOUT_CODES.has(codeOf(err) ?? '')
}

/** A network failure (its own code, or its cause's): reads may retry it, writes never do. */
export function isRetryableTransport (err: unknown): boolean {
  const code = codeOf(err) ?? codeOf((err as { cause?: unknown } | null)?.cause)
  return code !== undefined && RETRYABLE_CODES.has(code)
}

/** A 5xx: reads may retry it once, and the circuit breaker counts it as a failure. */
export function isServerError (status: number): boolean {
  return status >= 500 && status < 600
}

/**
 * Seconds in a Retry-After header (delta-seconds or an HTTP date), never more than `maxS`, or undefined.
 * The upstream's throttle (DRF) never asks for more than its rate's period; a longer wait (a bogus
 * header, a date years ahead) would stop every upstream call, or every login, for that long.
 */
export function retryAfterSeconds (header: string | undefined, maxS: number, now = Date.now()): number | undefined {
  if (header === undefined || header.trim() === '') return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds)) return seconds > 0 ? Math.min(seconds, maxS) : undefined
  const at = Date.parse(header)
  return Number.isNaN(at) || at <= now ? undefined : Math.min((at - now) / 1000, maxS)
}

/** Errors thrown by undici (or our deadline) while calling `endpoint`. */
export function mapTransportError (err: unknown, endpoint: string): Error {
  if (isTimeout(err)) {
    return Object.assign(new UpstreamTimeoutError(`The upstream did not answer ${endpoint}/ in time; try again later.`), { cause: err })
  }
  return Object.assign(new UpstreamError(`The upstream connection failed during ${endpoint}/; try again later.`), { cause: err })
}

/** No connection became free within UPSTREAM_POOL_WAIT_MS: the call was never sent. */
export class PoolWaitError extends Error {
  override name = 'PoolWaitError'
  code = 'POOL_WAIT_TIMEOUT'
}

/** What a call refused for want of a free connection answers: 503, nothing spent, come back soon. */
export function poolBusyError (endpoint: string, waitMs: number, cause: unknown): Error {
  return Object.assign(withRetryAfter(new UpstreamUnavailableError(
    `Every upstream connection is busy and none freed up for ${endpoint}/ in time; cached data is still served. Retry after the indicated time.`
  ), waitMs / 1000), { cause })
}

/** auth-token/ answered without a token: its status and Retry-After decide the login backoff. */
export class LoginRefusedError extends Error {
  override name = 'LoginRefusedError'
  constructor (readonly status: number, readonly retryAfterS: number | undefined) {
    super(`auth-token/ answered ${status}${status === 200 ? ' without a token' : ''}`)
  }
}

export class ResponseTooLargeError extends Error {
  override name = 'ResponseTooLargeError'
  code = 'RESPONSE_TOO_LARGE'
}

/**
 * A reply the gateway cannot use: 5xx, HTML, non-JSON, or a status the endpoint never sends. The
 * upstream's Retry-After, if it gave one, is passed on: consumers should not come back sooner.
 */
export function mapBadReply (endpoint: string, status: number, contentType: string, snippet: string, retryAfterS?: number): Error {
  const kind = contentType.includes('html') ? 'an HTML page' : contentType.includes('json') ? 'JSON' : `"${contentType || 'no content type'}"`
  const err = Object.assign(new UpstreamError(`The upstream answered ${endpoint}/ with status ${status} and ${kind}; try again later.`), {
    cause: { status, contentType, snippet: snippet.slice(0, 200) }
  })
  return retryAfterS === undefined ? err : withRetryAfter(err, retryAfterS)
}

export function budgetError (retryAfterS: number, reason: 'budget' | 'paused' | undefined): Error {
  const text = reason === 'paused'
    ? 'The upstream asked us to slow down; retry after the indicated time.'
    : 'The shared upstream budget is spent and nothing cached can answer; retry after the indicated time.'
  return withRetryAfter(new UpstreamBudgetError(text), retryAfterS)
}
