// What a load run is and what it yields, shared by the wrk, autocannon and open-loop generators.
export interface LoadRequest {
  method: 'GET' | 'POST'
  path: string
  headers: Record<string, string>
  body?: string
}

export interface LoadResult {
  requests: number
  durationS: number
  rps: number
  p50Ms: number
  p99Ms: number
  /** Socket errors and timeouts. */
  errors: number
  /** Answers outside 2xx/3xx: a run with any is reported as broken, not as fast. */
  non2xx: number
  bytes: number
}

export interface ClosedLoad {
  origin: string
  request: LoadRequest
  connections: number
  durationS: number
}

export interface LoadGenerator {
  name: string
  run: (load: ClosedLoad) => Promise<LoadResult>
}

/** Exact percentile (nearest rank) of latencies in ms; sorts in place. */
export function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] ?? 0
}

export function summarise (latenciesMs: number[], durationS: number, extra: Pick<LoadResult, 'errors' | 'non2xx' | 'bytes'>): LoadResult {
  const sorted = Float64Array.from(latenciesMs).sort()
  return {
    requests: sorted.length,
    durationS,
    rps: sorted.length / durationS,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    ...extra
  }
}
