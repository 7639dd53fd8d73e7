// The cache with both tiers on real Redis: L2 fills L1, one loader call across two instances sharing
// one Redis (each with its own L1, as two replicas), and invalidation reaching both tiers and the other
// replica's L1.
import { test } from 'tap'
import { createInvalidationBus } from '../../src/cache/invalidation-bus.js'
import { UpstreamError } from '../../src/errors.js'
import { FRESHNESS, countingLoader, deferred, manualClock, twoTierCache } from './cache-fixture.js'
import { REDIS_URL, connectRedis } from './redis-fixture.js'
import { decodeEntry } from '../../src/cache/entry.js'
import { waitFor } from '../fixtures/wait.js'

const skip = REDIS_URL === '' ? 'REDIS_URL is not set' : false

test('an L2 hit fills L1 with the same bytes and tags', { skip }, async (t) => {
  const clock = manualClock()
  const a = await twoTierCache(t, { clock })
  const b = await twoTierCache(t, { clock, shared: a.conn })
  const loader = countingLoader(() => '{"rows":[]}', { tags: ['list:x'] })
  const stored = await a.cache.fetch('k', FRESHNESS, loader.fn)
  clock.advance(2000)
  const fromL2 = await b.cache.fetch('k', FRESHNESS, loader.fn)
  t.equal(fromL2.status, 'HIT')
  t.equal(fromL2.entry.etag, stored.entry.etag)
  t.equal(fromL2.ageS, 2)
  t.equal(loader.calls, 1)
  t.ok(await b.l1.get('k'), 'L1 of the second instance now holds it')
  t.equal(await b.l1.invalidateTags(['list:x']), 1, 'with its tags')
})

test('50 concurrent misses on two tiers → one loader call', { skip }, async (t) => {
  const { cache } = await twoTierCache(t)
  const loader = countingLoader(() => 'one')
  const results = await Promise.all(Array.from({ length: 50 }, async () => cache.fetch('k', FRESHNESS, loader.fn)))
  t.equal(loader.calls, 1)
  t.ok(results.every((r) => r.entry.body.toString() === 'one'))
})

test('two instances on one Redis with the fill lock → one loader call for the same miss', { skip }, async (t) => {
  const gate = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  const waits: string[] = []
  const b = await twoTierCache(t, {
    clock,
    shared: a.conn,
    withLock: true,
    // B found the lock taken and waits for A's fill: now let A's upstream call finish.
    onCoalesced: (kind) => { waits.push(kind); gate.resolve() }
  })
  const loaderA = countingLoader(() => 'from A', { gate: gate.promise })
  const loaderB = countingLoader(() => 'from B')
  const fromA = a.cache.fetch('k', FRESHNESS, loaderA.fn)
  // A holds the lock once it is inside its loader.
  await loaderA.started
  const [ra, rb] = await Promise.all([fromA, b.cache.fetch('k', FRESHNESS, loaderB.fn)])
  t.equal(loaderA.calls + loaderB.calls, 1)
  t.equal(ra.entry.body.toString(), 'from A')
  t.equal(rb.entry.body.toString(), 'from A')
  t.equal(rb.entry.etag, ra.entry.etag)
  t.same(waits, ['lock-wait'])
})

test('when the lock holder fails, the waiter loads itself instead of waiting out the bound', { skip }, async (t) => {
  const gate = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true, onCoalesced: () => gate.resolve() })
  const failing = countingLoader(() => 'x', { gate: gate.promise, fail: () => new UpstreamError('upstream 502') })
  const fromA = a.cache.fetch('k', FRESHNESS, failing.fn)
  await failing.started
  const loaderB = countingLoader(() => 'from B')
  const [ra, rb] = await Promise.allSettled([fromA, b.cache.fetch('k', FRESHNESS, loaderB.fn)])
  t.equal(ra.status, 'rejected')
  t.equal(rb.status === 'fulfilled' ? rb.value.entry.body.toString() : rb.reason, 'from B')
  t.equal(loaderB.calls, 1)
})

test('a background refresh defers to another replica already refreshing', { skip }, async (t) => {
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true })
  await a.cache.fetch('k', FRESHNESS, countingLoader(() => 'old').fn)
  t.equal((await b.cache.fetch('k', FRESHNESS, countingLoader().fn)).status, 'HIT')
  clock.advance(FRESHNESS.freshMs)
  const gate = deferred()
  const refreshA = countingLoader(() => 'new', { gate: gate.promise })
  const refreshB = countingLoader(() => 'new')
  t.equal((await a.cache.fetch('k', FRESHNESS, refreshA.fn)).status, 'STALE')
  await refreshA.started
  t.equal((await b.cache.fetch('k', FRESHNESS, refreshB.fn)).status, 'STALE')
  await b.cache.drain()
  gate.resolve()
  await a.cache.drain()
  t.equal(refreshA.calls, 1)
  t.equal(refreshB.calls, 0, 'B saw the lock and left the refresh to A')
})

test('invalidation removes tagged entries from L1, L2 and, through the bus, the other replica\'s L1', { skip }, async (t) => {
  const clock = manualClock()
  const conn = await connectRedis(t)
  const subscriberA = await connectRedis(t)
  const subscriberB = await connectRedis(t)
  const busA = createInvalidationBus({ publisher: conn.redis, subscriber: subscriberA.redis, prefix: conn.prefix })
  const busB = createInvalidationBus({ publisher: conn.redis, subscriber: subscriberB.redis, prefix: conn.prefix })
  await Promise.all([busA.ready, busB.ready])
  const a = await twoTierCache(t, { clock, shared: conn, bus: busA })
  const b = await twoTierCache(t, { clock, shared: conn, bus: busB })
  // B's cache subscribed first, so when this handler runs B's cache has handled the message.
  const reachedB = new Promise<string[]>((resolve) => busB.onInvalidate(resolve))
  const list = countingLoader(() => 'members', { tags: ['custom-list:vra'] })
  await a.cache.fetch('members', FRESHNESS, list.fn)
  await a.cache.fetch('untagged', FRESHNESS, countingLoader().fn)
  t.equal((await b.cache.fetch('members', FRESHNESS, list.fn)).status, 'HIT')
  t.ok(await b.l1.get('members'))

  await a.cache.invalidate(['custom-list:vra'])
  t.equal(await a.l1.get('members'), undefined, 'gone from A\'s L1')
  t.equal(await a.l2.get('members'), undefined, 'gone from L2')
  // Pub/sub delivery is asynchronous: wait for the message to reach B.
  t.same(await reachedB, ['custom-list:vra'], 'B received the invalidation')
  t.equal(await b.l1.get('members'), undefined, 'gone from B\'s L1')
  t.equal((await b.cache.fetch('members', FRESHNESS, list.fn)).status, 'MISS')
  t.equal((await a.cache.fetch('untagged', FRESHNESS, countingLoader().fn)).status, 'HIT', 'untagged entries stay')
  t.equal(list.calls, 2)
})

test('getEntries reads L2 for what L1 lacks and fills L1', { skip }, async (t) => {
  const clock = manualClock()
  const a = await twoTierCache(t, { clock })
  const b = await twoTierCache(t, { clock, shared: a.conn })
  await a.cache.putEntries([1, 2, 3].map((i) => ({ key: `o:${i}`, body: Buffer.from(`{"id":"${i}"}`), ttlMs: 60_000, tags: [`object:${i}`] })))
  const got = await b.cache.getEntries(['o:3', 'o:4', 'o:1'])
  t.same(got.map((e) => e?.body.toString()), ['{"id":"3"}', undefined, '{"id":"1"}'])
  t.same((await b.l1.getMany(['o:1', 'o:2', 'o:3'])).map((v) => v !== undefined), [true, false, true])
  await b.cache.invalidate(['object:1'])
  t.same(await b.cache.getEntries(['o:1']), [undefined])
  t.same((await a.cache.getEntries(['o:2'])).map((e) => e?.tags), [['object:2']])
})

test('a stale L1 entry yields to a newer L2 entry another replica refreshed: no upstream call', { skip }, async (t) => {
  const clock = manualClock()
  const a = await twoTierCache(t, { clock })
  const b = await twoTierCache(t, { clock, shared: a.conn })
  await a.cache.fetch('k', FRESHNESS, countingLoader(() => 'v1').fn)
  t.equal((await b.cache.fetch('k', FRESHNESS, countingLoader().fn)).status, 'HIT')
  clock.advance(FRESHNESS.freshMs)
  t.equal((await a.cache.fetch('k', FRESHNESS, countingLoader(() => 'v2').fn)).status, 'STALE')
  await a.cache.drain()
  const loaderB = countingLoader(() => 'from B')
  const fromB = await b.cache.fetch('k', FRESHNESS, loaderB.fn)
  t.equal(fromB.status, 'HIT')
  t.equal(fromB.entry.body.toString(), 'v2')
  t.equal(loaderB.calls, 0)
  t.equal((await b.l1.get('k'))?.includes('v2'), true, 'B\'s L1 now holds the newer entry')
})

test('a holder whose load outlasts the lock\'s lifetime keeps the lock: the waiter gets its fill, one loader call', { skip }, async (t) => {
  // The upstream allows minutes for a call; the lock lives a short while so that a dead holder frees it
  // soon, and its holder extends it while the load runs. Here the lock lives 300 ms and the load 1.2 s.
  const gate = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true, lockTtlMs: 300 })
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true, lockTtlMs: 300 })
  const loaderA = countingLoader(() => 'from A', { gate: gate.promise })
  const fromA = a.cache.fetch('k', FRESHNESS, loaderA.fn)
  await loaderA.started
  const loaderB = countingLoader(() => 'from B')
  const fromB = b.cache.fetch('k', FRESHNESS, loaderB.fn)
  // A third replica arriving after the lock's first lifetime has passed waits too.
  await new Promise((resolve) => setTimeout(resolve, 600))
  const c = await twoTierCache(t, { clock, shared: a.conn, withLock: true, lockTtlMs: 300 })
  const loaderC = countingLoader(() => 'from C')
  const fromC = c.cache.fetch('k', FRESHNESS, loaderC.fn)
  await new Promise((resolve) => setTimeout(resolve, 600))
  gate.resolve()
  const [ra, rb, rc] = await Promise.all([fromA, fromB, fromC])
  t.equal(loaderB.calls + loaderC.calls, 0, 'B and C waited for A\'s fill')
  t.equal(rb.entry.body.toString(), 'from A')
  t.equal(rc.entry.body.toString(), 'from A')
  t.equal(ra.entry.etag, rb.entry.etag)
})

test('a waiter whose bound passes while the holder is still loading loads itself', { skip }, async (t) => {
  const gate = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true, lockWaitMs: 50 })
  const stuck = countingLoader(() => 'from A', { gate: gate.promise })
  const fromA = a.cache.fetch('k', FRESHNESS, stuck.fn)
  await stuck.started
  const loaderB = countingLoader(() => 'from B')
  const rb = await b.cache.fetch('k', FRESHNESS, loaderB.fn)
  t.equal(rb.entry.body.toString(), 'from B')
  t.equal(loaderB.calls, 1)
  gate.resolve()
  t.equal((await fromA).entry.body.toString(), 'from A')
})

test('putEntries of a large batch lands in both tiers with its tags', { skip }, async (t) => {
  const clock = manualClock()
  const a = await twoTierCache(t, { clock })
  const b = await twoTierCache(t, { clock, shared: a.conn })
  const ids = Array.from({ length: 1200 }, (_, i) => String(1000000000000000000n + BigInt(i)))
  await a.cache.putEntries(ids.map((id) => ({ key: `o:${id}`, body: Buffer.from(`{"id":${id}}`), ttlMs: 60_000, tags: [`object:${id}`] })))
  const got = await b.cache.getEntries(ids.map((id) => `o:${id}`))
  t.equal(got.filter((e) => e !== undefined).length, ids.length, 'every record readable from L2')
  await a.cache.invalidate(ids.slice(0, 600).map((id) => `object:${id}`))
  const after = await a.l2.getMany(ids.map((id) => `o:${id}`))
  t.equal(after.filter((v) => v !== undefined).length, 600, 'the invalidated half is gone from L2')
})

test('a bulk read (fillL1: false) leaves L1 alone, except to refresh an entry L1 already holds', { skip }, async (t) => {
  const clock = manualClock()
  const { cache, l1 } = await twoTierCache(t, { clock })
  let version = 1
  const load = async (keys: string[]) => keys.map((key) => ({ key, body: Buffer.from(`${key}:v${version}`), ttlMs: 60_000 }))
  const many = { route: 'objects', freshnessOf: () => FRESHNESS }
  const body = async (key: string): Promise<string | undefined> => {
    const raw = await l1.get(key)
    return raw === undefined ? undefined : decodeEntry(raw)?.body.toString()
  }
  await cache.fetchMany(['held'], load, many)
  t.equal(await body('held'), 'held:v1', 'an ordinary read fills L1')

  await cache.fetchMany(['new'], load, { ...many, fillL1: false })
  await cache.drain()
  t.equal(await body('new'), undefined, 'a bulk read\'s miss is not copied into L1')
  t.equal(((await cache.getEntries(['new']))[0])?.body.toString(), 'new:v1', 'it is in L2')

  clock.advance(FRESHNESS.freshMs + 1000)
  version = 2
  const stale = await cache.fetchMany(['held'], load, { ...many, fillL1: false })
  t.equal(stale.status, 'STALE')
  await cache.drain()
  t.equal(await body('held'), 'held:v2', 'the entry L1 held takes the bulk read\'s refresh, so it is not answered older than L2')
})

// fetchMany (object records) loads a key whose entry is past stale-while-revalidate. A request that finds
// the fill lock taken waits for the holder's fill in L2, where the old entry still is (kept for
// stale-if-error): it took that old entry as the fill and answered it as a MISS with Age 0.
test('fetchMany waiting on another replica\'s fill takes the new entry, not the old one still in L2', { skip }, async (t) => {
  const gate = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  // The holder's call is still out at the waiter's first polls of L2 (20, 40, 80 ms).
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true, onCoalesced: () => { setTimeout(() => { gate.resolve() }, 150) } })
  const many = { route: 'objects', freshnessOf: () => FRESHNESS }
  const started = deferred()
  let version = 'old'
  let calls = 0
  const load = async (keys: string[]) => {
    calls++
    if (version === 'new') {
      started.resolve()
      await gate.promise
    }
    return keys.map((key) => ({ key, body: Buffer.from(`${key}:${version}`), ttlMs: 120_000 }))
  }
  await a.cache.fetchMany(['o:1', 'o:2'], load, many)
  await a.cache.drain()
  // The fill's lock releases go out after its L2 write, not waited for.
  const lockKeys = ['o:1', 'o:2'].map((key) => `${a.conn.prefix}{c}:l:${key}`)
  await waitFor('the first fill\'s locks to be released', async () => await a.conn.redis.exists(...lockKeys) === 0)
  // Past fresh and stale-while-revalidate, within stale-if-error: the next read loads.
  clock.advance(FRESHNESS.freshMs + FRESHNESS.staleWhileRevalidateMs + 5000)
  version = 'new'
  const fromA = a.cache.fetchMany(['o:1', 'o:2'], load, many)
  // A holds both fill locks once it is inside its load.
  await started.promise
  const [ra, rb] = await Promise.all([fromA, b.cache.fetchMany(['o:1', 'o:2'], load, many)])
  t.same(ra.entries.map((e) => e.body.toString()), ['o:1:new', 'o:2:new'])
  t.same(rb.entries.map((e) => e.body.toString()), ['o:1:new', 'o:2:new'], 'the waiter answers the holder\'s fill')
  t.equal(rb.status, 'MISS')
  t.equal(rb.ageS, 0)
  t.equal(calls, 2, 'one load for the fill, the first one aside')
})

test('fetchMany: a stale or missing-in-L1 record yields to a newer L2 entry another replica stored: no load', { skip }, async (t) => {
  // The per-key path (object records) had no such look: each replica refreshed the same record upstream.
  const clock = manualClock()
  const a = await twoTierCache(t, { clock })
  const b = await twoTierCache(t, { clock, shared: a.conn })
  const many = { route: 'objects', freshnessOf: () => FRESHNESS }
  let version = 'v1'
  const loads: string[] = []
  const load = async (keys: string[]) => {
    loads.push(...keys.map((key) => `${key}:${version}`))
    return keys.map((key) => ({ key, body: Buffer.from(`${key}:${version}`), ttlMs: 120_000 }))
  }
  await a.cache.fetchMany(['o:1', 'o:2'], load, many)
  t.equal((await b.cache.fetchMany(['o:1', 'o:2'], load, many)).status, 'HIT', 'B took A\'s entries from L2')
  clock.advance(FRESHNESS.freshMs + 1000)
  version = 'v2'
  // A serves stale and refreshes in the background; B then reads after A's refresh landed in L2.
  t.equal((await a.cache.fetchMany(['o:1', 'o:2'], load, many)).status, 'STALE')
  await a.cache.drain()
  t.same(loads, ['o:1:v1', 'o:2:v1', 'o:1:v2', 'o:2:v2'])
  const fromB = await b.cache.fetchMany(['o:1', 'o:2'], load, many)
  t.equal(fromB.status, 'HIT', 'B found A\'s refresh in L2')
  t.same(fromB.entries.map((e) => e.body.toString()), ['o:1:v2', 'o:2:v2'])
  await b.cache.drain()
  t.same(loads, ['o:1:v1', 'o:2:v1', 'o:1:v2', 'o:2:v2'], 'B loaded nothing')
})

test('fetchMany with a bypass, waiting on another replica\'s fill, takes the fill and not what was stored before', { skip }, async (t) => {
  const gate = deferred()
  const started = deferred()
  const clock = manualClock()
  const a = await twoTierCache(t, { clock, withLock: true })
  const b = await twoTierCache(t, { clock, shared: a.conn, withLock: true, onCoalesced: () => { setTimeout(() => { gate.resolve() }, 150) } })
  const many = { route: 'objects', freshnessOf: () => FRESHNESS }
  let version = 'old'
  const load = async (keys: string[]) => {
    if (version === 'new') {
      started.resolve()
      await gate.promise
    }
    return keys.map((key) => ({ key, body: Buffer.from(`${key}:${version}`), ttlMs: 120_000 }))
  }
  await a.cache.fetchMany(['o:1'], load, many)
  await a.cache.drain()
  await waitFor('the first fill\'s lock to be released', async () => await a.conn.redis.exists(`${a.conn.prefix}{c}:l:o:1`) === 0)
  clock.advance(1000)
  version = 'new'
  const fromA = a.cache.fetchMany(['o:1'], load, { ...many, bypass: true })
  await started.promise
  const [ra, rb] = await Promise.all([fromA, b.cache.fetchMany(['o:1'], load, { ...many, bypass: true })])
  t.equal(ra.entries[0]?.body.toString(), 'o:1:new')
  t.equal(rb.entries[0]?.body.toString(), 'o:1:new', 'the fresh fill, not the entry the bypass skipped')
  t.equal(rb.status, 'BYPASS')
})

// A prediction riding along another read (service/prefetch.ts) is stored through putEntries when its
// call returns. Stored without a mark, a record the upstream read before another replica's write landed
// survived that write's invalidation and was served as a HIT.
test('putEntries with a mark skips what another replica invalidated since', { skip }, async (t) => {
  const clock = manualClock()
  const conn = await connectRedis(t)
  const [subA, subB] = [await connectRedis(t), await connectRedis(t)]
  const busA = createInvalidationBus({ publisher: conn.redis, subscriber: subA.redis, prefix: conn.prefix })
  const busB = createInvalidationBus({ publisher: conn.redis, subscriber: subB.redis, prefix: conn.prefix })
  await Promise.all([busA.ready, busB.ready])
  const a = await twoTierCache(t, { clock, shared: conn, bus: busA })
  const b = await twoTierCache(t, { clock, shared: conn, bus: busB })
  const reachedB = new Promise<string[]>((resolve) => busB.onInvalidate(resolve))
  // B's call for X leaves; A writes X and invalidates it; B hears of it; then B's call returns.
  const mark = b.cache.mark()
  await a.cache.invalidate(['object:x'])
  await reachedB
  const item = { key: 'objects:x', body: Buffer.from('{"v":"before the write"}'), ttlMs: 60_000, tags: ['object:x'] }
  await b.cache.putEntries([item], mark)
  await b.cache.drain()
  t.same(await b.cache.getEntries(['objects:x']), [undefined], 'not stored: the write came after the call left')
  await b.cache.putEntries([{ ...item, key: 'objects:y', tags: ['object:y'] }], mark)
  t.equal((await a.cache.getEntries(['objects:y']))[0]?.body.toString(), '{"v":"before the write"}', 'records no write touched are stored')
})
