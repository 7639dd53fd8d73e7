// Budget-aware freshness and priorities: with the upstream budget low, background work spends nothing,
// cached entries answer past their freshness (never older than CACHE_MAX_STALE_S) instead of a 503, and
// the tokens left go to misses nothing cached can answer; those get 503 GW_UPSTREAM_BUDGET with a
// Retry-After computed from the budget when it is spent.
//
// The app tests run at UPSTREAM_RATE=3/hour (one token every 1,200 s, so nothing refills during a test)
// and age entries with one-second freshness windows on real Redis; the refill test (memory mode) and
// the cache tests use an injected clock.
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, FIXTURE_IDS, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'
import { createCache, type LoaderResult, type PutItem } from '../../src/cache/cache.js'
import { createMemoryStore } from '../../src/cache/memory-store.js'
import type { Freshness } from '../../src/cache/freshness.js'
import { UpstreamBudgetError, UpstreamError, withRetryAfter } from '../../src/errors.js'
import { backgroundAllowed, backgroundHeadroom, estimatedPace, estimatedRemaining } from '../../src/service/priorities.js'
import { parseRate } from '../../src/upstream/budget.js'
import { loadConfig } from '../../src/config.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function lowBudgetApp (t: Test, config: Record<string, string | number | boolean>, opts: Omit<Parameters<typeof buildTestApp>[1], 'config'> = {}) {
  const bot = makeConsumer('bot', { scopes: ['read'], rate: '100000/minute', daily_objects: 1000000, upstream_share: 10000 })
  // Prefetch off: every upstream call here is one a test makes on purpose.
  const built = await buildTestApp(t, { ...opts, config: { CONSUMERS_FILE: consumersFile(t, [bot]), UPSTREAM_RATE: '3/hour', PREFETCH_ENABLED: false, ...config } })
  const get = async (url: string) => built.app.inject({ url, headers: { authorization: `Bearer ${bot.key}` } })
  return { ...built, get }
}

const T0 = Date.UTC(2026, 0, 5, 12)

/** lowBudgetApp in memory mode on an injected clock (the budget refills on it too): `advance(ms)`, `at(ms after T0)`. */
async function clockedApp (t: Test, config: Record<string, string | number | boolean>) {
  let clock = T0
  const built = await lowBudgetApp(t, config, { useRedis: false, deps: { now: () => clock } })
  return { ...built, advance: (ms: number) => { clock += ms }, at: (ms: number) => { clock = T0 + ms } }
}

/** A cone at its own position: each i a distinct cache entry. */
const coneUrl = (i: number): string => `/v1/cone?ra=${i + 1}&dec=0&radius=5`

/**
 * Caches cones 0..n-1 (one upstream call each), checks the tokens left and whether background work is
 * allowed then (the estimate refills from that look at the figure), lets `ms` pass and checks the estimate.
 */
async function warmCones (t: Test, app: FastifyInstance, get: (url: string) => Promise<{ statusCode: number }>, n: number, left: number, isAllowed: boolean, ms: number, advance: (ms: number) => void, estimate: number) {
  for (let i = 0; i < n; i++) t.equal((await get(coneUrl(i))).statusCode, 200)
  t.equal(app.upstream.client.budgetRemaining, left)
  t.equal(backgroundAllowed(app), isAllowed, `background work ${isAllowed ? '' : 'not '}allowed at ${left} tokens (the estimate refills from here)`)
  advance(ms)
  t.equal(estimatedRemaining(app), estimate)
}

function calls (sandbox: { calls: Map<string, number> }): number {
  let n = 0
  for (const [endpoint, count] of sandbox.calls) if (endpoint !== 'auth-token') n += count
  return n
}

test('headroom: UPSTREAM_BACKGROUND_HEADROOM as a count or a share of the bucket', async (t) => {
  const h = (rate: string, headroom: string) => backgroundHeadroom({ UPSTREAM_RATE: rate, UPSTREAM_BACKGROUND_HEADROOM: headroom })
  t.equal(h('100/hour', '20%'), 20)
  t.equal(h('3/hour', '25%'), 1, 'a share rounds up to whole tokens')
  t.equal(h('100/hour', '7'), 7)
  t.equal(h('3/hour', '50'), 3, 'never above the capacity')
  t.equal(h('100/hour', '0'), 0)
  t.equal(loadConfig({}).UPSTREAM_BACKGROUND_HEADROOM, '20%', 'default')
  t.throws(() => loadConfig({ UPSTREAM_BACKGROUND_HEADROOM: '-1' }))
  t.throws(() => loadConfig({ UPSTREAM_BACKGROUND_HEADROOM: '0.2' }))
  t.throws(() => loadConfig({ UPSTREAM_BACKGROUND_HEADROOM: '120%' }))
})

test('backgroundAllowed(app): only while the bucket is above the headroom and the pace holds a token', async (t) => {
  // Memory mode on an injected clock. 10/hour with a headroom of 2: the pace holds 2 tokens and refills
  // 8 an hour (one every 7.5 minutes); the bucket refills one every 6 minutes.
  const { app, sandbox, get, advance } = await clockedApp(t, { UPSTREAM_RATE: '10/hour', PREFETCH_ENABLED: false, UPSTREAM_BACKGROUND_HEADROOM: '2' })
  t.equal(parseRate(app.config.UPSTREAM_RATE).capacity, 10)
  t.equal(app.upstream.client.budgetRemaining, Infinity)
  t.ok(backgroundAllowed(app), 'before the first call')
  const ids = sandbox.ids().slice(0, 12).map(String)
  t.equal((await get(`/v1/objects/${ids[0] as string}`)).statusCode, 200)
  t.equal(app.upstream.client.budgetRemaining, 9)
  t.equal(estimatedPace(app), 1)
  t.ok(backgroundAllowed(app), '9 tokens left, the pace holds 1')
  t.equal((await get(`/v1/objects/${ids[1] as string}`)).statusCode, 200)
  t.equal(app.upstream.client.budgetRemaining, 8)
  t.notOk(backgroundAllowed(app), '8 tokens left, far above the headroom, but the pace is spent: the rolling hour is kept for misses')
  advance(7.5 * 60 * 1000)
  t.ok(backgroundAllowed(app), 'the pace refills (capacity - headroom) an hour')
  t.ok(backgroundAllowed(app, true), 'a claimed token…')
  t.notOk(backgroundAllowed(app), '…counts as spent until the next budget figure')
  // Foreground misses are never held back by the pace; they drive it below zero.
  for (const id of ids.slice(2, 10)) t.equal((await get(`/v1/objects/${id}`)).statusCode, 200)
  t.equal(app.upstream.client.budgetRemaining, 1)
  t.ok(estimatedPace(app) < -6, `the pace ${estimatedPace(app)} owes what the misses spent`)
  advance(60 * 60 * 1000)
  t.equal(estimatedRemaining(app), 10, 'an hour later the bucket is full')
  t.ok(backgroundAllowed(app), 'and the pace has earned a token again')
})

test('the budget low: stale-while-revalidate entries are served without a background refresh; the last token answers a miss', async (t) => {
  // Tables fresh for 1 s, then served while a refresh runs for 10 min. 3 tokens, 1 kept for misses.
  const { app, sandbox, get } = await lowBudgetApp(t, {
    UPSTREAM_BACKGROUND_HEADROOM: '1',
    CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 600, sieS: 600 } })
  })
  sandbox.resetCalls()
  t.equal((await get('/v1/lists/good/objects')).statusCode, 200)
  t.equal((await get('/v1/lists/possible/objects')).statusCode, 200)
  t.equal(calls(sandbox), 2)
  await sleep(1100)
  for (const list of ['good', 'possible']) {
    const res = await get(`/v1/lists/${list}/objects`)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-cache'], 'STALE')
    t.equal(res.headers['x-cache-reason'], 'budget-low', `${list}: the hint says why it is not being refreshed`)
    t.ok(Number(res.headers.age) >= 1, `${list}: Age ${String(res.headers.age)}`)
  }
  await app.cache.drain()
  t.equal(calls(sandbox), 2, 'no background refresh spent a token below the headroom')
  const miss = await get(`/v1/objects/${FIXTURE_IDS.A}`)
  t.equal(miss.statusCode, 200, 'the token kept for foreground misses answered one')
  t.equal(calls(sandbox), 3)
  const refused = await get(`/v1/objects/${FIXTURE_IDS.B}`)
  t.equal(refused.statusCode, 503, 'a miss nothing cached can answer, with the budget spent')
  t.equal(refused.json().code, 'GW_UPSTREAM_BUDGET')
  // 3/hour: one token every 1,200 s; the bucket is just below empty.
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter > 1100 && retryAfter <= 1200, `Retry-After ${retryAfter} s is the time until the bucket has a token`)
})

test('the budget spent: entries past every freshness window are served up to CACHE_MAX_STALE_S, not refused', async (t) => {
  // Tables fresh for 1 s and usable for 1 s more if the upstream fails: by 2 s they are past every window.
  const { app, sandbox, get } = await lowBudgetApp(t, {
    UPSTREAM_BACKGROUND_HEADROOM: '0',
    CACHE_MAX_STALE_S: 3600,
    CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 0, sieS: 1 }, objects: { freshS: 1, swrS: 0, sieS: 1 } })
  })
  sandbox.resetCalls()
  const first = await get('/v1/lists/good/objects')
  t.equal(first.statusCode, 200)
  t.equal((await get(`/v1/objects/${FIXTURE_IDS.A}`)).statusCode, 200)
  t.equal((await get(`/v1/objects/${FIXTURE_IDS.C}`)).statusCode, 200)
  t.equal(calls(sandbox), 3, 'the budget is spent')
  await sleep(2100)
  const list = await get('/v1/lists/good/objects')
  t.equal(list.statusCode, 200, 'the cached list answers instead of a 503')
  t.equal(list.headers['x-cache'], 'STALE')
  t.equal(list.headers['x-cache-reason'], 'budget-low')
  t.ok(Number(list.headers.age) >= 2 && Number(list.headers.age) < 3600, `Age ${String(list.headers.age)} within the maximum staleness`)
  t.ok(list.body === first.body, 'the same answer as when it was loaded')
  const object = await get(`/v1/objects/${FIXTURE_IDS.A}`)
  t.equal(object.statusCode, 200, 'a cached object record answers too')
  t.equal(object.headers['x-cache'], 'STALE')
  t.equal(object.headers['x-cache-reason'], 'budget-low')
  const batch = await get(`/v1/objects?ids=${FIXTURE_IDS.A},${FIXTURE_IDS.C}`)
  t.equal(batch.statusCode, 200)
  t.equal(batch.headers['x-cache'], 'STALE')
  const mixed = await get(`/v1/objects?ids=${FIXTURE_IDS.A},${FIXTURE_IDS.D}`)
  t.equal(mixed.statusCode, 503, 'a batch with an id nothing cached can answer still needs a token')
  t.equal(mixed.json().code, 'GW_UPSTREAM_BUDGET')
  t.ok(Number(mixed.headers['retry-after']) >= 1)
  t.equal(calls(sandbox), 3, 'no upstream call after the budget was spent')
  t.ok(app.upstream.client.budgetRemaining === 0)
})

test('nothing served is older than CACHE_MAX_STALE_S', async (t) => {
  const { sandbox, get } = await lowBudgetApp(t, {
    UPSTREAM_BACKGROUND_HEADROOM: '0',
    CACHE_MAX_STALE_S: 3,
    // The route's own stale windows are longer than the maximum staleness: the maximum wins.
    CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 600, sieS: 3600 } })
  })
  t.equal((await get('/v1/lists/good/objects')).statusCode, 200)
  t.equal((await get(`/v1/objects/${FIXTURE_IDS.A}`)).statusCode, 200)
  t.equal((await get(`/v1/objects/${FIXTURE_IDS.C}`)).statusCode, 200)
  sandbox.resetCalls()
  await sleep(1100)
  const stale = await get('/v1/lists/good/objects')
  t.equal(stale.statusCode, 200)
  t.equal(stale.headers['x-cache'], 'STALE')
  t.equal(stale.headers['x-cache-reason'], 'budget-low')
  t.ok(Number(stale.headers.age) < 3, `Age ${String(stale.headers.age)} below the maximum staleness`)
  await sleep(2000)
  const old = await get('/v1/lists/good/objects')
  t.equal(old.statusCode, 503, 'past the maximum staleness the entry is a miss, and the budget is spent')
  t.equal(old.json().code, 'GW_UPSTREAM_BUDGET')
  t.ok(Number(old.headers['retry-after']) > 1000, 'Retry-After from the budget')
  t.equal(calls(sandbox), 0)
})

test('background work resumes once the bucket and the pace have refilled, without a foreground call', async (t) => {
  // Memory mode on the app's injected clock: the budget refills on it too.
  const { app, sandbox, get, advance } = await clockedApp(t, {
    UPSTREAM_RATE: '3/hour',
    PREFETCH_ENABLED: false,
    UPSTREAM_BACKGROUND_HEADROOM: '1',
    CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 7200, sieS: 7200 } })
  })
  sandbox.resetCalls()
  t.equal((await get('/v1/lists/good/objects')).statusCode, 200)
  t.equal((await get('/v1/lists/possible/objects')).statusCode, 200)
  advance(2000)
  const low = await get('/v1/lists/good/objects')
  t.equal(low.headers['x-cache-reason'], 'budget-low')
  t.notOk(backgroundAllowed(app), '1 token left')
  await app.cache.drain()
  t.equal(calls(sandbox), 2)
  // 3/hour: one token every 20 minutes; the pace (a headroom of 1) refills 2 an hour and owes one.
  advance(20 * 60 * 1000)
  t.equal(estimatedRemaining(app), 2, 'the bucket has refilled above the headroom…')
  t.notOk(backgroundAllowed(app), '…but the pace has not')
  advance(40 * 60 * 1000)
  t.ok(backgroundAllowed(app), 'the refill since the last call counts')
  const refreshed = await get('/v1/lists/good/objects')
  t.equal(refreshed.headers['x-cache'], 'STALE')
  t.equal(refreshed.headers['x-cache-reason'], undefined, 'an ordinary stale-while-revalidate answer')
  await app.cache.drain()
  t.equal(calls(sandbox), 3, 'the background refresh ran')
  const fresh = await get('/v1/lists/good/objects')
  t.equal(fresh.headers['x-cache'], 'HIT')
  t.equal(fresh.headers.age, '0')
})

test('a replica that has made no upstream call yet spends at most one token on background work until its first figure', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  // Replica A spends the shared bucket to its headroom (12 tokens, kept for misses) on 18 cone misses; a
  // new replica B (a restart, a scale-out) on the same Redis then finds 10 of those entries stale. Cone
  // entries are fresh for 1 s.
  const sandbox = await startTestSandbox(t)
  const config = {
    UPSTREAM_RATE: '30/hour',
    UPSTREAM_BACKGROUND_HEADROOM: '12',
    REDIS_KEY_PREFIX: uniquePrefix('fresh-replica'),
    CACHE_FRESHNESS: JSON.stringify({ cone: { freshS: 1, swrS: 600, sieS: 600 } })
  }
  const a = await lowBudgetApp(t, config, { upstream: sandbox })
  const cone = (get: typeof a.get, i: number) => get(`/v1/cone?ra=${10 + i}&dec=5&radius=5`)
  for (let i = 0; i < 18; i++) t.equal((await cone(a.get, i)).statusCode, 200)
  t.equal(a.app.upstream.client.budgetRemaining, 12, 'the bucket is at the headroom')
  await sleep(1100)
  const b = await lowBudgetApp(t, config, { upstream: sandbox })
  sandbox.resetCalls()
  const stale = await Promise.all(Array.from({ length: 10 }, async (_, i) => cone(b.get, i)))
  await b.app.cache.drain()
  t.ok(stale.every((r) => r.statusCode === 200 && r.headers['x-cache'] === 'STALE'), 'all ten answered from the cache')
  t.ok(calls(sandbox) <= 1, `${calls(sandbox)} background call(s): one at most before B knows the budget`)
  t.notOk(backgroundAllowed(b.app), 'once a call brought the figure, the headroom holds')
})

test('concurrent revalidations never spend the bucket below a headroom of more than half of it', async (t) => {
  // 100/hour with a headroom of 60: the pace's burst is 60 too, so the pace alone allowed every claim the
  // bucket's headroom should have refused. 39 cone entries, warmed by 39 misses (61 tokens left, 65 after
  // 150 s of refill), all read stale at once: only 5 tokens lie above the headroom.
  // Until 2026-12-02 claims came off the pace only: 22 refreshes, 43 tokens left.
  const { app, sandbox, get, advance } = await clockedApp(t, {
    UPSTREAM_RATE: '100/hour',
    UPSTREAM_BACKGROUND_HEADROOM: '60',
    CACHE_FRESHNESS: JSON.stringify({ cone: { freshS: 1, swrS: 3600, sieS: 3600 } })
  })
  const cone = (i: number) => get(coneUrl(i))
  await warmCones(t, app, get, 39, 61, true, 150_000, advance, 65)
  sandbox.resetCalls()
  const stale = await Promise.all(Array.from({ length: 39 }, async (_, i) => cone(i)))
  await app.cache.drain()
  t.ok(stale.every((r) => r.statusCode === 200 && r.headers['x-cache'] === 'STALE'), 'all answered from the cache')
  t.equal(calls(sandbox), 5, `${calls(sandbox)} refreshes: one for each token above the headroom`)
  t.equal(app.upstream.client.budgetRemaining, 60, `${app.upstream.client.budgetRemaining} tokens left: the headroom is kept for misses`)
})

test('a claim waiting in the batching window still counts after a foreground call brings a new figure', async (t) => {
  // 100/hour with a headroom of 60 and 62 tokens left: two above the headroom. A stale object's refresh
  // claims one and waits in a 300 ms batching window; meanwhile a foreground miss spends the other.
  // Until 2026-12-02 the miss's figure dropped the claim, a stale cone refreshed on it: 3 calls, 59 left.
  const { app, sandbox, get, advance } = await clockedApp(t, {
    UPSTREAM_RATE: '100/hour',
    UPSTREAM_BACKGROUND_HEADROOM: '60',
    UPSTREAM_BATCH_WINDOW_MS: 300,
    UPSTREAM_BATCH_WINDOW_MAX_MS: 300,
    CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 1, swrS: 3600, sieS: 3600 }, cone: { freshS: 1, swrS: 3600, sieS: 3600 } })
  })
  const id = String(sandbox.ids()[0])
  const cone = (i: number) => get(coneUrl(i))
  t.equal((await get(`/v1/objects/${id}`)).statusCode, 200)
  // Two minutes on the entries need one token of the pace, and the bucket has earned 3.4 tokens.
  await warmCones(t, app, get, 40, 59, false, 121_000, advance, 62)
  sandbox.resetCalls()
  const object = get(`/v1/objects/${id}`)
  t.equal((await object).headers['x-cache'], 'STALE', 'the object refresh claims a token and waits in the window')
  t.equal((await cone(100)).headers['x-cache'], 'MISS', 'a foreground miss takes the other token')
  t.equal((await cone(0)).headers['x-cache'], 'STALE')
  await sleep(400)
  await app.cache.drain()
  t.equal(sandbox.calls.get('objects'), 1, `${[...sandbox.calls].join(' ')}: the claimed refresh ran`)
  t.ok(app.upstream.client.budgetRemaining >= 60, `${app.upstream.client.budgetRemaining} tokens left, ${calls(sandbox)} calls: the stale cone was not refreshed on the claimed token`)
})

test('the pace spent, the bucket not: stale entries answer without a call up to CACHE_MAX_STALE_S; misses and older entries still load', async (t) => {
  // Memory mode on an injected clock. 10/hour with a headroom of 2: the pace holds 2 tokens.
  const { app, sandbox, get, at } = await clockedApp(t, {
    UPSTREAM_RATE: '10/hour',
    UPSTREAM_BACKGROUND_HEADROOM: '2',
    PREFETCH_ENABLED: false,
    CACHE_MAX_STALE_S: 600,
    CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 1, swrS: 60, sieS: 60 } })
  })
  sandbox.resetCalls()
  const first = await get('/v1/lists/good/objects')
  t.equal((await get('/v1/lists/possible/objects')).statusCode, 200)
  t.equal(calls(sandbox), 2, 'two loads spent the pace')
  t.ok(app.upstream.client.budgetRemaining > backgroundHeadroom(app.config), 'the bucket is far above the headroom')
  for (const [afterS, what] of [[5, 'within stale-while-revalidate'], [125, 'past every window of the route']] as const) {
    at(afterS * 1000)
    const res = await get('/v1/lists/good/objects')
    t.equal(res.statusCode, 200, `${what}: answered`)
    t.equal(res.headers['x-cache'], 'STALE')
    t.equal(res.headers['x-cache-reason'], 'budget-low')
    t.equal(Number(res.headers.age), afterS, `Age ${String(res.headers.age)}`)
    t.ok(res.body === first.body, 'the answer as loaded')
    await app.cache.drain()
    t.equal(calls(sandbox), 2, `${what}: no call, no background refresh`)
  }
  const miss = await get(`/v1/objects/${FIXTURE_IDS.A}`)
  t.equal(miss.statusCode, 200, 'a miss nothing cached can answer still goes upstream')
  t.equal(calls(sandbox), 3)
  at(601 * 1000)
  const old = await get('/v1/lists/good/objects')
  t.equal(old.statusCode, 200, 'past CACHE_MAX_STALE_S the entry is loaded again (the bucket has tokens)')
  t.equal(old.headers['x-cache'], 'MISS')
  t.equal(old.headers.age, '0', 'never served older than the maximum staleness')
  t.equal(calls(sandbox), 4)
})

// --- the cache's decisions, on an injected clock -----------------------------------------------------

const S = 1000
const F: Freshness = { freshMs: 60 * S, staleWhileRevalidateMs: 5 * 60 * S, staleIfErrorMs: 60 * 60 * S }
const MAX_STALE_MS = 6 * 60 * 60 * S

function clockedCache (opts: { backgroundAllowed: () => boolean, maxStaleMs?: number }) {
  let t = 1_000_000
  const cache = createCache({ l1: createMemoryStore({ maxBytes: 1 << 20 }), now: () => t, maxStaleMs: opts.maxStaleMs ?? MAX_STALE_MS, backgroundAllowed: opts.backgroundAllowed })
  let loads = 0
  let budget = Infinity
  const loader = async (): Promise<LoaderResult> => {
    if (budget <= 0) throw withRetryAfter(new UpstreamBudgetError('spent'), 1200)
    budget--
    loads++
    return { body: Buffer.from(`"v${loads}"`) }
  }
  const many = async (keys: string[]): Promise<PutItem[]> => {
    if (budget <= 0) throw withRetryAfter(new UpstreamBudgetError('spent'), 1200)
    budget--
    loads++
    return keys.map((key) => ({ key, body: Buffer.from(`"${key}:v${loads}"`), ttlMs: F.freshMs + F.staleIfErrorMs }))
  }
  return {
    cache,
    loader,
    many,
    advance: (ms: number) => { t += ms },
    setBudget: (n: number) => { budget = n },
    loads: () => loads
  }
}

test('cache: background revalidation asks whether it may spend', async (t) => {
  let allowed = true
  const c = clockedCache({ backgroundAllowed: () => allowed })
  await c.cache.fetch('k', F, c.loader)
  await c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F })
  c.advance(2 * 60 * S)
  allowed = false
  const table = await c.cache.fetch('k', F, c.loader)
  const objects = await c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F })
  await c.cache.drain()
  t.equal(c.loads(), 2, 'no background load while the budget is below the headroom')
  t.match(table, { status: 'STALE', reason: 'budget-low', ageS: 120 })
  t.match(objects, { status: 'STALE', reason: 'budget-low', ageS: 120 })
  allowed = true
  const again = await c.cache.fetch('k', F, c.loader)
  await c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F })
  await c.cache.drain()
  t.equal(again.status, 'STALE')
  t.equal(again.reason, undefined, 'an ordinary stale-while-revalidate answer has no hint')
  t.equal(c.loads(), 4, 'with headroom, both refresh in the background')
})

test('cache: below the headroom, an entry past its windows answers up to the maximum staleness without a load', async (t) => {
  let allowed = false
  const c = clockedCache({ backgroundAllowed: () => allowed })
  allowed = true
  await c.cache.fetch('k', F, c.loader)
  await c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F })
  allowed = false
  // Past fresh + stale-if-error (61 min): today's windows would make this a miss.
  c.advance(2 * 60 * 60 * S)
  t.match(await c.cache.fetch('k', F, c.loader), { status: 'STALE', reason: 'budget-low', ageS: 7200 })
  t.match(await c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F }), { status: 'STALE', reason: 'budget-low', ageS: 7200 })
  t.equal(c.loads(), 2, 'tokens below the headroom are kept for misses')
  // Just before and at the maximum staleness.
  c.advance(MAX_STALE_MS - 2 * 60 * 60 * S - 1)
  t.match(await c.cache.fetch('k', F, c.loader), { status: 'STALE', reason: 'budget-low' })
  c.advance(1)
  const reloaded = await c.cache.fetch('k', F, c.loader)
  t.equal(reloaded.status, 'MISS', 'at the maximum staleness the entry no longer answers: a foreground load')
  t.equal(reloaded.entry.body.toString(), '"v3"')
  c.setBudget(0)
  const refused = c.cache.fetchMany(['o1'], c.many, { route: 'objects', freshnessOf: () => F })
  await t.rejects(refused, { code: 'GW_UPSTREAM_BUDGET' }, 'past the maximum staleness a spent budget is an error')
})

test('cache: with headroom, a budget refusal is answered by any entry within the maximum staleness', async (t) => {
  const c = clockedCache({ backgroundAllowed: () => true })
  await c.cache.fetch('k', F, c.loader)
  await c.cache.fetchMany(['o1', 'o2'], c.many, { route: 'objects', freshnessOf: () => F })
  c.setBudget(0)
  c.advance(3 * 60 * 60 * S)
  t.match(await c.cache.fetch('k', F, c.loader), { status: 'STALE', reason: 'budget-low', ageS: 10800 })
  t.match(await c.cache.fetchMany(['o1', 'o2'], c.many, { route: 'objects', freshnessOf: () => F }), { status: 'STALE', reason: 'budget-low' })
  await t.rejects(c.cache.fetchMany(['o1', 'o3'], c.many, { route: 'objects', freshnessOf: () => F }), { code: 'GW_UPSTREAM_BUDGET' },
    'an id nothing cached can answer')
})

test('cache: other upstream failures keep the route\'s stale-if-error window', async (t) => {
  const c = clockedCache({ backgroundAllowed: () => true })
  await c.cache.fetch('k', F, c.loader)
  const failing = async (): Promise<LoaderResult> => { throw new UpstreamError('down') }
  c.advance(30 * 60 * S)
  t.match(await c.cache.fetch('k', F, failing), { status: 'STALE', reason: 'upstream-error' })
  c.advance(60 * 60 * S)
  await t.rejects(c.cache.fetch('k', F, failing), { code: 'GW_UPSTREAM_ERROR' }, 'past stale-if-error an upstream failure is an error')
})

test('cache: the maximum staleness caps the route\'s own windows, and routes without stale windows never answer stale', async (t) => {
  const c = clockedCache({ backgroundAllowed: () => true, maxStaleMs: 10 * 60 * S })
  await c.cache.fetch('k', F, c.loader)
  const failing = async (): Promise<LoaderResult> => { throw new UpstreamError('down') }
  c.advance(9 * 60 * S)
  t.match(await c.cache.fetch('k', F, failing), { status: 'STALE' })
  c.advance(60 * S)
  await t.rejects(c.cache.fetch('k', F, failing), { code: 'GW_UPSTREAM_ERROR' }, 'stale-if-error (1 h) is cut at the maximum staleness (10 min)')
  const none: Freshness = { freshMs: 60 * S, staleWhileRevalidateMs: 0, staleIfErrorMs: 0 }
  const d = clockedCache({ backgroundAllowed: () => false })
  await d.cache.fetch('m', none, d.loader)
  d.advance(61 * S)
  d.setBudget(0)
  await t.rejects(d.cache.fetch('m', none, d.loader), { code: 'GW_UPSTREAM_BUDGET' }, 'a route that is never served stale stays so')
})

test('settings: defaults', async (t) => {
  const config = loadConfig({})
  t.equal(config.CACHE_MAX_STALE_S, 86400)
  t.equal(config.UPSTREAM_BACKGROUND_HEADROOM, '20%')
})
