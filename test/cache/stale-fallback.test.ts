// When a load fails, a cached entry answers in its place within the rules (README "Caching"): a refusal
// by the budget (the global one, or the consumer's upstream share) up to CACHE_MAX_STALE_S, an upstream
// failure within the route's stale-if-error; never an entry older than CACHE_MAX_STALE_S, counted when
// the answer goes out (a failed load may take minutes); and an answer with any record served stale says
// STALE and why, however many other records were loaded.
import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'

const { A, B } = FIXTURE_IDS
const T0 = Date.UTC(2026, 0, 5, 12)

test('a consumer whose upstream share is spent is answered from a stale entry, not refused', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], upstream_share: 2 })
  let clock = T0
  const { app } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => clock },
    config: {
      CONSUMERS_FILE: consumersFile(t, [bot]),
      PREFETCH_ENABLED: false,
      CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 60, swrS: 60, sieS: 3600 }, lists: { freshS: 60, swrS: 60, sieS: 3600 } })
    }
  })
  const urls = [`/v1/objects/${A}`, '/v1/lists/good/objects', `/v1/objects/${A}/lightcurve`]
  for (const url of urls) t.equal((await app.inject({ url, headers: bearer(bot.key) })).statusCode, 200, `${url} cached`)
  // Five minutes on: past fresh and stale-while-revalidate, inside stale-if-error; the share (2: the light curve reads the object's record) is spent.
  clock += 5 * 60_000
  for (const url of urls) {
    const res = await app.inject({ url, headers: bearer(bot.key) })
    t.equal(res.statusCode, 200, `${url}: answered (was 429 GW_QUOTA_EXHAUSTED)`)
    t.equal(res.headers['x-cache'], 'STALE')
    t.equal(res.headers['x-cache-reason'], 'budget-low', 'the consumer\'s share of the budget is spent')
    t.equal(res.headers.age, '300')
  }
  const miss = await app.inject({ url: `/v1/objects/${B}`, headers: bearer(bot.key) })
  t.equal(miss.statusCode, 429, 'a miss nothing cached answers is still refused')
  t.equal(miss.json().code, 'GW_QUOTA_EXHAUSTED')
})

test('a load that fails after a long wait: the entry is not served if it has passed CACHE_MAX_STALE_S meanwhile', async (t) => {
  let offset = 0
  const { app, sandbox } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => Date.now() + offset },
    config: {
      CACHE_MAX_STALE_S: 10,
      UPSTREAM_TIMEOUT_MS: 2000,
      UPSTREAM_RETRIES: 0,
      PREFETCH_ENABLED: false,
      CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 1, swrS: 0, sieS: 3600 }, lists: { freshS: 1, swrS: 0, sieS: 3600 } })
    }
  })
  const auth = demoAuth(app)
  for (const url of [`/v1/objects/${A}`, '/v1/lists/good/objects', `/v1/objects?ids=${A},${B}`]) {
    t.equal((await app.inject({ url, headers: auth })).statusCode, 200)
  }
  // 9 s old of a 10 s maximum when the loads start; they hang for UPSTREAM_TIMEOUT_MS (2 s).
  offset += 9000
  sandbox.inject({ kind: 'hang', endpoint: 'objects', times: 10 })
  sandbox.inject({ kind: 'hang', endpoint: 'objectlist', times: 10 })
  const answers = await Promise.all([`/v1/objects/${A}`, '/v1/lists/good/objects', `/v1/objects?ids=${A},${B}`].map(async (url) => ({ url, res: await app.inject({ url, headers: auth }) })))
  for (const { url, res } of answers) {
    t.not(res.statusCode, 200, `${url}: not answered with an entry now older than 10 s (${res.statusCode} ${String(res.headers.age)})`)
    t.equal(res.json().code, 'GW_UPSTREAM_TIMEOUT')
  }
  sandbox.clearFaults()
})

test('a batch with a record served stale and another loaded says STALE', async (t) => {
  let clock = T0
  const { app } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => clock },
    config: { PREFETCH_ENABLED: false, CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 60, swrS: 3600, sieS: 3600 } }) }
  })
  const auth = demoAuth(app)
  t.equal((await app.inject({ url: `/v1/objects/${A}`, headers: auth })).statusCode, 200)
  clock += 600_000
  // A is past fresh, inside stale-while-revalidate: served as it is, refreshed behind; B is loaded.
  const res = await app.inject({ url: `/v1/objects?ids=${A},${B}`, headers: auth })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-cache'], 'STALE', 'A is the record cached ten minutes ago')
  t.equal(res.headers.age, '600')
  t.match(res.headers['cache-control'], /max-age=0/, 'and nothing in it is fresh')
})

test('the bulk query says what it served: X-Cache, X-Cache-Reason and Age, as JSON and as NDJSON', async (t) => {
  let clock = T0
  const { app, sandbox } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => clock },
    config: { UPSTREAM_RETRIES: 0, PREFETCH_ENABLED: false, CACHE_FRESHNESS: JSON.stringify({ objects: { freshS: 60, swrS: 0, sieS: 3600 } }) }
  })
  const auth = demoAuth(app)
  const query = async (accept: string) => app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...auth, accept }, payload: { ids: [A] } })
  for (const accept of ['application/json', 'application/x-ndjson']) {
    const fresh = await query(accept)
    t.equal(fresh.statusCode, 200)
    t.match(fresh.headers['x-cache'], /^(MISS|HIT)$/, `${accept}: X-Cache`)
    t.equal(fresh.headers['cache-control'], 'no-store')
  }
  clock += 600_000
  sandbox.inject({ kind: 'html500', endpoint: 'objects', times: 4 })
  for (const accept of ['application/json', 'application/x-ndjson']) {
    const stale = await query(accept)
    t.equal(stale.statusCode, 200, `${accept}: answered from the cache`)
    t.equal(stale.headers['x-cache'], 'STALE', `${accept}: X-Cache`)
    t.equal(stale.headers['x-cache-reason'], 'upstream-error', `${accept}: X-Cache-Reason`)
    t.equal(stale.headers.age, '600', `${accept}: Age`)
  }
  sandbox.clearFaults()
})

test('a read that joins another consumer\'s read refused by that consumer\'s share gets its own', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], upstream_share: 1 })
  const alice = makeConsumer('alice', { scopes: ['read'], upstream_share: 1000 })
  let clock = T0
  const { app, sandbox } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => clock },
    config: {
      CONSUMERS_FILE: consumersFile(t, [bot, alice]),
      PREFETCH_ENABLED: false,
      CACHE_FRESHNESS: JSON.stringify({ lists: { freshS: 60, swrS: 60, sieS: 3600 } })
    }
  })
  // bot spends its one call caching the list.
  t.equal((await app.inject({ url: '/v1/lists/good/objects', headers: bearer(bot.key) })).statusCode, 200)
  clock += 5 * 60_000
  sandbox.resetCalls()
  // bot's read starts first and is refused by bot's share; alice's joins it.
  const [forBot, forAlice] = await Promise.all([
    app.inject({ url: '/v1/lists/good/objects', headers: bearer(bot.key) }),
    app.inject({ url: '/v1/lists/good/objects', headers: bearer(alice.key) })
  ])
  t.match(forBot.headers, { 'x-cache': 'STALE', 'x-cache-reason': 'budget-low' }, 'bot: its share spent, the stale list')
  t.equal(forAlice.statusCode, 200)
  t.equal(forAlice.headers['x-cache'], 'MISS', 'alice: the list loaded on her share (before: bot\'s STALE budget-low)')
  t.equal(sandbox.calls.get('objectlist'), 1)
  // Nothing cached: bot is refused, alice is not refused with bot's limit.
  const [missBot, missAlice] = await Promise.all([
    app.inject({ url: '/v1/lists/eyeball/objects', headers: bearer(bot.key) }),
    app.inject({ url: '/v1/lists/eyeball/objects', headers: bearer(alice.key) })
  ])
  t.equal(missBot.statusCode, 429)
  t.equal(missAlice.statusCode, 200, `alice: loaded (before: 429 with bot's limit; ${missAlice.body.slice(0, 80)})`)
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(alice.key) })).json().usage.upstream_share_used, 2, 'both calls on alice\'s share')
  // bot twice at once: its second request reads again, and alice must not join that refused read either.
  clock += 5 * 60_000
  for (const url of ['/v1/lists/good/objects', '/v1/lists/attic/objects']) {
    const answers = await Promise.all([bot.key, bot.key, alice.key].map(async (key) => app.inject({ url, headers: bearer(key) })))
    const forAlice = answers[2] as (typeof answers)[number]
    t.equal(forAlice.statusCode, 200, `${url}: alice loaded beside bot's two refused requests (before: ${forAlice.statusCode === 200 ? 'bot\'s answer' : forAlice.body.slice(0, 60)})`)
    t.equal(forAlice.headers['x-cache'], 'MISS')
  }
})
