// Usage per consumer per UTC day, as stored (flat counters named below) and as reported (one row per
// consumer and day, with the cache hit ratio worked out). Shared by the plugin, the store, the admin
// route and `npm run usage`.
import { toCsv } from '../lib/csv.js'
import { parseInstant } from '../lib/datetime.js'

/** Counters of one consumer on one day: `requests`, `requests:<class>`, `rejected:<kind>`, … */
export type Counters = Record<string, number>

export const COUNTER = {
  requests: 'requests',
  requestsOf: (routeClass: string): string => `requests:${routeClass}`,
  units: 'units',
  upstreamCalls: 'upstream_calls',
  cacheLookups: 'cache_lookups',
  cacheHits: 'cache_hits',
  writes: 'writes',
  errors: 'errors',
  clientErrors: 'client_errors',
  rejectedOf: (kind: string): string => `rejected:${kind}`
} as const

export interface UsageRow {
  day: string
  consumer: string
  requests: number
  requests_by_class: Record<string, number>
  units: number
  upstream_calls: number
  cache_lookups: number
  cache_hits: number
  /** Hits (fresh or stale) over lookups; null when nothing was looked up. */
  cache_hit_ratio: number | null
  writes: number
  errors: number
  client_errors: number
  rejections: Record<string, number>
}

export function toRow (day: string, consumer: string, c: Counters): UsageRow {
  const byPrefix = (prefix: string): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const [name, n] of Object.entries(c)) if (name.startsWith(prefix)) out[name.slice(prefix.length)] = n
    return out
  }
  const lookups = c[COUNTER.cacheLookups] ?? 0
  const hits = c[COUNTER.cacheHits] ?? 0
  return {
    day,
    consumer,
    requests: c[COUNTER.requests] ?? 0,
    requests_by_class: byPrefix('requests:'),
    units: c[COUNTER.units] ?? 0,
    upstream_calls: c[COUNTER.upstreamCalls] ?? 0,
    cache_lookups: lookups,
    cache_hits: hits,
    cache_hit_ratio: lookups === 0 ? null : Math.round((hits / lookups) * 10000) / 10000,
    writes: c[COUNTER.writes] ?? 0,
    errors: c[COUNTER.errors] ?? 0,
    client_errors: c[COUNTER.clientErrors] ?? 0,
    rejections: byPrefix('rejected:')
  }
}

/** `2026-11` → every UTC day of that month, `2026-11-01` … `2026-11-30`; undefined for a bad month. */
export function daysOfMonth (month: string): string[] | undefined {
  const match = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month)
  if (match === null) return undefined
  const year = Number(match[1])
  const index = Number(match[2]) - 1
  const count = new Date(Date.UTC(year, index + 1, 0)).getUTCDate()
  return Array.from({ length: count }, (_, k) => `${month}-${String(k + 1).padStart(2, '0')}`)
}

/**
 * Every UTC day from `from` to `to` (inclusive, YYYY-MM-DD); undefined when they are not dates, `to` is
 * before `from`, or they are more than `max` days apart (refused rather than cut short). `max` days apart
 * is `max` + 1 days: what the store keeps with a retention of `max` (today and the `max` days before).
 */
export function daysBetween (from: string, to: string, max: number): string[] | undefined {
  // Calendar-strict: 2026-02-30 is refused, not read as 2 March.
  const isDate = (text: string): boolean => /^\d{4}-\d{2}-\d{2}$/.test(text)
  const start = isDate(from) ? parseInstant(from) : undefined
  const end = isDate(to) ? parseInstant(to) : undefined
  if (start === undefined || end === undefined || end < start || (end - start) / 86400000 > max) return undefined
  const days: string[] = []
  for (let ms = start; ms <= end; ms += 86400000) days.push(new Date(ms).toISOString().slice(0, 10))
  return days
}

export const USAGE_CSV_COLUMNS = [
  'day', 'consumer', 'requests', 'requests_by_class', 'units', 'upstream_calls', 'cache_lookups', 'cache_hits',
  'cache_hit_ratio', 'writes', 'errors', 'client_errors', 'rejections'
] as const

/** CSV of usage rows; the per-class and per-kind counts as `name=n` pairs separated by spaces. */
export function usageCsv (rows: readonly UsageRow[]): string {
  const pairs = (o: Record<string, number>): string => Object.entries(o).sort().map(([k, n]) => `${k}=${n}`).join(' ')
  return toCsv(USAGE_CSV_COLUMNS, rows, (row, column) => {
    const value = row[column as keyof UsageRow]
    return typeof value === 'object' && value !== null ? pairs(value) : value
  })
}
