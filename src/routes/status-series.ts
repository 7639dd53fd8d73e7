// A small in-memory time series for the status page, sampled from what the gateway already counts
// (plugins/metrics.ts): upstream calls by endpoint, cache results, the upstream budget last seen and
// token refreshes. One sample a minute, the last 24 hours (1,440 samples of a few numbers each). The
// counters are this replica's; the budget left is the global budget's, as this replica last saw it.
// A call counts once it reached the upstream: one that never left the gateway (`not_sent`) gave its
// budget token back and is in no consumer's usage, so it is not counted here either.
import type { Metrics } from '../plugins/metrics.js'
import type { UpstreamEndpoint } from '../upstream/endpoints.js'

export interface Sample {
  t: number
  /**
   * Upstream calls that spent the budget since this replica started: sent, whatever came back (a
   * status, a timeout, a broken connection, a reply over our limit). Logins are outside the budget.
   */
  calls: number
  /** Calls that reached the upstream since this replica started, by endpoint (logins included). */
  byEndpoint: Record<string, number>
  /** Cache reads answered from the cache (fresh or stale), and all cache reads that could have been. */
  hits: number
  lookups: number
  /** The global upstream budget's tokens left, as last seen; null before the first upstream call. */
  budgetLeft: number | null
  tokenRefreshesOk: number
}

export const SAMPLE_INTERVAL_MS = 60_000
/** The endpoint the token is fetched from: the upstream throttles it apart from the budget. */
export const LOGIN_ENDPOINT: UpstreamEndpoint = 'auth-token'
// gateway_upstream_calls_total's status for a call that never left the gateway (upstream/client.ts).
const NOT_SENT = 'not_sent'
export const KEEP_MS = 24 * 3600_000

interface Counted { values: Array<{ value: number, labels: Record<string, string | number | undefined> }> }

function sum (metric: Counted, match: (labels: Record<string, string | number | undefined>) => boolean = () => true): number {
  return metric.values.reduce((total, v) => match(v.labels) ? total + v.value : total, 0)
}

export type StatusSeries = ReturnType<typeof createStatusSeries>

export function createStatusSeries (metrics: Metrics, now: () => number = Date.now) {
  const samples: Sample[] = []
  const startedAt = now()
  let lastRefreshAt: number | null = null

  async function read (): Promise<Sample> {
    const [calls, cache, budget, refreshes] = await Promise.all([
      metrics.upstreamCalls.get(), metrics.cacheResults.get(), metrics.upstreamBudgetRemaining.get(), metrics.tokenRefreshes.get()
    ])
    const byEndpoint: Record<string, number> = {}
    for (const v of calls.values) {
      if (v.labels.status === NOT_SENT) continue
      const endpoint = String(v.labels.endpoint ?? 'unknown')
      byEndpoint[endpoint] = (byEndpoint[endpoint] ?? 0) + v.value
    }
    const isBudgeted = (l: Record<string, string | number | undefined>): boolean => l.endpoint !== LOGIN_ENDPOINT
    // The gauge reads 0 until it is first set: by the first budgeted call, sent or not (its take).
    const attempted = sum(calls, isBudgeted)
    return {
      t: now(),
      calls: sum(calls, (l) => isBudgeted(l) && l.status !== NOT_SENT),
      byEndpoint,
      hits: sum(cache, (l) => l.result === 'hit' || l.result === 'stale'),
      lookups: sum(cache, (l) => l.result === 'hit' || l.result === 'stale' || l.result === 'miss'),
      budgetLeft: attempted === 0 ? null : (budget.values[0]?.value ?? null),
      tokenRefreshesOk: sum(refreshes, (l) => l.result === 'ok')
    }
  }

  return {
    startedAt,
    /** When this replica last saw a token refresh succeed (to the sample), or null. */
    get lastRefreshAt (): number | null { return lastRefreshAt },
    /** The samples kept, oldest first. */
    get samples (): readonly Sample[] { return samples },
    /** A reading now, not kept. */
    read,
    /** Takes and keeps a sample; drops those older than KEEP_MS. */
    async sample (): Promise<Sample> {
      const s = await read()
      const previous = samples.at(-1)
      if (previous !== undefined && s.tokenRefreshesOk > previous.tokenRefreshesOk) lastRefreshAt = s.t
      samples.push(s)
      while (samples.length > 0 && (samples[0] as Sample).t < s.t - KEEP_MS) samples.shift()
      return s
    }
  }
}

export interface Bucket { t: number, v: number | null }

/**
 * Counter increases per bucket of `bucketMs` over [to - spanMs, to], from consecutive readings (each
 * increase counted at the later reading's time); buckets before the first reading are null.
 */
export function increases (readings: readonly Sample[], pick: (s: Sample) => number, to: number, spanMs: number, bucketMs: number): Bucket[] {
  const from = to - spanMs
  const count = Math.round(spanMs / bucketMs)
  const first = readings[0]?.t ?? to
  const buckets: Bucket[] = Array.from({ length: count }, (_, i) => {
    const end = from + (i + 1) * bucketMs
    return { t: end, v: end < first ? null : 0 }
  })
  for (let i = 1; i < readings.length; i++) {
    const cur = readings[i] as Sample
    const prev = readings[i - 1] as Sample
    if (cur.t <= from || cur.t > to) continue
    const k = Math.min(count - 1, Math.floor((cur.t - from) / bucketMs))
    const bucket = buckets[k] as Bucket
    bucket.v = (bucket.v ?? 0) + Math.max(0, pick(cur) - pick(prev))
  }
  return buckets
}

/** The increase of a counter since `since` (from the newest reading at or before it). */
export function increaseSince (readings: readonly Sample[], pick: (s: Sample) => number, since: number): number {
  const last = readings.at(-1)
  if (last === undefined) return 0
  let base = readings[0] as Sample
  for (const r of readings) { if (r.t <= since) base = r; else break }
  return pick(last) - pick(base)
}
