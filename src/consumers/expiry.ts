// Access for a stated length of time: a consumer's `expires` (schema.ts) is compared with the clock on
// every request, so an expiry that passes while the gateway runs takes effect at once, without a reload.
// In the last EXPIRY_WARNING_DAYS every answer carries `Sunset` (RFC 8594): the HTTP-date after which
// this key's requests will be refused.
import type { Consumer } from './schema.js'

export const DAY_MS = 86400000

export interface Expiry {
  /** The value as written in the consumers file (a date, or a UTC datetime). */
  expires: string
  /** Whole days left, rounded up (0 once expired). */
  daysLeft: number
  isExpired: boolean
}

/** The expiry of a consumer at `nowMs`; undefined when its access does not expire. */
export function expiryOf (consumer: Pick<Consumer, 'expires' | 'expiresAt'>, nowMs: number): Expiry | undefined {
  if (consumer.expiresAt === undefined || consumer.expires === undefined) return undefined
  const leftMs = consumer.expiresAt - nowMs
  return { expires: consumer.expires, daysLeft: Math.max(0, Math.ceil(leftMs / DAY_MS)), isExpired: leftMs <= 0 }
}

/** The problem detail (and compat `detail`) of an expired key: names the date, says what to do. */
export function expiredMessage (expires: string): string {
  const when = expires.length === 10 ? `on ${expires} (UTC)` : `at ${expires}`
  return `This key's access expired ${when}; ask the gateway's operator to extend it.`
}

/** The `Sunset` header value (RFC 8594, an IMF-fixdate) of an expiry instant. */
export function sunsetHeader (expiresAt: number): string {
  return new Date(expiresAt).toUTCString()
}
