// DRF's SimpleRateThrottle: a sliding window of request times per key, kept in
// process memory like the upstream's LocMemCache. Keys are `user:<id>`, `admin:<id>` or `anon:<ident>`.
import type { Rate } from './options.js'
import { DETAILS } from '../upstream/endpoints.js'

export interface ThrottleDecision {
  allowed: boolean
  /** Seconds until a request is available, rounded up; null when DRF cannot say. */
  waitS: number | null
}

interface History {
  /** Request times, oldest first; entries before `head` have left the window. */
  times: number[]
  head: number
}

// Compact a history once this many expired entries have piled up in front of it.
const COMPACT_AFTER = 1024

export class SlidingWindowThrottle {
  private readonly histories = new Map<string, History>()

  /**
   * allow_request: records the request when it is allowed. DRF keeps the history newest first and
   * filters it on every call; oldest first with a moving head gives the same answers in O(1) amortised,
   * so the sandbox's cost per request does not grow with the requests it has served.
   */
  check (key: string, rate: Rate, nowMs: number): ThrottleDecision {
    const durationMs = rate.durationS * 1000
    let history = this.histories.get(key)
    if (history === undefined) {
      history = { times: [], head: 0 }
      this.histories.set(key, history)
    }
    const { times } = history
    while (history.head < times.length && (times[history.head] as number) <= nowMs - durationMs) history.head++
    if (history.head >= COMPACT_AFTER) {
      history.times = times.slice(history.head)
      history.head = 0
    }
    const count = history.times.length - history.head
    if (count >= rate.num) return { allowed: false, waitS: wait(history.times[history.head], count, rate, nowMs) }
    history.times.push(nowMs)
    return { allowed: true, waitS: null }
  }

  reset (): void {
    this.histories.clear()
  }
}

/** SimpleRateThrottle.wait: the oldest entry's remaining time, shared among the requests left. */
function wait (oldest: number | undefined, count: number, rate: Rate, nowMs: number): number | null {
  const remainingS = oldest === undefined ? rate.durationS : rate.durationS - (nowMs - oldest) / 1000
  const available = rate.num - count + 1
  if (available <= 0) return null
  return Math.ceil(remainingS / available)
}

/** The 429 text of rest_framework.exceptions.Throttled. */
export function throttledDetail (waitS: number | null): string {
  return DETAILS.throttled(waitS)
}
