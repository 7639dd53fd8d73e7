// Every fetch path on a real in-process store with an injected clock (the Redis tiers are in
// cache-redis.test.ts). Loader calls are counted; no durations are asserted.
import { test } from 'tap'
import { createCache, isUpstreamError, type CacheStatus } from '../../src/cache/cache.js'
import { UpstreamError, UpstreamTimeoutError, ValidationError } from '../../src/errors.js'
import { FRESHNESS, countingLoader, deferred, manualClock, memoryCache } from './cache-fixture.js'

test('absent → MISS through the loader; then HIT with its age', async (t) => {
  const results: Array<[CacheStatus, string]> = []
  const { cache, clock, l1 } = memoryCache(manualClock(), { onResult: (s, r) => results.push([s, r]) })
  const loader = countingLoader(() => '{"a":1}', { tags: ['list:x'] })
  const first = await cache.fetch('k', FRESHNESS, loader.fn, { route: 'lists' })
  t.equal(first.status, 'MISS')
  t.equal(first.entry.body.toString(), '{"a":1}')
  t.equal(first.entry.contentType, 'application/json')
  t.equal(first.entry.status, 200)
  t.match(first.entry.etag, /^"[A-Za-z0-9_-]+"$/)
  t.equal(first.ageS, 0)
  t.equal(l1.size, 1)
  clock.advance(9_999)
  const second = await cache.fetch('k', FRESHNESS, loader.fn, { route: 'lists' })
  t.equal(second.status, 'HIT')
  t.equal(second.ageS, 9)
  t.equal(second.entry.etag, first.entry.etag)
  t.equal(loader.calls, 1)
  await cache.fetch('k', FRESHNESS, loader.fn)
  t.same(results, [['MISS', 'lists'], ['HIT', 'lists'], ['HIT', 'other']])
})

test('stale within stale-while-revalidate → STALE at once and exactly one background refresh', async (t) => {
  const refreshErrors: unknown[] = []
  const { cache, clock } = memoryCache(manualClock(), { onRefreshError: (err) => refreshErrors.push(err) })
  await cache.fetch('k', FRESHNESS, countingLoader(() => 'old').fn)
  clock.advance(FRESHNESS.freshMs)
  const gate = deferred()
  const refresh = countingLoader(() => 'new', { gate: gate.promise })
  const concurrent = await Promise.all(Array.from({ length: 20 }, async () => cache.fetch('k', FRESHNESS, refresh.fn)))
  t.ok(concurrent.every((r) => r.status === 'STALE' && r.entry.body.toString() === 'old'))
  for (let i = 0; i < 5; i++) {
    const r = await cache.fetch('k', FRESHNESS, refresh.fn)
    t.equal(r.status, 'STALE', 'still stale while the refresh runs')
    t.equal(r.ageS, 10)
  }
  t.equal(refresh.calls, 1, 'one refresh for 25 stale reads')
  gate.resolve()
  await cache.drain()
  const after = await cache.fetch('k', FRESHNESS, refresh.fn)
  t.equal(after.status, 'HIT')
  t.equal(after.entry.body.toString(), 'new')
  t.equal(after.ageS, 0)
  t.equal(refresh.calls, 1)
  t.same(refreshErrors, [])
})

test('a failed background refresh stores nothing; the stale entry stays and a later read retries', async (t) => {
  const refreshErrors: unknown[] = []
  const { cache, clock } = memoryCache(manualClock(), { onRefreshError: (err) => refreshErrors.push(err) })
  const first = await cache.fetch('k', FRESHNESS, countingLoader(() => 'old').fn)
  clock.advance(FRESHNESS.freshMs + 1)
  const failing = countingLoader(() => 'never', { fail: () => new UpstreamError('upstream 502') })
  t.equal((await cache.fetch('k', FRESHNESS, failing.fn)).status, 'STALE')
  await cache.drain()
  t.equal(refreshErrors.length, 1)
  const again = await cache.fetch('k', FRESHNESS, failing.fn)
  t.equal(again.status, 'STALE')
  t.equal(again.entry.storedAt, first.entry.storedAt, 'the old entry is still the one stored')
  await cache.drain()
  t.equal(failing.calls, 2)
})

test('past stale-while-revalidate, within stale-if-error: the loader runs; upstream failures serve STALE', async (t) => {
  const { cache, clock } = memoryCache()
  await cache.fetch('k', FRESHNESS, countingLoader(() => 'old').fn)
  clock.advance(FRESHNESS.freshMs + FRESHNESS.staleWhileRevalidateMs)

  const down = countingLoader(() => 'x', { fail: () => new UpstreamTimeoutError('upstream deadline passed') })
  const stale = await cache.fetch('k', FRESHNESS, down.fn)
  t.equal(stale.status, 'STALE')
  t.equal(stale.entry.body.toString(), 'old')
  t.equal(stale.ageS, 30)
  t.equal(down.calls, 1, 'the loader was tried first')

  const invalid = countingLoader(() => 'x', { fail: () => new ValidationError('bad id') })
  await t.rejects(cache.fetch('k', FRESHNESS, invalid.fn), { code: 'GW_VALIDATION' }, 'other errors are rethrown')
  const custom = countingLoader(() => 'x', { fail: () => new Error('plain') })
  t.equal((await cache.fetch('k', FRESHNESS, custom.fn, { isStaleUsable: () => true })).status, 'STALE')
  await t.rejects(cache.fetch('k', FRESHNESS, down.fn, { isStaleUsable: () => false }), { code: 'GW_UPSTREAM_TIMEOUT' })

  const up = countingLoader(() => 'fresh')
  const revalidated = await cache.fetch('k', FRESHNESS, up.fn)
  t.equal(revalidated.status, 'MISS')
  t.equal(revalidated.entry.body.toString(), 'fresh')
  t.equal((await cache.fetch('k', FRESHNESS, up.fn)).status, 'HIT')
})

test('past stale-if-error the entry is gone: a failing loader is an error', async (t) => {
  const { cache, clock } = memoryCache()
  await cache.fetch('k', FRESHNESS, countingLoader(() => 'old').fn)
  clock.advance(FRESHNESS.freshMs + FRESHNESS.staleIfErrorMs)
  const down = countingLoader(() => 'x', { fail: () => new UpstreamError('upstream 503') })
  await t.rejects(cache.fetch('k', FRESHNESS, down.fn), { code: 'GW_UPSTREAM_ERROR' })
})

test('errors are never stored: the next read calls the loader again', async (t) => {
  const { cache, l1 } = memoryCache()
  const down = countingLoader(() => 'x', { fail: () => new UpstreamError('upstream 500') })
  await t.rejects(cache.fetch('k', FRESHNESS, down.fn), { code: 'GW_UPSTREAM_ERROR' })
  t.equal(l1.size, 0)
  const up = countingLoader(() => 'ok')
  t.equal((await cache.fetch('k', FRESHNESS, up.fn)).status, 'MISS')
  t.equal((await cache.fetch('k', FRESHNESS, up.fn)).status, 'HIT')
  t.equal(down.calls + up.calls, 2)
})

test('bypass runs the loader despite a fresh entry, stores and answers BYPASS', async (t) => {
  const results: CacheStatus[] = []
  const { cache } = memoryCache(manualClock(), { onResult: (s) => results.push(s) })
  let version = 'v1'
  const loader = countingLoader(() => version)
  await cache.fetch('k', FRESHNESS, loader.fn)
  version = 'v2'
  const bypassed = await cache.fetch('k', FRESHNESS, loader.fn, { bypass: true })
  t.equal(bypassed.status, 'BYPASS')
  t.equal(bypassed.entry.body.toString(), 'v2')
  const next = await cache.fetch('k', FRESHNESS, loader.fn)
  t.equal(next.status, 'HIT')
  t.equal(next.entry.body.toString(), 'v2')
  t.equal(loader.calls, 2)
  t.same(results, ['MISS', 'BYPASS', 'HIT'])
})

test('50 concurrent misses of one key → one loader call; other keys are separate', async (t) => {
  const coalesced: string[] = []
  const { cache } = memoryCache(manualClock(), { onCoalesced: (kind) => coalesced.push(kind) })
  const loader = countingLoader(() => 'one')
  const results = await Promise.all(Array.from({ length: 50 }, async () => cache.fetch('k', FRESHNESS, loader.fn)))
  t.equal(loader.calls, 1)
  t.ok(results.every((r) => r.status === 'MISS' && r.entry.body.toString() === 'one'))
  t.equal(coalesced.length, 49)
  const other = countingLoader(() => 'two')
  await Promise.all([cache.fetch('a', FRESHNESS, other.fn), cache.fetch('b', FRESHNESS, other.fn)])
  t.equal(other.calls, 2)
})

test('a failing shared miss rejects every waiter once, and is not remembered', async (t) => {
  const { cache } = memoryCache()
  const down = countingLoader(() => 'x', { fail: () => new UpstreamError('upstream 502') })
  const all = await Promise.allSettled(Array.from({ length: 10 }, async () => cache.fetch('k', FRESHNESS, down.fn)))
  t.ok(all.every((r) => r.status === 'rejected'))
  t.equal(down.calls, 1)
})

test('invalidate drops tagged entries; a load racing an invalidation of its tags is not stored', async (t) => {
  const { cache } = memoryCache()
  const tagged = countingLoader(() => 'x', { tags: ['object:1', 'list:eyeball'] })
  await cache.fetch('a', FRESHNESS, tagged.fn)
  await cache.fetch('b', FRESHNESS, countingLoader(() => 'y', { tags: ['object:2'] }).fn)
  await cache.invalidate(['list:eyeball'])
  await cache.invalidate([])
  t.equal((await cache.fetch('a', FRESHNESS, tagged.fn)).status, 'MISS')
  t.equal((await cache.fetch('b', FRESHNESS, tagged.fn)).status, 'HIT')

  const gate = deferred()
  const slow = countingLoader(() => 'before the write', { tags: ['object:9'], gate: gate.promise })
  const pending = cache.fetch('c', FRESHNESS, slow.fn)
  await slow.started
  await cache.invalidate(['object:9'])
  gate.resolve()
  t.equal((await pending).entry.body.toString(), 'before the write', 'the caller still gets its answer')
  t.equal((await cache.fetch('c', FRESHNESS, slow.fn)).status, 'MISS', 'but it was not stored')

  const unrelated = deferred()
  const other = countingLoader(() => 'z', { tags: ['object:10'], gate: unrelated.promise })
  const pendingOther = cache.fetch('d', FRESHNESS, other.fn)
  await other.started
  await cache.invalidate(['object:11'])
  unrelated.resolve()
  await pendingOther
  t.equal((await cache.fetch('d', FRESHNESS, other.fn)).status, 'HIT', 'an unrelated invalidation does not block the store')
})

test('fetchMany answers loaded entries whose bodies share the stored bytes (a loaded record is held once)', async (t) => {
  const { cache } = memoryCache(manualClock())
  const body = Buffer.from(JSON.stringify({ id: '1', lc: 'x'.repeat(20000) }))
  const { entries: [entry] } = await cache.fetchMany(['o:1'], async () => [{ key: 'o:1', body, ttlMs: 5000 }], { route: 'objects', freshnessOf: () => FRESHNESS })
  const [stored] = await cache.getEntries(['o:1'])
  t.ok(entry !== undefined && stored !== undefined)
  t.ok(entry?.body.equals(body), 'the same bytes')
  t.not(entry?.body.buffer, body.buffer, 'not the loader\'s Buffer')
  t.equal(entry?.body.buffer, stored?.body.buffer, 'the memory the store holds')
})

test('putEntries / getEntries: per-key records, in order, until they expire', async (t) => {
  const results: Array<[CacheStatus, string]> = []
  const { cache, clock } = memoryCache(manualClock(), { onResult: (s, r) => results.push([s, r]) })
  await cache.putEntries([
    { key: 'o:1', body: Buffer.from('{"id":"1"}'), ttlMs: 5000, tags: ['object:1'] },
    { key: 'o:2', body: Buffer.from('{"id":"2"}'), ttlMs: 1000, contentType: 'application/x-ndjson', status: 404 }
  ])
  const got = await cache.getEntries(['o:2', 'o:3', 'o:1'])
  t.same(got.map((e) => e?.body.toString()), ['{"id":"2"}', undefined, '{"id":"1"}'])
  t.equal(got[0]?.contentType, 'application/x-ndjson')
  t.equal(got[0]?.status, 404)
  t.same(got[2]?.tags, ['object:1'])
  clock.advance(1000)
  t.same((await cache.getEntries(['o:1', 'o:2'])).map((e) => e !== undefined), [true, false])
  await cache.invalidate(['object:1'])
  t.same(await cache.getEntries(['o:1']), [undefined])
  t.same(await cache.getEntries([]), [])
  cache.report('HIT', 'objects')
  t.same(results, [['HIT', 'objects']])
})

test('the configured freshness table is available per route', async (t) => {
  const cache = createCache()
  t.same(cache.freshness('lists'), { freshMs: 60_000, staleWhileRevalidateMs: 300_000, staleIfErrorMs: 3_600_000 })
  // No stores at all: every read goes to the loader.
  const loader = countingLoader()
  t.equal((await cache.fetch('k', FRESHNESS, loader.fn)).status, 'MISS')
  t.equal((await cache.fetch('k', FRESHNESS, loader.fn)).status, 'MISS')
  t.equal(loader.calls, 2)
})

test('isUpstreamError: only GW_UPSTREAM_* codes', async (t) => {
  t.ok(isUpstreamError(new UpstreamError('x')))
  t.ok(isUpstreamError({ code: 'GW_UPSTREAM_BUDGET' }))
  t.notOk(isUpstreamError(new ValidationError('x')))
  t.notOk(isUpstreamError(new Error('x')))
  t.notOk(isUpstreamError(null))
  t.notOk(isUpstreamError('GW_UPSTREAM_ERROR'))
})
