// One cached response and its byte form. Stores hold a compact binary header followed by the body bytes
// untouched, so a hit costs a header read and a zero-copy slice, never a JSON parse of the body (issue 5:
// "a hit does not re-parse large JSON").
import { createHash } from 'node:crypto'

export interface CacheEntry {
  body: Buffer
  /** Strong validator derived from the body bytes: equal bytes, equal ETag (RFC 9110 §8.8.3). */
  etag: string
  /** When the loader produced it, ms since the epoch; the age and freshness derive from it. */
  storedAt: number
  /** When the stores drop it, ms since the epoch. */
  expiresAt: number
  contentType: string
  status: number
  /** Tags a write invalidates it by; kept in the bytes so an L1 filled from L2 can be invalidated too. */
  tags: readonly string[]
  /**
   * Where the body's integer literals beyond 2^53 are (start and end offsets, in pairs), when whoever
   * stored it looked (object records: lib/json-scan.ts bigIntSpans); kept in the bytes, so a rendering
   * that quotes them (v1) copies around them instead of scanning the body on every read.
   */
  bigInts?: readonly number[]
}

export const DEFAULT_CONTENT_TYPE = 'application/json; charset=utf-8'

// "AGC" + format version. A reader seeing an unknown version treats the value as a miss, so a format
// change needs no migration: old values are refilled. Format 1 (no offsets) is still read, so that
// while replicas of both versions run (a rolling update) the new ones do not refill every value the old
// ones wrote, each refill an upstream call.
// ANY change to the layout below (a field added, moved or resized, the offsets moved) takes a new format
// byte, never the same one: replicas of the other version share Redis during a rolling update or a
// rollback, and each must see the other's values as an unknown format (a miss), not read them in its own
// layout. (An earlier layout of format 2, with the offsets before the body and no body length, went out
// under this same byte; its values are told apart only by their length, see decodeEntry.)
const MAGIC = Buffer.from([0x41, 0x47, 0x43, 0x02])
const MAGIC_1 = Buffer.from([0x41, 0x47, 0x43, 0x01])
// magic(4) status(2) storedAt(8) expiresAt(8) etagLength(1) contentTypeLength(2) tagsLength(4)
// bigIntsCount(4: 0 when not looked for, else 1 + the offsets' count) bodyLength(4), then the etag, the
// content type, the tags (a JSON array, usually a few dozen bytes), the body and the offsets (4 bytes
// each). The offsets come last, so that the head of a value (what a look-ahead reads, PEEK_BYTES in
// cache.ts) stays a few hundred bytes however many there are: a record with a thousand detections
// carries a thousand ids.
const FIXED = 4 + 2 + 8 + 8 + 1 + 2 + 4 + 4 + 4
// Format 1: without bigIntsCount and bodyLength (the body runs to the end).
const FIXED_1 = FIXED - 8

/** SHA-1 is used as a content fingerprint here, not for security: short, fast, collision-free in practice. */
export function computeEtag (body: Buffer): string {
  return '"' + createHash('sha1').update(body).digest('base64url') + '"'
}

export function createEntry (
  body: Buffer, storedAt: number, ttlMs: number, contentType = DEFAULT_CONTENT_TYPE, status = 200, tags: readonly string[] = [],
  bigInts?: readonly number[]
): CacheEntry {
  const entry: CacheEntry = { body, etag: computeEtag(body), storedAt, expiresAt: storedAt + ttlMs, contentType, status, tags }
  if (bigInts !== undefined) entry.bigInts = bigInts
  return entry
}

export function encodeEntry (entry: CacheEntry): Buffer {
  const etag = Buffer.from(entry.etag, 'latin1')
  const contentType = Buffer.from(entry.contentType, 'utf8')
  const tags = entry.tags.length === 0 ? Buffer.alloc(0) : Buffer.from(JSON.stringify(entry.tags), 'utf8')
  const bigInts = entry.bigInts
  const header = Buffer.allocUnsafe(FIXED + etag.length + contentType.length + tags.length)
  MAGIC.copy(header, 0)
  let at = header.writeUInt16BE(entry.status, 4)
  at = header.writeDoubleBE(entry.storedAt, at)
  at = header.writeDoubleBE(entry.expiresAt, at)
  at = header.writeUInt8(etag.length, at)
  at = header.writeUInt16BE(contentType.length, at)
  at = header.writeUInt32BE(tags.length, at)
  at = header.writeUInt32BE(bigInts === undefined ? 0 : 1 + bigInts.length, at)
  at = header.writeUInt32BE(entry.body.length, at)
  at += etag.copy(header, at)
  at += contentType.copy(header, at)
  tags.copy(header, at)
  // The value in an ArrayBuffer of its own (allocUnsafeSlow, not Buffer.concat): a pooled Buffer is a
  // slice of Node's shared pool (8 KiB on Node 20 and 22, 64 KiB on Node 24, where every value under
  // 32 KiB is one), which the memory store would copy out again (memory-store.ts, owned()), leaving the
  // entry's body (encodeSharing) a view into a second copy of the record.
  const trailerLength = 4 * (bigInts?.length ?? 0)
  const value = Buffer.allocUnsafeSlow(header.length + entry.body.length + trailerLength)
  header.copy(value, 0)
  entry.body.copy(value, header.length)
  const trailerAt = header.length + entry.body.length
  bigInts?.forEach((offset, k) => value.writeUInt32BE(offset, trailerAt + 4 * k))
  return value
}

/**
 * encodeEntry, and the entry's body becomes a view into the stored bytes, so that a batch being loaded
 * holds each record once (the stores keep these bytes), not also the Buffer the loader made.
 */
export function encodeSharing (entry: CacheEntry): Buffer {
  const value = encodeEntry(entry)
  const bodyAt = value.length - 4 * (entry.bigInts?.length ?? 0) - entry.body.length
  entry.body = value.subarray(bodyAt, bodyAt + entry.body.length)
  return value
}

/**
 * The entry, or undefined when the bytes are not a value of this format (treated as a miss). A value
 * whose length is not the one its header gives (bodyLength and the offsets' count), whose offsets are
 * not pairs in order within the body, or whose tags do not parse was written in another layout (another
 * version sharing Redis) or damaged: it is a miss, loaded again like any, never served.
 * `readBytes`: the value is the first `readBytes` bytes of a stored one (a look-ahead's read, PEEK_BYTES
 * in cache.ts); when it is that long it may be cut short, and decodes with its body cut short and
 * without offsets, as long as it is not longer than its header says. A look-ahead only plans; the read
 * that serves a value reads it whole and checks it whole.
 */
export function decodeEntry (value: Buffer, readBytes?: number): CacheEntry | undefined {
  const isFormat1 = value.length >= FIXED_1 && value.subarray(0, 4).equals(MAGIC_1)
  if (!isFormat1 && (value.length < FIXED || !value.subarray(0, 4).equals(MAGIC))) return undefined
  const fixed = isFormat1 ? FIXED_1 : FIXED
  const status = value.readUInt16BE(4)
  const storedAt = value.readDoubleBE(6)
  const expiresAt = value.readDoubleBE(14)
  const etagLength = value.readUInt8(22)
  const contentTypeLength = value.readUInt16BE(23)
  const tagsLength = value.readUInt32BE(25)
  const bigIntsCount = isFormat1 ? 0 : value.readUInt32BE(29)
  const tagsAt = fixed + etagLength + contentTypeLength
  const bodyAt = tagsAt + tagsLength
  if (value.length < bodyAt) return undefined
  // Format 1 has no length: its body runs to the end.
  const bodyEnd = isFormat1 ? value.length : bodyAt + value.readUInt32BE(33)
  const offsetsCount = bigIntsCount === 0 ? 0 : bigIntsCount - 1
  const end = bodyEnd + 4 * offsetsCount
  const isWhole = readBytes === undefined || value.length < readBytes
  if (isWhole ? value.length !== end : value.length > end) return undefined
  const tags = tagsLength === 0 ? [] : parseTags(value.toString('utf8', tagsAt, bodyAt))
  if (tags === undefined) return undefined
  const entry: CacheEntry = {
    status,
    storedAt,
    expiresAt,
    etag: value.toString('latin1', fixed, fixed + etagLength),
    contentType: value.toString('utf8', fixed + etagLength, tagsAt),
    tags,
    body: value.subarray(bodyAt, Math.min(bodyEnd, value.length))
  }
  if (bigIntsCount > 0 && value.length === end) {
    const offsets = readOffsets(value, bodyEnd, offsetsCount, bodyEnd - bodyAt)
    if (offsets === undefined) return undefined
    entry.bigInts = offsets
  }
  return entry
}

/** `count` offsets from `at`: pairs (start, end), in order, within a body of `bodyLength`; else undefined. */
function readOffsets (value: Buffer, at: number, count: number, bodyLength: number): number[] | undefined {
  if (count % 2 !== 0) return undefined
  const offsets = new Array<number>(count)
  let last = 0
  for (let k = 0; k < count; k++) {
    const offset = value.readUInt32BE(at + 4 * k)
    // A span's start is not before the previous span's end, its end not before its start.
    if (offset < last || offset > bodyLength) return undefined
    offsets[k] = last = offset
  }
  return offsets
}

function parseTags (text: string): string[] | undefined {
  try {
    const tags: unknown = JSON.parse(text)
    return Array.isArray(tags) && tags.every((t) => typeof t === 'string') ? tags : undefined
  } catch {
    return undefined
  }
}
