import { test } from 'tap'
import { createMemoryStore, SLOT_OVERHEAD } from '../../src/cache/memory-store.js'
import { runStoreContract } from './store-contract.js'

function clock (start = 1_000_000) {
  let t = start
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

const MIN = 60_000

test('store contract: memory', async (t) => {
  runStoreContract(t, async () => {
    const c = clock()
    return { store: createMemoryStore({ maxBytes: 1 << 24, now: c.now }), advance: c.advance }
  })
})

test('the byte budget counts keys, values and each slot\'s overhead, and is never exceeded', async (t) => {
  const budget = 1000 + 4 * SLOT_OVERHEAD
  const store = createMemoryStore({ maxBytes: budget })
  for (let i = 0; i < 200; i++) {
    await store.set(`key-${i}`, Buffer.alloc(i % 37), MIN)
    t.ok(store.bytes <= budget, `after ${i + 1} sets: ${store.bytes} bytes`)
  }
  await store.delete([...Array(200).keys()].map((i) => `key-${i}`))
  t.equal(store.bytes, 0)
  t.equal(store.size, 0)
  await store.set('abc', Buffer.alloc(10), MIN)
  t.equal(store.bytes, 13 + SLOT_OVERHEAD, 'key bytes + value bytes + the slot')
})

// Each entry: 2-byte key + 98-byte value + the slot; room for three, and k1, k2, k3 fill it (oldest first).
const V98 = Buffer.alloc(98)
async function fullOfThree () {
  const store = createMemoryStore({ maxBytes: 3 * (100 + SLOT_OVERHEAD) })
  for (const key of ['k1', 'k2', 'k3']) await store.set(key, V98, MIN)
  return { store, v: V98 }
}

test('the least recently used entry is evicted first; a read refreshes recency', async (t) => {
  const { store, v } = await fullOfThree()
  await store.get('k1')
  await store.set('k4', v, MIN)
  t.same((await store.getMany(['k1', 'k2', 'k3', 'k4'])).map((x) => x !== undefined), [true, false, true, true])
  await store.getMany(['k3'])
  await store.set('k5', v, MIN)
  t.same((await store.getMany(['k1', 'k3', 'k4', 'k5'])).map((x) => x !== undefined), [false, true, true, true])
})

test('getManyNow answers what getMany answers, without a promise, and a read through it refreshes recency', async (t) => {
  const { store, v } = await fullOfThree()
  const now = store.getManyNow?.(['k1', 'absent'])
  t.ok(Array.isArray(now), 'an array, not a promise')
  t.same(now, await store.getMany(['k1', 'absent']))
  await store.set('k4', v, MIN)
  t.same((await store.getMany(['k1', 'k2', 'k3', 'k4'])).map((x) => x !== undefined), [true, false, true, true], 'k2 went first: k1 was read')
})

test('a value larger than the budget is not stored and drops the old value of its key', async (t) => {
  const store = createMemoryStore({ maxBytes: 100 + 2 * SLOT_OVERHEAD })
  await store.set('small', Buffer.alloc(10), MIN)
  await store.set('k', Buffer.alloc(10), MIN)
  await store.set('k', Buffer.alloc(2000), MIN)
  t.equal(await store.get('k'), undefined)
  t.ok(await store.get('small'), 'other entries are not evicted for a value that cannot fit')
  t.equal(store.bytes, 15 + SLOT_OVERHEAD)
})

test('a peek does not refresh recency: the peeked entry is still evicted first', async (t) => {
  const { store, v } = await fullOfThree()
  t.equal((await store.peekMany(['k1'], 16))[0]?.length, 98)
  await store.set('k4', v, MIN)
  t.same((await store.getMany(['k1', 'k2', 'k3', 'k4'])).map((x) => x !== undefined), [false, true, true, true])
})

test('evicted and expired keys leave their tags; invalidation counts only live entries', async (t) => {
  const c = clock()
  const store = createMemoryStore({ maxBytes: 250 + 2 * SLOT_OVERHEAD, now: c.now })
  await store.set('a1', Buffer.alloc(98), MIN)
  await store.set('a2', Buffer.alloc(98), 1000)
  await store.addTags(['t'], ['a1', 'a2', 'not-stored'], MIN)
  await store.set('a3', Buffer.alloc(98), MIN) // evicts a1
  c.advance(1000) // a2 expires
  t.equal(await store.invalidateTags(['t']), 0)
  t.ok(await store.get('a3'))
})

test('a zero budget stores nothing', async (t) => {
  const store = createMemoryStore({ maxBytes: 0 })
  await store.set('k', Buffer.alloc(1), MIN)
  t.equal(await store.get('k'), undefined)
})

test('a small value is stored in memory of its own, not in a slab of Node\'s shared Buffer pool', async (t) => {
  const store = createMemoryStore({ maxBytes: 1_000_000 })
  // Buffer.from of a short string is a slice of an 8 KiB pool slab shared with other Buffers; so is
  // Buffer.copyBytesFrom of one. Stored as such, each 300-byte value kept a whole slab alive.
  const given = Buffer.from('x'.repeat(300))
  t.ok(given.buffer.byteLength > 4096, 'the value given is a pool slice')
  await store.set('k', given, 60_000)
  const kept = await store.get('k')
  t.ok(kept?.equals(given), 'the same bytes')
  t.equal(kept?.buffer.byteLength, 300, 'in an ArrayBuffer of its own size')
  store.derived.set('d', { bytes: Buffer.from('y'.repeat(200)), etag: '"e"' })
  t.equal(store.derived.get('d')?.bytes.buffer.byteLength, 200, 'a derived body too')
})
