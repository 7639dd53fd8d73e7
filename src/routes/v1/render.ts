// v1 rendering of upstream data: every integer beyond 2^53 (every ATLAS id) becomes a JSON string, and
// mjd_min is applied with the upstream's own rules (upstream/record.ts), so the cached full-history
// record serves every caller.
// Renderings of whole records are memoised by the stored bytes' ETag in the L1 store's derived memo,
// inside CACHE_MAX_BYTES: a hot object is rendered once, and a hit then costs a map lookup instead of a
// pass over ~20 kB of JSON and a hash. Without L1 (CACHE_MAX_BYTES=0) nothing is memoised.
import { computeEtag } from '../../cache/entry.js'
import type { DerivedMemo } from '../../cache/store.js'
import { bigIntSpans, quoteBigInts, quoteSpans } from '../../lib/json-scan.js'
import { filterRecordText } from '../../upstream/record-text.js'
import type { StoredRecord } from '../../service/index.js'

/** A v1 body and its strong ETag ('' for one-off renderings, which are never sent with one). */
export interface Rendered { bytes: Buffer, etag: string }

// The memo key of a record's v1 rendering: its stored ETag, in a namespace of its own.
const memoKey = (etag: string): string => 'v1:' + etag

/**
 * The version of the whole-record v1 rendering. Equal stored bytes render to equal bytes under one
 * version, so a whole record's v1 ETag is the stored bytes' ETag with this version appended (`.` never
 * occurs in a base64url hash), instead of a hash of the ~18 kB rendering on every read the memo does
 * not answer. Whoever changes what the rendering produces must change this: test/routes/v1/render.test.ts
 * pins the rendering of a sample record to this version.
 */
export const RECORD_RENDERING = 'v1r1'

/** The strong ETag of the whole-record v1 rendering of bytes whose ETag is `stored`. */
export function renderedEtag (stored: string): string {
  return `${stored.slice(0, -1)}.${RECORD_RENDERING}"`
}

export type RecordRenderer = (record: StoredRecord, mjdMin?: number, isOneOff?: boolean) => Rendered

/**
 * A renderer for one app: one stored record as a v1 body. Without mjd_min the rendering is memoised
 * (in `memo`, the app's L1 derived memo) by the stored ETag, unless `isOneOff` (a bulk stream passing
 * through once would only push the hot records out of the memo).
 */
export function createRecordRenderer (memo?: DerivedMemo): RecordRenderer {
  return (record, mjdMin, isOneOff = false) => {
    if (mjdMin !== undefined) {
      // Filtered on the text (every kept literal as the upstream wrote it), then quoted as a whole record is.
      const bytes = quoteBigInts(Buffer.from(filterRecordText(record.bytes.toString('utf8'), mjdMin), 'utf8'))
      return { bytes, etag: computeEtag(bytes) }
    }
    const key = memoKey(record.etag)
    const hit = memo?.get(key)
    if (hit !== undefined) return hit
    // The offsets stored with the record spare a scan of its bytes; records stored without them are scanned.
    const bytes = quoteSpans(record.bytes, record.bigInts ?? bigIntSpans(record.bytes))
    if (isOneOff) return { bytes, etag: '' }
    const rendered = { bytes, etag: renderedEtag(record.etag) }
    if (memo === undefined) return rendered
    memo.set(key, rendered)
    // The memo may have kept a copy (see memory-store.ts, owned): answer with what later hits will send.
    return memo.get(key) ?? rendered
  }
}
