// Local filtering of tables fetched wide: the upstream ignores most filters or applies them
// differently, and one wide upstream read per freshness window serves every consumer's variant.
import { UpstreamError } from '../../errors.js'
import { parseInstantMicros } from '../../lib/datetime.js'
import { replyFields } from '../../upstream/endpoints.js'

export type Row = Record<string, unknown>

export function rowsOf (value: unknown): Row[] {
  if (!Array.isArray(value)) throw new UpstreamError('The upstream sent something other than a list.')
  return value as Row[]
}

/**
 * A timestamp from the upstream in microseconds (its precision): ISO datetimes (UTC, sometimes naive) or
 * dates; null when absent or unreadable.
 */
export function timeOf (value: unknown): number | null {
  if (typeof value !== 'string') return null
  return parseInstantMicros(value.endsWith('z') ? `${value.slice(0, -1)}Z` : value) ?? null
}

/** Rows whose `field` is after `since`: strictly (detection lists) or inclusively (VRA tables), as upstream. */
export function filterSince (rows: Row[], field: string, since: string | undefined, isInclusive: boolean): Row[] {
  if (since === undefined) return rows
  // `since` has passed validation (lib/datetime.ts), so it parses.
  const min = parseInstantMicros(since) as number
  return rows.filter((r) => {
    const t = timeOf(r[field])
    return t !== null && (isInclusive ? t >= min : t > min)
  })
}

export function filterIds (rows: Row[], field: string, ids: string | undefined): Row[] {
  if (ids === undefined) return rows
  const wanted = new Set(ids.split(','))
  return rows.filter((r) => wanted.has(String(r[field])))
}

export interface ListFilters {
  vra_gte?: number
  vra_lte?: number
  rb_pix_gte?: number
  rb_pix_lte?: number
  ra_gte?: number
  ra_lte?: number
  dec_gte?: number
  dec_lte?: number
  sherlock_class?: string
  spec_type?: string
}

const RANGE_FILTERS = ['vra', 'rb_pix', 'ra', 'dec'] as const

/** The client's objectlist filters: inclusive bounds, exact-match strings. */
export function applyListFilters (rows: Row[], f: ListFilters): Row[] {
  const checks: Array<(r: Row) => boolean> = []
  for (const name of RANGE_FILTERS) {
    const field = replyFields.listFilters[name]
    const gte = f[`${name}_gte`]
    const lte = f[`${name}_lte`]
    if (gte !== undefined) checks.push((r) => typeof r[field] === 'number' && (r[field] as number) >= gte)
    if (lte !== undefined) checks.push((r) => typeof r[field] === 'number' && (r[field] as number) <= lte)
  }
  if (f.sherlock_class !== undefined) checks.push((r) => r[replyFields.listFilters.sherlock_class] === f.sherlock_class)
  if (f.spec_type !== undefined) checks.push((r) => r[replyFields.listFilters.spec_type] === f.spec_type)
  return checks.length === 0 ? rows : rows.filter((r) => checks.every((c) => c(r)))
}
