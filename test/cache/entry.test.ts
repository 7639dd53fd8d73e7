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
