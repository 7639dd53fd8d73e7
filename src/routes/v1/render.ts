// v1 rendering of upstream data: every integer beyond 2^53 (every ATLAS id) becomes a JSON string, and
// mjd_min is applied with the upstream's own rules, so the cached full-history record serves every caller.
// Renderings of whole records are memoised by the stored bytes' ETag: a hot object is rendered once, and
// a hit then costs a map lookup instead of a pass over ~20 kB of JSON and a hash.
import { computeEtag } from '../../cache/entry.js'
import { quoteBigInts } from '../../lib/json-scan.js'
import { parseLossless, stringifyV1 } from '../../lib/json.js'

/** An object record as the upstream sent it (ids as bare integers), with the ETag of those bytes. */
export interface StoredRecord { bytes: Buffer, etag: string }

/** A v1 body and its strong ETag ('' for one-off renderings, which are never sent with one). */
export interface Rendered { bytes: Buffer, etag: string }

// Bounded by bytes: renderings of the hottest records, independent of the L1 cache (which may be off).
const MEMO_MAX_BYTES = 16 * 1024 * 1024
const memo = new Map<string, Rendered>()
let memoBytes = 0

function remember (key: string, value: Rendered): Rendered {
  if (value.bytes.length > MEMO_MAX_BYTES / 4) return value
  memo.set(key, value)
  memoBytes += value.bytes.length
  for (const [k, v] of memo) {
    if (memoBytes <= MEMO_MAX_BYTES) break
    memo.delete(k)
    memoBytes -= v.bytes.length
  }
  return value
}

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

/**
 * One stored record as a v1 body. Without mjd_min the rendering is memoised by the stored ETag, unless
 * `isOneOff` (a bulk stream passing through once would only push the hot records out of the memo).
 */
export function recordToV1 (record: StoredRecord, mjdMin?: number, isOneOff = false): Rendered {
  if (mjdMin !== undefined) {
    const bytes = Buffer.from(stringifyV1(applyMjdMin(parseLossless(record.bytes.toString('utf8')) as RecordValue, mjdMin)), 'utf8')
    return { bytes, etag: computeEtag(bytes) }
  }
  const hit = memo.get(record.etag)
  if (hit !== undefined) {
    // Refresh its place in the LRU order.
    memo.delete(record.etag)
    memo.set(record.etag, hit)
    return hit
  }
  const bytes = Buffer.from(quoteBigInts(record.bytes.toString('utf8')), 'utf8')
  if (isOneOff) return { bytes, etag: '' }
  return remember(record.etag, { bytes, etag: computeEtag(bytes) })
}
