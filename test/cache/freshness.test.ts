import { test } from 'tap'
import fc from 'fast-check'
import { DEFAULT_FRESHNESS, ROUTE_IDS, buildCacheControl, parseFreshness, storeTtlMs } from '../../src/cache/freshness.js'
import { loadConfig } from '../../src/config.js'

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
