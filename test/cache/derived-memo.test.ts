// Derived representations (v1 renderings, compressed variants) live in the L1 store's byte budget:
// together with the entries they never exceed CACHE_MAX_BYTES, and they compete in one LRU order.
import { test } from 'tap'
import { createMemoryStore } from '../../src/cache/memory-store.js'
import { computeEtag } from '../../src/cache/entry.js'
import { createRecordRenderer, renderedEtag } from '../../src/routes/v1/render.js'

const MIN = 60_000
const derivedOf = (n: number) => ({ bytes: Buffer.alloc(n, 1), etag: '"x"' })

test('entries and derived bodies share one byte budget, which is never exceeded', async (t) => {
  const store = createMemoryStore({ maxBytes: 10_000 })
  for (let i = 0; i < 100; i++) {
    await store.set(`e${i}`, Buffer.alloc(300), MIN)
    store.derived.set(`d${i}`, derivedOf(400))
    t.ok(store.bytes <= 10_000, `after ${i + 1} rounds: ${store.bytes} bytes`)
  }
  const kept = store.derived.get('d99')
  t.equal(kept?.bytes.length, 400, 'the newest derived body is there')
  t.equal(kept?.etag, '"x"')
  t.equal(store.derived.get('d0'), undefined, 'the oldest were evicted by the budget')
  t.equal(await store.get('e0'), undefined, 'and so were the oldest entries')
})

test('a derived body is charged for its key, bytes and ETag; one larger than a quarter of the budget is not kept', async (t) => {
  const store = createMemoryStore({ maxBytes: 4000 })
  store.derived.set('k', derivedOf(100))
  t.ok(store.bytes >= 100 + 1 + 3, `charged ${store.bytes} bytes`)
  store.derived.set('k', derivedOf(200))
  t.equal(store.derived.get('k')?.bytes.length, 200, 'replaced, not added')
  const before = store.bytes
  store.derived.set('big', derivedOf(1001))
  t.equal(store.derived.get('big'), undefined, 'over a quarter of the budget: not kept')
  t.equal(store.bytes, before, 'and nothing evicted for it')
})

test('a read moves a derived body to the recent end; invalidation and expiry leave derived bodies alone', async (t) => {
  let now = 0
  const store = createMemoryStore({ maxBytes: 2400, now: () => now })
  store.derived.set('a', derivedOf(500))
  store.derived.set('b', derivedOf(500))
  t.ok(store.derived.get('a'), 'read: now the most recent')
  for (const key of ['c', 'd', 'e']) store.derived.set(key, derivedOf(500))
  t.ok(store.derived.get('a'), 'a survived')
  t.equal(store.derived.get('b'), undefined, 'b was the least recently used')
  await store.set('entry', Buffer.alloc(10), MIN)
  await store.addTags(['t'], ['entry'], MIN)
  t.equal(await store.invalidateTags(['t']), 1)
  now += 10 * MIN
  t.ok(store.derived.get('a'), 'keyed by content: never stale, untouched by tags and time')
  t.equal(await store.get('\u0000d:a'), undefined, 'not readable as a cache entry')
})

test('the v1 renderer memoises in the derived memo, and renders every time without one', async (t) => {
  const record = { bytes: Buffer.from('{"object":{"id":1161600211221604900},"lc":[]}'), etag: computeEtag(Buffer.from('x')) }
  const store = createMemoryStore({ maxBytes: 1 << 20 })
  const render = createRecordRenderer(store.derived)
  const first = render(record)
  t.equal(first.bytes.toString(), '{"object":{"id":"1161600211221604900"},"lc":[]}')
  t.equal(first.etag, renderedEtag(record.etag), 'derived from the stored ETag (see render.ts)')
  t.equal(render(record).bytes, first.bytes, 'the same Buffer: memoised')
  t.ok(store.bytes > first.bytes.length, 'and counted in the store budget')
  const oneOff = createRecordRenderer(store.derived)({ ...record, etag: computeEtag(Buffer.from('y')) }, undefined, true)
  t.equal(oneOff.etag, '', 'a one-off rendering is not memoised')
  const bare = createRecordRenderer()
  t.not(bare(record).bytes, bare(record).bytes, 'no memo: a new rendering each time')
  t.same(bare(record).bytes, first.bytes)
})

test('parsed values are kept by key with the size they are charged, in the same budget', async (t) => {
  const store = createMemoryStore({ maxBytes: 10_000 })
  const table = [{ id: 1n }]
  store.derived.setValue('parsed:"a"', table, 1000)
  t.equal(store.derived.getValue('parsed:"a"'), table, 'the same object back')
  t.ok(store.bytes >= 1000, `charged ${store.bytes} bytes`)
  t.equal(store.derived.get('parsed:"a"'), undefined, 'not a derived body')
  store.derived.setValue('parsed:"big"', table, 2600)
  t.equal(store.derived.getValue('parsed:"big"'), undefined, 'over a quarter of the budget: not kept')
  for (let i = 0; i < 20; i++) await store.set(`e${i}`, Buffer.alloc(500), MIN)
  t.equal(store.derived.getValue('parsed:"a"'), undefined, 'evicted by newer entries, least recently used first')
  t.ok(store.bytes <= 10_000)
})

test('peekValue looks at a parsed value without making it recent', async (t) => {
  // Slots of 668 bytes (key, value and overhead): four fit, a fifth evicts the least recently used.
  const store = createMemoryStore({ maxBytes: 3000 })
  store.derived.setValue('a', ['a'], 600)
  store.derived.setValue('b', ['b'], 600)
  t.same(store.derived.peekValue('a'), ['a'], 'the value')
  for (const key of ['c', 'd', 'e']) store.derived.setValue(key, [key], 600)
  t.equal(store.derived.peekValue('a'), undefined, 'a, only looked at, was the least recently used')
  t.same(store.derived.getValue('b'), ['b'], 'b is still there')
  t.equal(store.derived.peekValue('x'), undefined, 'nothing for a key not kept')
})

test('a value that is a view into a larger Buffer is stored in one of its own, so the budget counts what is held', async (t) => {
  const store = createMemoryStore({ maxBytes: 1 << 20 })
  // As an MGET reply hands them out: values sliced from one read buffer.
  const reply = Buffer.alloc(65_536, 7)
  await store.set('sliced', reply.subarray(100, 11_100), MIN)
  const stored = await store.get('sliced')
  t.equal(stored?.length, 11_000)
  t.ok((stored?.buffer.byteLength ?? 0) <= 11_000 + 1024, `held ${stored?.buffer.byteLength} bytes, not the 65,536 of the reply`)
  t.ok(stored?.equals(reply.subarray(100, 11_100)), 'same bytes')
  store.derived.set('gz', { bytes: reply.subarray(0, 5000), etag: '"g"' })
  t.ok((store.derived.get('gz')?.bytes.buffer.byteLength ?? 0) <= 5000 + 1024, 'derived bodies too')
  const whole = Buffer.alloc(20_000)
  await store.set('whole', whole, MIN)
  t.equal(await store.get('whole'), whole, 'a Buffer of its own is kept as it is (no copy)')
})
