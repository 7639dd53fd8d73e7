// The store contract, run unchanged against the memory store and the Redis store (house style: one
// suite for both implementations, as rate-limit does for its stores).
import type { Test } from 'tap'
import type { CacheStore } from '../../src/cache/store.js'

export interface StoreHarness {
  store: CacheStore
  /** Moves the store's clock forward, when the store has an injectable one. */
  advance?: (ms: number) => void
}

const MIN = 60_000
const b = (text: string): Buffer => Buffer.from(text, 'utf8')

export function runStoreContract (t: Test, make: (t: Test) => Promise<StoreHarness>): void {
  t.test('absent keys are misses', async (t) => {
    const { store } = await make(t)
    t.equal(await store.get('nope'), undefined)
    t.same(await store.getMany(['a', 'b']), [undefined, undefined])
    t.same(await store.getMany([]), [])
  })

  t.test('set then get returns the same bytes, binary included', async (t) => {
    const { store } = await make(t)
    const value = Buffer.from([0, 1, 2, 255, 0, 10, 13])
    await store.set('bin', value, MIN)
    const got = await store.get('bin')
    t.ok(got !== undefined && got.equals(value))
    await store.set('bin', b('second'), MIN)
    t.equal((await store.get('bin'))?.toString(), 'second', 'an overwrite replaces the value')
  })

  t.test('getMany answers in key order, misses included; setMany stores all', async (t) => {
    const { store } = await make(t)
    await store.setMany([{ key: 'k1', value: b('one'), ttlMs: MIN }, { key: 'k3', value: b('three'), ttlMs: MIN }])
    const got = await store.getMany(['k3', 'k2', 'k1', 'k3'])
    t.same(got.map((v) => v?.toString()), ['three', undefined, 'one', 'three'])
    await store.setMany([])
  })

  t.test('peekMany answers at least the start of each value, in key order, misses included', async (t) => {
    const { store } = await make(t)
    const long = b('x'.repeat(100) + 'tail')
    await store.setMany([{ key: 'long', value: long, ttlMs: MIN }, { key: 'short', value: b('abc'), ttlMs: MIN }])
    const [a, missing, c] = await store.peekMany(['long', 'none', 'short'], 10)
    t.ok(a !== undefined && a.length >= 10 && a.equals(long.subarray(0, a.length)), 'the start of a long value')
    t.equal(missing, undefined, 'an absent key')
    t.equal(c?.toString(), 'abc', 'a value shorter than asked for, whole')
    t.same(await store.peekMany([], 10), [])
    t.ok((await store.get('long'))?.equals(long), 'the value is still whole')
  })

  t.test('a TTL of zero or less stores nothing', async (t) => {
    const { store } = await make(t)
    await store.set('zero', b('x'), 0)
    await store.setMany([{ key: 'neg', value: b('x'), ttlMs: -5 }])
    t.same(await store.getMany(['zero', 'neg']), [undefined, undefined])
  })

  t.test('delete removes the given keys only', async (t) => {
    const { store } = await make(t)
    await store.setMany(['a', 'b', 'c'].map((key) => ({ key, value: b(key), ttlMs: MIN })))
    await store.delete(['a', 'c', 'never-set'])
    await store.delete([])
    t.same((await store.getMany(['a', 'b', 'c'])).map((v) => v?.toString()), [undefined, 'b', undefined])
  })

  t.test('entries expire after their TTL', async (t) => {
    const { store, advance } = await make(t)
    if (advance === undefined) {
      t.pass('this store has no injectable clock; its TTL is checked by its own test')
      return
    }
    await store.set('short', b('s'), 1000)
    await store.set('long', b('l'), 5000)
    advance(999)
    t.equal((await store.get('short'))?.toString(), 's')
    advance(1)
    t.equal(await store.get('short'), undefined)
    t.equal((await store.get('long'))?.toString(), 'l')
  })

  t.test('invalidateTags deletes every key carrying any tag and counts them', async (t) => {
    const { store } = await make(t)
    await store.setMany(['o1', 'o2', 'l1', 'free'].map((key) => ({ key, value: b(key), ttlMs: MIN })))
    await store.addTags(['object:1'], ['o1', 'l1'], MIN)
    await store.addTags(['object:2', 'list:x'], ['o2'], MIN)
    await store.addTags([], ['free'], MIN)
    t.equal(await store.invalidateTags(['object:1', 'list:x']), 3)
    t.same((await store.getMany(['o1', 'o2', 'l1', 'free'])).map((v) => v?.toString()), [undefined, undefined, undefined, 'free'])
    t.equal(await store.invalidateTags(['object:1']), 0, 'nothing left to delete')
    t.equal(await store.invalidateTags(['never-used']), 0)
    t.equal(await store.invalidateTags([]), 0)
  })

  t.test('setMany with tags tags each key as addTags would, in the same call', async (t) => {
    const { store } = await make(t)
    await store.setMany([
      { key: 'a', value: b('a'), ttlMs: MIN, tags: ['object:a', 'list:x'] },
      { key: 'b', value: b('b'), ttlMs: 2 * MIN, tags: ['object:b'] },
      { key: 'c', value: b('c'), ttlMs: MIN, tags: [] },
      { key: 'd', value: b('d'), ttlMs: MIN }
    ])
    t.equal(await store.invalidateTags(['object:b']), 1)
    t.equal(await store.invalidateTags(['list:x']), 1)
    t.same((await store.getMany(['a', 'b', 'c', 'd'])).map((v) => v?.toString()), [undefined, undefined, 'c', 'd'])
  })

  t.test('a tag survives an overwrite of its key', async (t) => {
    const { store } = await make(t)
    await store.set('k', b('v1'), MIN)
    await store.addTags(['t'], ['k'], MIN)
    await store.set('k', b('v2'), MIN)
    t.equal(await store.invalidateTags(['t']), 1)
    t.equal(await store.get('k'), undefined)
  })

  t.test('a key stored again after an invalidation can be tagged and invalidated again', async (t) => {
    const { store } = await make(t)
    await store.set('k', b('v1'), MIN)
    await store.addTags(['t'], ['k'], MIN)
    await store.invalidateTags(['t'])
    await store.set('k', b('v2'), MIN)
    await store.addTags(['t'], ['k'], MIN)
    t.equal(await store.invalidateTags(['t']), 1)
  })

  t.test('one tag over thousands of keys', async (t) => {
    const { store } = await make(t)
    const keys = Array.from({ length: 2500 }, (_, i) => `many:${i}`)
    await store.setMany(keys.map((key) => ({ key, value: b('x'), ttlMs: MIN })))
    await store.addTags(['big'], keys, MIN)
    t.equal(await store.invalidateTags(['big']), keys.length)
    t.same(await store.getMany(keys.slice(0, 3)), [undefined, undefined, undefined])
  })
}
