// v1 rendering of upstream data: every integer beyond 2^53 (every ATLAS id) becomes a JSON string, and
// mjd_min is applied with the upstream's own rules, so the cached full-history record serves every caller.
import { quoteBigInts } from '../../lib/json-scan.js'
import { parseLossless, stringifyV1 } from '../../lib/json.js'

interface RecordValue {
  lc?: unknown
  lcnondets?: unknown
  fp?: unknown
  [key: string]: unknown
}

function keepAfter (rows: unknown, field: string, min: number, isInclusive: boolean): unknown {
  if (!Array.isArray(rows)) return rows
  return rows.filter((row: unknown) => {
    const v = (row as Record<string, unknown> | null)?.[field]
    if (typeof v !== 'number') return false
    return isInclusive ? v >= min : v > min
  })
}

/**
 * Contract §5.2 / §10.10: detections (`lc`) and non-detections (`lcnondets`) keep `mjd > mjd_min`;
 * forced photometry (`fp`) keeps `mjd_obs >= mjd_min`.
 */
export function applyMjdMin (record: RecordValue, mjdMin: number): RecordValue {
  return {
    ...record,
    lc: keepAfter(record.lc, 'mjd', mjdMin, false),
    lcnondets: keepAfter(record.lcnondets, 'mjd', mjdMin, false),
    fp: keepAfter(record.fp, 'mjd_obs', mjdMin, true)
  }
}

/** One upstream-dialect record as v1 JSON text. Without mjd_min this is a single pass over the bytes. */
export function recordToV1 (recordText: string, mjdMin?: number): string {
  if (mjdMin === undefined) return quoteBigInts(recordText)
  return stringifyV1(applyMjdMin(parseLossless(recordText) as RecordValue, mjdMin))
}
