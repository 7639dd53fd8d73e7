// The circuit breaker in front of the upstream. Closed, it counts consecutive failures (a network error
// or a 5xx reply); at the threshold it opens, and every call fails fast with 503 GW_UPSTREAM_UNAVAILABLE
// and a Retry-After, spending neither budget nor time, while the cache serves what it holds
// (stale-if-error treats GW_UPSTREAM_* errors as upstream failures). After the open period it turns
// half-open: one probe at a time, at most one per probe interval; a probe that gets any HTTP answer
// below 500 closes it, a failed probe opens it again. Each replica keeps its own breaker: it learns of
// an outage from its own first few calls, and a shared one would add a Redis round trip to every call.
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamUnavailableError, withRetryAfter } from '../errors.js'
import type { Metrics } from '../plugins/metrics.js'

export type BreakerState = 'closed' | 'open' | 'half_open'

const STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  threshold: number
  openMs: number
  probeIntervalMs: number
  metrics: Metrics
  log: FastifyBaseLogger
  now?: () => number
}

/** Leave to make one upstream call; settle it exactly once with the call's outcome. */
export interface Permit {
  /** The upstream answered (any status below 500). */
  success: () => void
  /** A network failure or a 5xx reply. */
  failure: (why: string) => void
  /** The call was not made after all (budget, quota, no free connection): says nothing of the upstream. */
  cancel: () => void
}

export type Breaker = ReturnType<typeof createBreaker>

export function createBreaker (opts: BreakerOptions) {
  const now = opts.now ?? Date.now
  const { metrics, log } = opts
  let state: BreakerState = 'closed'
  let failures = 0
  let openUntil = 0
  let nextProbeAt = 0
  let isProbing = false
  let timer: NodeJS.Timeout | undefined
  metrics.upstreamBreakerState.set(STATE_VALUE.closed)

  function moveTo (next: BreakerState, why: string): void {
    if (next === state) return
    const from = state
    state = next
    clearTimeout(timer)
    timer = undefined
    if (next === 'open') {
      openUntil = now() + opts.openMs
      // The half-open state is entered on time, so the gauge and the log show it without waiting for a call.
      timer = setTimeout(() => moveTo('half_open', 'open period over'), opts.openMs)
      timer.unref()
    }
    if (next === 'half_open') nextProbeAt = 0
    if (next === 'closed') failures = 0
    metrics.upstreamBreakerState.set(STATE_VALUE[next])
    metrics.upstreamBreakerTransitions.inc({ from, to: next })
    const fields = { from, to: next, why, consecutiveFailures: failures }
    if (next === 'closed') log.info(fields, 'upstream circuit breaker closed')
    else log.warn(fields, `upstream circuit breaker ${next === 'open' ? 'opened' : 'half-open'}`)
  }

  function refuse (retryAfterMs: number): never {
    metrics.upstreamBreakerRejections.inc()
    throw withRetryAfter(new UpstreamUnavailableError(
      'The upstream is failing and the gateway has paused calls to it; cached data is still served. Retry after the indicated time.'
    ), retryAfterMs / 1000)
  }

  function permit (isProbe: boolean): Permit {
    let isSettled = false
    const settle = (fn: () => void) => () => {
      if (isSettled) return
      isSettled = true
      if (isProbe) isProbing = false
      fn()
    }
    return {
      success: settle(() => {
        failures = 0
        if (state !== 'closed') moveTo('closed', isProbe ? 'probe answered' : 'a call answered')
      }),
      failure: (why) => settle(() => {
        failures++
        if (state === 'half_open' && isProbe) moveTo('open', `probe failed: ${why}`)
        else if (state === 'closed' && failures >= opts.threshold) moveTo('open', why)
      })(),
      cancel: settle(() => {})
    }
  }

  return {
    /** Leave to call the upstream now, or a thrown 503 GW_UPSTREAM_UNAVAILABLE with Retry-After. */
    acquire (): Permit {
      if (state === 'closed') return permit(false)
      const t = now()
      if (state === 'open') {
        if (t < openUntil) refuse(openUntil - t)
        moveTo('half_open', 'open period over')
      }
      if (isProbing || t < nextProbeAt) refuse(Math.max(nextProbeAt - t, opts.probeIntervalMs))
      isProbing = true
      nextProbeAt = t + opts.probeIntervalMs
      return permit(true)
    },
    get state (): BreakerState { return state },
    close (): void { clearTimeout(timer) }
  }
}
