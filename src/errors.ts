// Every error the gateway sends, one place. Codes are stable: consumers branch on them.
import createError from '@fastify/error'

export const UnauthenticatedError = createError<'GW_UNAUTHENTICATED', 401, [string]>('GW_UNAUTHENTICATED', '%s', 401)
export const ForbiddenError = createError<'GW_FORBIDDEN', 403, [string]>('GW_FORBIDDEN', '%s', 403)
export const ValidationError = createError<'GW_VALIDATION', 400, [string]>('GW_VALIDATION', '%s', 400)
export const NotFoundError = createError<'GW_NOT_FOUND', 404, [string]>('GW_NOT_FOUND', '%s', 404)
export const PayloadTooLargeError = createError<'GW_PAYLOAD_TOO_LARGE', 413, [string]>('GW_PAYLOAD_TOO_LARGE', '%s', 413)
export const RateLimitedError = createError<'GW_RATE_LIMITED', 429, [string]>('GW_RATE_LIMITED', '%s', 429)
export const QuotaExhaustedError = createError<'GW_QUOTA_EXHAUSTED', 429, [string]>('GW_QUOTA_EXHAUSTED', '%s', 429)
export const UpstreamBudgetError = createError<'GW_UPSTREAM_BUDGET', 503, [string]>('GW_UPSTREAM_BUDGET', '%s', 503)
export const UpstreamAuthError = createError<'GW_UPSTREAM_AUTH', 502, [string]>('GW_UPSTREAM_AUTH', '%s', 502)
export const UpstreamError = createError<'GW_UPSTREAM_ERROR', 502, [string]>('GW_UPSTREAM_ERROR', '%s', 502)
export const UpstreamTimeoutError = createError<'GW_UPSTREAM_TIMEOUT', 504, [string]>('GW_UPSTREAM_TIMEOUT', '%s', 504)
export const UpstreamUnavailableError = createError<'GW_UPSTREAM_UNAVAILABLE', 503, [string]>('GW_UPSTREAM_UNAVAILABLE', '%s', 503)
export const UpstreamAuthBackoffError = createError<'GW_UPSTREAM_AUTH_BACKOFF', 503, [string]>('GW_UPSTREAM_AUTH_BACKOFF', '%s', 503)
export const UnavailableError = createError<'GW_UNAVAILABLE', 503, [string]>('GW_UNAVAILABLE', '%s', 503)
export const MethodNotAllowedError = createError<'GW_METHOD_NOT_ALLOWED', 405, [string]>('GW_METHOD_NOT_ALLOWED', '%s', 405)
export const NotAcceptableError = createError<'GW_NOT_ACCEPTABLE', 406, [string]>('GW_NOT_ACCEPTABLE', '%s', 406)
export const UnsupportedMediaTypeError = createError<'GW_UNSUPPORTED_MEDIA_TYPE', 415, [string]>('GW_UNSUPPORTED_MEDIA_TYPE', '%s', 415)
export const IdempotencyInProgressError = createError<'GW_IDEMPOTENCY_IN_PROGRESS', 409, [string]>('GW_IDEMPOTENCY_IN_PROGRESS', '%s', 409)
export const IdempotencyKeyReusedError = createError<'GW_IDEMPOTENCY_KEY_REUSED', 422, [string]>('GW_IDEMPOTENCY_KEY_REUSED', '%s', 422)
export const IdempotencyKeyUnreadableError = createError<'GW_IDEMPOTENCY_KEY_UNREADABLE', 409, [string]>('GW_IDEMPOTENCY_KEY_UNREADABLE', '%s', 409)
export const WriteOutcomeUnknownError = createError<'GW_WRITE_OUTCOME_UNKNOWN', 504, [string]>('GW_WRITE_OUTCOME_UNKNOWN', '%s', 504)

/** One failing input, as problem documents list them: `path` is `/<part>/<field>`, e.g. `/body/id`. */
export interface FieldError { path: string, message: string }

/** A 400 naming each failing field. */
export function invalidFields (detail: string, errors: FieldError[]): Error & { errors: FieldError[] } {
  return Object.assign(new ValidationError(detail), { errors })
}

/** Titles of the problem documents, by code (RFC 9457 `title`: the same for every occurrence). */
export const PROBLEM_TITLES: Readonly<Record<string, string>> = {
  GW_UNAUTHENTICATED: 'Authentication required',
  GW_FORBIDDEN: 'Not allowed',
  GW_VALIDATION: 'Invalid request',
  GW_NOT_FOUND: 'Not found',
  GW_PAYLOAD_TOO_LARGE: 'Payload too large',
  GW_RATE_LIMITED: 'Rate limit exceeded',
  GW_QUOTA_EXHAUSTED: 'Quota exhausted',
  GW_UPSTREAM_BUDGET: 'Upstream budget spent',
  GW_UPSTREAM_AUTH: 'Upstream authentication failed',
  GW_UPSTREAM_ERROR: 'Upstream error',
  GW_UPSTREAM_TIMEOUT: 'Upstream timeout',
  GW_UPSTREAM_UNAVAILABLE: 'Upstream unavailable',
  GW_UPSTREAM_AUTH_BACKOFF: 'Upstream login backing off',
  GW_UNAVAILABLE: 'Service unavailable',
  GW_METHOD_NOT_ALLOWED: 'Method not allowed',
  GW_NOT_ACCEPTABLE: 'Not acceptable',
  GW_REQUEST_TIMEOUT: 'Request timeout',
  GW_UNSUPPORTED_MEDIA_TYPE: 'Unsupported media type',
  GW_IDEMPOTENCY_IN_PROGRESS: 'Request with this Idempotency-Key in progress',
  GW_IDEMPOTENCY_KEY_REUSED: 'Idempotency-Key reused for another request',
  GW_IDEMPOTENCY_KEY_UNREADABLE: 'Idempotency-Key record unreadable',
  GW_WRITE_OUTCOME_UNKNOWN: 'Write outcome unknown',
  GW_HEADERS_TOO_LARGE: 'Request headers too large',
  GW_EXPECTATION_FAILED: 'Expectation failed',
  GW_INTERNAL: 'Internal error'
}

/** Errors that tell the caller when to come back carry it here; the problem handler sets `Retry-After`. */
export function withRetryAfter<E extends Error> (err: E, seconds: number): E & { retryAfter: number } {
  return Object.assign(err, { retryAfter: Math.max(1, Math.ceil(seconds)) })
}
