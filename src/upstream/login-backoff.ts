// The backoff between failed upstream logins (auth-token/). auth-token/ allows 10 anonymous calls an
// hour and counts failed ones, so a gateway that logs in again on every miss with a wrong password
// gets itself throttled for an hour and stays locked out after the password is fixed. After the n-th
// failure in a row the next attempt waits min(max, base·2^(n-1)), less up to half of it at random (so
// replicas and restarts do not line up), and never less than the upstream's Retry-After. With Redis the
// record is shared, next to the token lock: the replica holding the lock writes it before releasing the
// lock, so the whole deployment makes at most one attempt per step.
import type { Redis } from 'ioredis'
import { UpstreamAuthBackoffError, withRetryAfter } from '../errors.js'

export interface LoginBackoffOptions {
  /** Wait after the first failure. */
  baseMs: number
  /** Longest wait. */
  maxMs: number
}

export const DEFAULT_LOGIN_BACKOFF: LoginBackoffOptions = { baseMs: 60_000, maxMs: 1_800_000 }

/** Why logins are backing off: refused credentials, a 429, a network failure or 5xx, anything else. */
export type BackoffReason = 'credentials' | 'throttled' | 'unreachable' | 'error'

interface FailureRecord {
  /** Epoch ms before which no login is tried. */
  untilMs: number
  /** Failed logins in a row. */
  failures: number
  reason: BackoffReason
}

/** Token refresh as this replica last saw it, for /healthz and the metrics. */
export interface RefreshState {
  /**
   * `ok`: no failed login since the last good one; `backoff`: logins wait `retryAfterS` more seconds;
   * `failing`: the last login failed and its wait is over, so the next miss that needs a token tries.
   */
  state: 'ok' | 'backoff' | 'failing'
  reason?: BackoffReason
  retryAfterS: number
  failures: number
}

/** Redis access through the token manager's guard: a failure or a skipped Redis yields `fallback`. */
export type GuardedRedis = <T>(fn: (redis: Redis) => Promise<T>, fallback: T) => Promise<T>

// A failure count outlives the longest wait, so the next failure doubles it; a success deletes it.
const FAILURES_TTL_FACTOR = 4
const TEXTS: Record<BackoffReason, string> = {
  credentials: 'The upstream refused the gateway\'s login; the operator must check ATLAS_USERNAME and ATLAS_PASSWORD.',
  throttled: 'The upstream throttled the gateway\'s login.',
  unreachable: 'The upstream could not be reached to refresh the gateway\'s token.',
  error: 'The gateway\'s upstream token could not be refreshed.'
}

/**
 * What a failed login says about the next one: the reason and the upstream's Retry-After, or undefined
 * when no login reached the upstream (its breaker was open, or no connection was free), which is not a
 * step of the backoff.
 */
export function classifyLoginError (err: unknown): { reason: BackoffReason, retryAfterS: number } | undefined {
  const e = (err ?? {}) as { code?: unknown, status?: unknown, retryAfterS?: unknown }
  if (e.code === 'GW_UPSTREAM_UNAVAILABLE') return undefined
  const status = typeof e.status === 'number' ? e.status : undefined
  const retryAfterS = typeof e.retryAfterS === 'number' && e.retryAfterS > 0 ? e.retryAfterS : 0
  if (status === 429) return { reason: 'throttled', retryAfterS }
  if (status === 400 || status === 401 || status === 403) return { reason: 'credentials', retryAfterS }
  // Without a status: a network failure or timeout (mapped to GW_UPSTREAM_*), or a reply without a token.
  const isNetwork = status === undefined && typeof e.code === 'string' && e.code.startsWith('GW_UPSTREAM')
  if (isNetwork || (status !== undefined && status >= 500)) return { reason: 'unreachable', retryAfterS }
  return { reason: 'error', retryAfterS }
}

export function createLoginBackoff (opts: LoginBackoffOptions, redis?: { run: GuardedRedis, prefix: string }, now: () => number = Date.now, random: () => number = Math.random) {
  // One hash tag: a success deletes both in one DEL, which a Redis Cluster runs only within one slot.
  const recordKey = `${redis?.prefix ?? ''}{token}:backoff`
  const failuresKey = `${redis?.prefix ?? ''}{token}:failures`
  let last: FailureRecord | undefined
  let failures = 0

  function parse (raw: string | null): FailureRecord | undefined {
    if (raw === null) return undefined
    try {
      const r = JSON.parse(raw) as Partial<FailureRecord>
      if (typeof r.untilMs !== 'number' || typeof r.failures !== 'number' || typeof r.reason !== 'string' || !(r.reason in TEXTS)) return undefined
      return { untilMs: r.untilMs, failures: r.failures, reason: r.reason }
    } catch {
      return undefined
    }
  }

  const active = (): FailureRecord | undefined => (last !== undefined && last.untilMs > now() ? last : undefined)

  return {
    /** The wait in force on this replica, if any. */
    active,

    /** The wait in force for the deployment (the shared record, adopted here), if any. */
    async readShared (): Promise<FailureRecord | undefined> {
      if (redis === undefined) return active()
      // undefined: Redis did not answer, keep the local view; null: no record in force.
      const raw = await redis.run<string | null | undefined>((r) => r.get(recordKey), undefined)
      const shared = raw === undefined ? undefined : parse(raw)
      if (shared !== undefined && (last === undefined || shared.untilMs > last.untilMs)) {
        last = shared
        failures = shared.failures
      } else if (raw === null && active() !== undefined) {
        // Another replica logged in and cleared it before the wait was over.
        last = undefined
        failures = 0
      }
      return active()
    },

    /** Records a failed login (call it holding the token lock) and returns the wait it starts. */
    async recordFailure (reason: BackoffReason, retryAfterS: number): Promise<FailureRecord> {
      const ttlMs = opts.maxMs * FAILURES_TTL_FACTOR
      const counted = redis === undefined
        ? failures + 1
        : await redis.run(async (r) => {
          const replies = await r.multi().incr(failuresKey).pexpire(failuresKey, ttlMs).exec()
          const n = replies?.[0]?.[1]
          return typeof n === 'number' ? n : failures + 1
        }, failures + 1)
      failures = counted
      const step = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(failures - 1, 52))
      const waitMs = Math.max(Math.ceil(step * (1 - random() / 2)), retryAfterS * 1000)
      last = { untilMs: now() + waitMs, failures, reason }
      const record = JSON.stringify(last)
      await redis?.run(async (r) => { await r.set(recordKey, record, 'PX', waitMs) }, undefined)
      return last
    },

    /** After a good login; also clears a count left by other replicas (logins are rare, so always). */
    async recordSuccess (): Promise<void> {
      failures = 0
      last = undefined
      await redis?.run(async (r) => { await r.del(recordKey, failuresKey) }, undefined)
    },

    /** 503 GW_UPSTREAM_AUTH_BACKOFF with the wait left as Retry-After. */
    error (record: FailureRecord): Error {
      const text = `${TEXTS[record.reason]} The gateway tries again after the indicated time; cached data is still served.`
      return withRetryAfter(new UpstreamAuthBackoffError(text), (record.untilMs - now()) / 1000)
    },

    state (): RefreshState {
      const waiting = active()
      if (waiting !== undefined) return { state: 'backoff', reason: waiting.reason, retryAfterS: Math.ceil((waiting.untilMs - now()) / 1000), failures }
      if (last !== undefined) return { state: 'failing', reason: last.reason, retryAfterS: 0, failures }
      return { state: 'ok', retryAfterS: 0, failures }
    }
  }
}
