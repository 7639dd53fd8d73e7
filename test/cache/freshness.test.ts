import { test } from 'tap'
import fc from 'fast-check'
import { DEFAULT_FRESHNESS, ROUTE_IDS, buildCacheControl, parseFreshness, storeTtlMs } from '../../src/cache/freshness.js'
import { loadConfig } from '../../src/config.js'
import { createCache, type LoaderResult, type PutItem } from '../../src/cache/cache.js'
import { createMemoryStore } from '../../src/cache/memory-store.js'
import { UpstreamError } from '../../src/errors.js'

test('an empty setting gives the documented defaults', async (t) => {
  t.same(parseFreshness(''), DEFAULT_FRESHNESS)
  t.same(parseFreshness(loadConfig({}).CACHE_FRESHNESS), DEFAULT_FRESHNESS)
  t.same(DEFAULT_FRESHNESS.objects, { freshMs: 600_000, staleWhileRevalidateMs: 3_600_000, staleIfErrorMs: 86_400_000 })
  t.same(DEFAULT_FRESHNESS['objects-missing'], { freshMs: 120_000, staleWhileRevalidateMs: 0, staleIfErrorMs: 0 })
  t.same(DEFAULT_FRESHNESS.lists, { freshMs: 60_000, staleWhileRevalidateMs: 300_000, staleIfErrorMs: 3_600_000 })
})

test('overrides replace the given fields of the given routes only', async (t) => {
  const field = fc.record({ freshS: fc.nat(86_400), swrS: fc.nat(86_400), sieS: fc.nat(86_400) }, { requiredKeys: [] })
  fc.assert(fc.property(fc.dictionary(fc.constantFrom(...ROUTE_IDS), field), (overrides) => {
    const table = parseFreshness(JSON.stringify(overrides))
    return ROUTE_IDS.every((route) => {
      const o = overrides[route]
      const d = DEFAULT_FRESHNESS[route]
      const got = table[route]
      return got.freshMs === (o?.freshS === undefined ? d.freshMs : o.freshS * 1000) &&
        got.staleWhileRevalidateMs === (o?.swrS === undefined ? d.staleWhileRevalidateMs : o.swrS * 1000) &&
        got.staleIfErrorMs === (o?.sieS === undefined ? d.staleIfErrorMs : o.sieS * 1000)
    })
  }))
  const table = parseFreshness('{"lists":{"freshS":30,"swrS":600,"sieS":3600}}')
  t.same(table.lists, { freshMs: 30_000, staleWhileRevalidateMs: 600_000, staleIfErrorMs: 3_600_000 })
})

test('a bad setting fails with a message naming the route and field', async (t) => {
  t.throws(() => parseFreshness('{lists'), /CACHE_FRESHNESS: not valid JSON/)
  t.throws(() => parseFreshness('[1]'), /CACHE_FRESHNESS: must be a JSON object/)
  t.throws(() => parseFreshness('{"listz":{}}'), /unknown route "listz"/)
  t.throws(() => parseFreshness('{"lists":3}'), /route "lists" must be an object/)
  t.throws(() => parseFreshness('{"lists":{"fresh":3}}'), /route "lists" has unknown field "fresh"/)
  t.throws(() => parseFreshness('{"cone":{"swrS":-1}}'), /route "cone" field "swrS" must be a whole number/)
  t.throws(() => parseFreshness('{"cone":{"sieS":1.5}}'), /route "cone" field "sieS"/)
  t.throws(() => parseFreshness('{"cone":{"freshS":"60"}}'), /route "cone" field "freshS"/)
  t.throws(() => parseFreshness('{"__proto__":{}}'), /unknown route "__proto__"/)
})

test('stores keep an entry for fresh plus the longer stale window', async (t) => {
  t.equal(storeTtlMs(DEFAULT_FRESHNESS.objects), 600_000 + 86_400_000)
  t.equal(storeTtlMs({ freshMs: 1000, staleWhileRevalidateMs: 5000, staleIfErrorMs: 2000 }), 6000)
})

test('Cache-Control: private, the fresh time left, and the stale windows', async (t) => {
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.lists, 0), 'private, max-age=60, stale-while-revalidate=300, stale-if-error=3600')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.lists, 45), 'private, max-age=15, stale-while-revalidate=300, stale-if-error=3600')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.lists, 90), 'private, max-age=0, stale-while-revalidate=300, stale-if-error=3600')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS['objects-missing'], 0), 'private, max-age=120')
})

// The gateway serves nothing older than CACHE_MAX_STALE_S; the stale windows it announces counted from
// when the answer goes stale, so uncapped they let a client's cache keep an object record 10 minutes
// past that (max-age 600, then stale-if-error 86400).
test('Cache-Control: the stale windows end where the maximum staleness does', async (t) => {
  const day = 86_400
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.objects, 0, day), 'private, max-age=600, stale-while-revalidate=3600, stale-if-error=85800')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.objects, 80_000, day), 'private, max-age=0, stale-while-revalidate=3600, stale-if-error=6400')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.objects, day, day), 'private, max-age=0', 'no staleness left: none announced')
  t.equal(buildCacheControl(DEFAULT_FRESHNESS.lists, 0, 3600), 'private, max-age=60, stale-while-revalidate=300, stale-if-error=3540')
  fc.assert(fc.property(fc.nat(90_000), fc.nat(200_000), (ageS, maxStaleS) => {
    const header = buildCacheControl(DEFAULT_FRESHNESS.objects, ageS, maxStaleS)
    const value = (name: string): number => Number(new RegExp(`${name}=(\\d+)`).exec(header)?.[1] ?? 0)
    const staleFrom = ageS + value('max-age')
    return staleFrom + value('stale-while-revalidate') <= Math.max(staleFrom, maxStaleS) &&
      staleFrom + value('stale-if-error') <= Math.max(staleFrom, maxStaleS)
  }))
})

// The wall clock stepped back (NTP step, VM resume) after an entry was stored: its age read negative,
// which counted as fresh, so a `lists` entry fresh for 60 s answered HIT with Age 0 and max-age=60 for
// the whole length of the step (an hour here). An entry stored more than a few seconds ahead of the clock
// (more than replicas' clocks differ) has an unknown age: it is never served, but loaded again like an
// absent one. (Counted as just past its freshness, it was served STALE with Age 60 past the maximum
// staleness, and HIT with Age 0 again once the clock had caught up.)
test('a clock stepping back: an entry stored ahead of the clock is loaded again, never served', async (t) => {
  let clock = Date.UTC(2026, 10, 30, 12)
  const now = (): number => clock
  const cache = createCache({ l1: createMemoryStore({ maxBytes: 1 << 20, now }), now })
  let loads = 0
  const loader = async (): Promise<LoaderResult> => ({ body: Buffer.from(`[${++loads}]`), contentType: 'application/json' })
  const f = DEFAULT_FRESHNESS.lists
  t.equal((await cache.fetch('k', f, loader)).status, 'MISS')
  clock -= 3_600_000
  clock += 10 * 60_000
  t.match(await cache.fetch('k', f, loader), { status: 'MISS', ageS: 0 }, 'loaded again in the foreground')
  t.equal(loads, 2)
  t.match(await cache.fetch('k', f, loader), { status: 'HIT', ageS: 0 }, 'the new entry is fresh from the new reading')

  // Per-key entries (object records): the same rules.
  const records = async (keys: string[]): Promise<PutItem[]> => keys.map((key) => ({ key, body: Buffer.from(`{"n":${++loads}}`), ttlMs: storeTtlMs(DEFAULT_FRESHNESS.objects) }))
  const many = { route: 'objects', freshnessOf: () => DEFAULT_FRESHNESS.objects }
  t.equal((await cache.fetchMany(['o:1', 'o:2'], records, many)).status, 'MISS')
  clock -= 3_600_000
  const before = loads
  t.match(await cache.fetchMany(['o:1', 'o:2'], records, many), { status: 'MISS', ageS: 0 }, 'a batch of records stored an hour ahead of the clock')
  t.equal(loads, before + 2, 'both loaded again')
  t.match(await cache.fetchMany(['o:1', 'o:2'], records, many), { status: 'HIT', ageS: 0 })
  clock -= 3_600_000
  const down = async (): Promise<PutItem[]> => { throw new UpstreamError('upstream 502') }
  await t.rejects(cache.fetchMany(['o:1', 'o:2'], down, many), { code: 'GW_UPSTREAM_ERROR' }, 'a failed load is an error, as for absent records')

  // A route never served stale ("does not exist" markers) loads again.
  const missing = DEFAULT_FRESHNESS['objects-missing']
  t.equal((await cache.fetch('m', missing, loader)).status, 'MISS')
  clock -= 3_600_000
  t.equal((await cache.fetch('m', missing, loader)).status, 'MISS', 'a marker stored ahead of the clock is loaded again')

  // Not even within stale-if-error: how long it has been stale cannot be told.
  const errorOnly = { freshMs: 60_000, staleWhileRevalidateMs: 0, staleIfErrorMs: 3_600_000 }
  t.equal((await cache.fetch('e', errorOnly, loader)).status, 'MISS')
  clock -= 3_600_000
  const failing = async (): Promise<LoaderResult> => { throw new UpstreamError('upstream 502') }
  await t.rejects(cache.fetch('e', errorOnly, failing), { code: 'GW_UPSTREAM_ERROR' }, 'before: STALE upstream-error, Age 60')
})

test('a clock stepping back with the upstream down: an entry of unknown age is never served stale past the maximum staleness', async (t) => {
  let clock = Date.UTC(2026, 11, 1, 12)
  const now = (): number => clock
  const cache = createCache({ l1: createMemoryStore({ maxBytes: 1 << 20, now }), now, maxStaleMs: 10 * 60_000 })
  const f = { freshMs: 60_000, staleWhileRevalidateMs: 600_000, staleIfErrorMs: 3_600_000 }
  let loads = 0
  let isDown = false
  const loader = async (): Promise<LoaderResult> => {
    loads++
    if (isDown) throw new UpstreamError('upstream 502')
    return { body: Buffer.from(`[${loads}]`), contentType: 'application/json' }
  }
  const read = async () => { try { return await cache.fetch('k', f, loader) } catch (err) { return { error: (err as { code?: string }).code } } }
  t.equal((await cache.fetch('k', f, loader)).status, 'MISS')
  const storedAt = clock
  isDown = true
  clock = storedAt + 1000 - 20 * 60_000
  // Before: STALE Age 60 at each of these, real ages 5 and 15 min, past the maximum staleness of 10 min.
  for (const realMin of [0, 5, 15]) {
    clock = storedAt + 1000 - 20 * 60_000 + realMin * 60_000
    t.same(await read(), { error: 'GW_UPSTREAM_ERROR' }, `${realMin} min after the step: an error, as with no entry`)
  }
  t.equal(loads, 4, 'each read tried a load')

  // Under a low budget (background work may not spend) it is not answered budget-low either: it is loaded.
  cache.setBudgetPolicy({ maxStaleMs: 10 * 60_000, backgroundAllowed: () => false })
  t.same(await read(), { error: 'GW_UPSTREAM_ERROR' }, 'loaded, not served without a load')
  isDown = false
  t.match(await read(), { status: 'MISS', ageS: 0 })
  cache.setBudgetPolicy({ maxStaleMs: 10 * 60_000, backgroundAllowed: () => true })

  // What is left: an entry whose loads kept failing until the clock is back within 5 s of its storedAt
  // is taken as new from then on (before: HIT Age 0 there too, after STALE Age 60): bounded by the step.
  t.equal((await cache.fetch('r', f, loader)).status, 'MISS')
  const rStoredAt = clock
  isDown = true
  clock = rStoredAt - 20 * 60_000
  t.same(await read2(), { error: 'GW_UPSTREAM_ERROR' })
  clock = rStoredAt - 5000
  t.match(await cache.fetch('r', f, loader), { status: 'HIT', ageS: 0 }, 'the residual: taken as new once the clock has caught up')
  async function read2 () { try { return await cache.fetch('r', f, loader) } catch (err) { return { error: (err as { code?: string }).code } } }
})

test('a clock stepping back a little (as replicas\' clocks differ): an entry stored up to 5 s ahead is fresh', async (t) => {
  let clock = Date.UTC(2026, 10, 30, 12)
  const now = (): number => clock
  const cache = createCache({ l1: createMemoryStore({ maxBytes: 1 << 20, now }), now })
  let loads = 0
  const loader = async (): Promise<LoaderResult> => ({ body: Buffer.from(`[${++loads}]`), contentType: 'application/json' })
  await cache.fetch('k', DEFAULT_FRESHNESS.lists, loader)
  clock -= 5000
  t.match(await cache.fetch('k', DEFAULT_FRESHNESS.lists, loader), { status: 'HIT', ageS: 0 })
  t.equal(loads, 1)
})
