// The one switch from transport failures and upstream replies to GW_ errors (reply-from style), keeping
// the original as `cause` for the logs. Consumers see a stable code and a safe text, never upstream HTML.
import { UpstreamBudgetError, UpstreamError, UpstreamTimeoutError, withRetryAfter } from '../errors.js'

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED'
])
const RETRYABLE_STATUSES = new Set([502, 503, 504])

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
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

export function isRetryableStatus (status: number): boolean {
  return RETRYABLE_STATUSES.has(status)
}

/** Errors thrown by undici (or our deadline) while calling `endpoint`. */
export function mapTransportError (err: unknown, endpoint: string): Error {
  if (isTimeout(err)) {
    return Object.assign(new UpstreamTimeoutError(`The upstream did not answer ${endpoint}/ in time; try again later.`), { cause: err })
  }
  return Object.assign(new UpstreamError(`The upstream connection failed during ${endpoint}/; try again later.`), { cause: err })
}

export class ResponseTooLargeError extends Error {
  override name = 'ResponseTooLargeError'
  code = 'RESPONSE_TOO_LARGE'
}

/** A reply the gateway cannot use: 5xx, HTML, non-JSON, or a status the endpoint never sends. */
export function mapBadReply (endpoint: string, status: number, contentType: string, snippet: string): Error {
  const kind = contentType.includes('html') ? 'an HTML page' : contentType.includes('json') ? 'JSON' : `"${contentType || 'no content type'}"`
  return Object.assign(new UpstreamError(`The upstream answered ${endpoint}/ with status ${status} and ${kind}; try again later.`), {
    cause: { status, contentType, snippet: snippet.slice(0, 200) }
  })
}

export function budgetError (retryAfterS: number, reason: 'budget' | 'paused' | undefined): Error {
  const text = reason === 'paused'
    ? 'The upstream asked us to slow down; retry after the indicated time.'
    : 'The shared upstream budget is spent and nothing cached can answer; retry after the indicated time.'
  return withRetryAfter(new UpstreamBudgetError(text), retryAfterS)
}
