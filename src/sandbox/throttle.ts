// DRF's SimpleRateThrottle (contract §4): a sliding window of request times per key, kept in
// process memory like the upstream's LocMemCache. Keys are `user:<id>`, `admin:<id>` or `anon:<ident>`.
import type { Rate } from './options.js'

export interface ThrottleDecision {
  allowed: boolean
  /** Seconds until a request is available, rounded up; null when DRF cannot say. */
  waitS: number | null
}

export class SlidingWindowThrottle {
  // Newest first, as DRF's history list.
  private readonly histories = new Map<string, number[]>()

  /** allow_request: records the request when it is allowed. */
  check (key: string, rate: Rate, nowMs: number): ThrottleDecision {
    const durationMs = rate.durationS * 1000
    const history = (this.histories.get(key) ?? []).filter((t) => t > nowMs - durationMs)
    if (history.length >= rate.num) {
      this.histories.set(key, history)
      return { allowed: false, waitS: wait(history, rate, nowMs) }
    }
    history.unshift(nowMs)
    this.histories.set(key, history)
    return { allowed: true, waitS: null }
  }

  reset (): void {
    this.histories.clear()
  }
}

/** SimpleRateThrottle.wait: the oldest entry's remaining time, shared among the requests left. */
function wait (history: number[], rate: Rate, nowMs: number): number | null {
  const oldest = history[history.length - 1]
  const remainingS = oldest === undefined ? rate.durationS : rate.durationS - (nowMs - oldest) / 1000
  const available = rate.num - history.length + 1
  if (available <= 0) return null
  return Math.ceil(remainingS / available)
}

/** The 429 text of rest_framework.exceptions.Throttled. */
export function throttledDetail (waitS: number | null): string {
  if (waitS === null) return 'Request was throttled.'
  return `Request was throttled. Expected available in ${waitS} ${waitS === 1 ? 'second' : 'seconds'}.`
}
