import { test } from 'tap'
import fc from 'fast-check'
import { computeEtag, createEntry, decodeEntry, encodeEntry, encodeSharing, DEFAULT_CONTENT_TYPE, type CacheEntry } from '../../src/cache/entry.js'

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
    fc.uint8Array({ maxLength: 512 }), fc.array(fc.nat(), { maxLength: 40 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 }),
    (bytes, picks, tags) => {
      // Spans as a scan finds them: pairs, in order, within the body.
      const offsets = picks.slice(0, picks.length - (picks.length % 2)).map((p) => p % (bytes.length + 1)).sort((a, b) => a - b)
      const back = decodeEntry(encodeEntry(createEntry(Buffer.from(bytes), 1, 2, DEFAULT_CONTENT_TYPE, 200, tags, offsets)))
      return back !== undefined && JSON.stringify(back.bigInts) === JSON.stringify(offsets) && back.body.equals(Buffer.from(bytes)) &&
        JSON.stringify(back.tags) === JSON.stringify(tags)
    }))
  t.equal(decodeEntry(encodeEntry(createEntry(Buffer.from('[1]'), 1, 2)))?.bigInts, undefined, 'not looked for')
  t.same(decodeEntry(encodeEntry(createEntry(Buffer.from('[1]'), 1, 2, DEFAULT_CONTENT_TYPE, 200, [], [])))?.bigInts, [], 'looked for, none found')
})

// What replicas of the version before wrote (format 1): the fields of format 2 without bigIntsCount and
// bodyLength (bytes 29-36), for an entry without offsets, under version byte 1.
function encodeFormat1 (entry: CacheEntry): Buffer {
  const value = encodeEntry({ ...entry, bigInts: undefined })
  const old = Buffer.concat([value.subarray(0, 29), value.subarray(37)])
  old[3] = 0x01
  return old
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

test('the start of a value (a look-ahead reads 512 bytes) decodes its header however many offsets it has', async (t) => {
  const body = Buffer.from('{"object":{"id":1161600211221604900},"lc":[' + '{"id":1161600211221604900},'.repeat(999) + '{"id":1161600211221604900}]}')
  const offsets = Array.from({ length: 2000 }, (_, k) => k)
  const entry = createEntry(body, 7, 10, DEFAULT_CONTENT_TYPE, 200, ['obj:1'], offsets)
  const head = decodeEntry(encodeEntry(entry).subarray(0, 512), 512)
  t.match(head, { etag: entry.etag, storedAt: 7, expiresAt: 17, tags: ['obj:1'] })
  t.ok(head !== undefined && head.body.length > 0 && body.subarray(0, head.body.length).equals(head.body), 'the body cut short')
  t.equal(head?.bigInts, undefined, 'no offsets from a cut value')
  t.equal(decodeEntry(encodeEntry(entry).subarray(0, 512)), undefined, 'read as a whole value, the same bytes are a value cut short: a miss')
  const small = encodeEntry(createEntry(Buffer.from('[1161600211221604900]'), 7, 10, DEFAULT_CONTENT_TYPE, 200, [], [1, 20]))
  t.ok(decodeEntry(small, 512)?.body.equals(Buffer.from('[1161600211221604900]')), 'a value shorter than the read is whole')
  t.same(decodeEntry(small, 512)?.bigInts, [1, 20], 'with its offsets')
  t.equal(decodeEntry(small.subarray(0, small.length - 1), 512), undefined, 'and checked whole')
  t.equal(decodeEntry(Buffer.concat([encodeEntry(entry).subarray(0, 511), Buffer.alloc(1)]), 512)?.etag, entry.etag, 'a read of exactly 512 bytes may be cut short')
  const whole = decodeEntry(encodeEntry(entry))
  t.ok(whole?.body.equals(body))
  t.same(whole?.bigInts, offsets)
})

test('encodeSharing: the entry\'s body becomes the stored bytes\' own, with or without offsets', async (t) => {
  for (const offsets of [undefined, [], [1, 3]]) {
    const entry = createEntry(Buffer.from('[1161600211221604900]'), 1, 2, DEFAULT_CONTENT_TYPE, 200, [], offsets)
    const body = Buffer.from(entry.body)
    const value = encodeSharing(entry)
    t.equal(entry.body.buffer, value.buffer, `a view (offsets ${JSON.stringify(offsets)})`)
    t.ok(entry.body.equals(body), 'the same bytes')
    t.ok(decodeEntry(value)?.body.equals(body))
  }
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

test('a value whose length is not the one its header gives, or whose offsets are not spans of its body, is not an entry', async (t) => {
  const body = Buffer.from('[1161600211221604900,1]')
  const value = encodeEntry(createEntry(body, 1, 2, DEFAULT_CONTENT_TYPE, 200, ['obj:1'], [1, 20]))
  t.ok(decodeEntry(value)?.body.equals(body), 'the value as written')
  t.equal(decodeEntry(value.subarray(0, value.length - 1)), undefined, 'cut short in its offsets')
  const plain = encodeEntry(createEntry(body, 1, 2))
  t.equal(decodeEntry(plain.subarray(0, plain.length - 3)), undefined, 'cut short in its body')
  t.equal(decodeEntry(Buffer.concat([plain, Buffer.from('1]')])), undefined, 'bytes after its end')
  for (const offsets of [[1], [1, 24], [5, 2], [1, 20, 19, 21], [24, 24]]) {
    t.equal(decodeEntry(encodeEntry(createEntry(body, 1, 2, DEFAULT_CONTENT_TYPE, 200, [], offsets))), undefined, `offsets ${JSON.stringify(offsets)} in a body of ${body.length}`)
  }
  t.same(decodeEntry(encodeEntry(createEntry(body, 1, 2, DEFAULT_CONTENT_TYPE, 200, [], [1, 20, 20, 23])))?.bigInts, [1, 20, 20, 23], 'spans may touch and end at the body\'s end')
})

test('the ETag is strong and changes with the bytes', async (t) => {
  const etag = computeEtag(Buffer.from('a'))
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.equal(etag, computeEtag(Buffer.from('a')))
  t.not(etag, computeEtag(Buffer.from('b')))
})
