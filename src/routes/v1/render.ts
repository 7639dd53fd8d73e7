// v1 rendering of upstream data: every integer beyond 2^53 (every ATLAS id) becomes a JSON string, and
// mjd_min is applied with the upstream's own rules (upstream/record.ts), so the cached full-history
// record serves every caller.
// Renderings of whole records are memoised by the stored bytes' ETag: a hot object is rendered once, and
// a hit then costs a map lookup instead of a pass over ~20 kB of JSON and a hash.
import { computeEtag } from '../../cache/entry.js'
import { quoteBigInts } from '../../lib/json-scan.js'
import { parseLossless, stringifyV1 } from '../../lib/json.js'
import type { StoredRecord } from '../../service/index.js'
import { applyMjd } from '../../upstream/record.js'

/** A v1 body and its strong ETag ('' for one-off renderings, which are never sent with one). */
export interface Rendered { bytes: Buffer, etag: string }

// Bounded by bytes: renderings of the hottest records, independent of the L1 cache (which may be off).
const MEMO_MAX_BYTES = 16 * 1024 * 1024

type RecordValue = Record<string, unknown>

const plainNumber = (row: Record<string, unknown>, field: string): number | undefined => {
  const v = row[field]
  return typeof v === 'number' ? v : undefined
}

/** The upstream's `mjd` rules (upstream/record.ts) on a parsed record. */
export function applyMjdMin (record: RecordValue, mjdMin: number): RecordValue {
  return applyMjd(record, mjdMin, plainNumber)
}

export type RecordRenderer = (record: StoredRecord, mjdMin?: number, isOneOff?: boolean) => Rendered

/**
 * A renderer with its own memo (one per app): one stored record as a v1 body. Without mjd_min the
 * rendering is memoised by the stored ETag, unless `isOneOff` (a bulk stream passing through once would
 * only push the hot records out of the memo).
 */
export function createRecordRenderer (): RecordRenderer {
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

  return (record, mjdMin, isOneOff = false) => {
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
}
