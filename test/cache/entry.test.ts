import { test } from 'tap'
import fc from 'fast-check'
import { computeEtag, createEntry, decodeEntry, encodeEntry, DEFAULT_CONTENT_TYPE } from '../../src/cache/entry.js'

test('an entry survives encoding byte for byte', async (t) => {
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 2048 }), fc.integer({ min: 0, max: 2 ** 45 }), fc.integer({ min: 1, max: 2 ** 31 }),
    fc.string({ maxLength: 80 }), fc.integer({ min: 100, max: 599 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 5 }),
    (bytes, storedAt, ttlMs, contentType, status, tags) => {
      const entry = createEntry(Buffer.from(bytes), storedAt, ttlMs, contentType, status, tags)
      const back = decodeEntry(encodeEntry(entry))
      return back !== undefined && back.body.equals(entry.body) && back.etag === entry.etag &&
        back.storedAt === storedAt && back.expiresAt === storedAt + ttlMs &&
        back.contentType === contentType && back.status === status && JSON.stringify(back.tags) === JSON.stringify(tags)
    }))
  const entry = createEntry(Buffer.from('{"a":1}'), 1, 2)
  t.equal(entry.contentType, DEFAULT_CONTENT_TYPE)
  t.equal(entry.status, 200)
  t.same(entry.tags, [])
})

test('the offsets of big integers survive encoding; an entry stored without them has none', async (t) => {
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 512 }), fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 40 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 }),
    (bytes, offsets, tags) => {
      const back = decodeEntry(encodeEntry(createEntry(Buffer.from(bytes), 1, 2, DEFAULT_CONTENT_TYPE, 200, tags, offsets)))
      return back !== undefined && JSON.stringify(back.bigInts) === JSON.stringify(offsets) && back.body.equals(Buffer.from(bytes)) &&
        JSON.stringify(back.tags) === JSON.stringify(tags)
    }))
  t.equal(decodeEntry(encodeEntry(createEntry(Buffer.from('[1]'), 1, 2)))?.bigInts, undefined, 'not looked for')
  t.same(decodeEntry(encodeEntry(createEntry(Buffer.from('[1]'), 1, 2, DEFAULT_CONTENT_TYPE, 200, [], [])))?.bigInts, [], 'looked for, none found')
})

// What replicas of the version before wrote (format 1: no offsets), laid out here as its encoder did.
function encodeFormat1 (entry: { body: Buffer, etag: string, storedAt: number, expiresAt: number, contentType: string, status: number, tags: readonly string[] }): Buffer {
  const etag = Buffer.from(entry.etag, 'latin1')
  const contentType = Buffer.from(entry.contentType, 'utf8')
  const tags = entry.tags.length === 0 ? Buffer.alloc(0) : Buffer.from(JSON.stringify(entry.tags), 'utf8')
  const header = Buffer.alloc(29 + etag.length + contentType.length + tags.length)
  Buffer.from([0x41, 0x47, 0x43, 0x01]).copy(header, 0)
  let at = header.writeUInt16BE(entry.status, 4)
  at = header.writeDoubleBE(entry.storedAt, at)
  at = header.writeDoubleBE(entry.expiresAt, at)
  at = header.writeUInt8(etag.length, at)
  at = header.writeUInt16BE(contentType.length, at)
  at = header.writeUInt32BE(tags.length, at)
  at += etag.copy(header, at)
  at += contentType.copy(header, at)
  tags.copy(header, at)
  return Buffer.concat([header, entry.body])
}

test('values of format 1 (written before offsets were kept) are still read, without offsets; unknown formats are not', async (t) => {
  const entry = createEntry(Buffer.from('[1161600211221604900]'), 5, 10, DEFAULT_CONTENT_TYPE, 200, ['obj:1'])
  const back = decodeEntry(encodeFormat1(entry))
  t.ok(back?.body.equals(entry.body))
  t.match(back, { etag: entry.etag, storedAt: 5, expiresAt: 15, contentType: DEFAULT_CONTENT_TYPE, status: 200, tags: ['obj:1'] })
  t.equal(back?.bigInts, undefined)
  const unknown = encodeEntry(entry)
  unknown[3] = 0x09
  t.equal(decodeEntry(unknown), undefined)
})

test('the body is a view into the stored value, not a copy', async (t) => {
  const value = encodeEntry(createEntry(Buffer.from('x'.repeat(1000)), 1, 2))
  const back = decodeEntry(value)
  t.equal(back?.body.buffer, value.buffer)
})

test('bytes of another format are not entries', async (t) => {
  t.equal(decodeEntry(Buffer.from('{"json":true}')), undefined)
  t.equal(decodeEntry(Buffer.alloc(0)), undefined)
  const truncated = encodeEntry(createEntry(Buffer.from('x'), 1, 2, 'text/plain', 200, ['tag'])).subarray(0, 35)
  t.equal(decodeEntry(truncated), undefined)
})

test('the ETag is strong and changes with the bytes', async (t) => {
  const etag = computeEtag(Buffer.from('a'))
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.equal(etag, computeEtag(Buffer.from('a')))
  t.not(etag, computeEtag(Buffer.from('b')))
})
