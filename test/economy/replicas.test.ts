// Two gateway replicas on one Redis act as one: one upstream call for the same miss, one upstream
// budget, one token refresh.
import { test, type Test } from 'tap'
import { buildTestApp, FIXTURE_IDS, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'

async function twoReplicas (t: Test, config: Record<string, string | number> = {}) {
  const sandbox = await startTestSandbox(t)
  const bot = makeConsumer('bot', { scopes: ['read'], upstream_share: 10000 })
  const shared = { CONSUMERS_FILE: consumersFile(t, [bot]), REDIS_KEY_PREFIX: uniquePrefix('replicas'), ...config }
  const a = await buildTestApp(t, { upstream: sandbox, config: shared })
  const b = await buildTestApp(t, { upstream: sandbox, config: shared })
  return { sandbox, a: a.app, b: b.app, auth: { authorization: `Bearer ${bot.key}` } }
}

test('replicas on one Redis', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  t.test('the same miss on both replicas → one upstream call', async (t) => {
    const { sandbox, a, b, auth } = await twoReplicas(t)
    sandbox.resetCalls()
    const results = await Promise.all([a, b, a, b].map((app) => app.inject({ url: '/v1/lists/good/objects', headers: auth })))
    t.ok(results.every((r) => r.statusCode === 200))
    t.equal(sandbox.calls.get('objectlist'), 1)
    t.same(new Set(results.map((r) => r.body)).size, 1, 'all four got the same bytes')
  })

  t.test('the same object missed on both replicas at once → one objects/ call', async (t) => {
    const { sandbox, a, b, auth } = await twoReplicas(t, { UPSTREAM_BATCH_WINDOW_MS: 50 })
    const ids = sandbox.ids().slice(20, 25).map(String).join(',')
    sandbox.resetCalls()
    const results = await Promise.all([a, b].map((app) => app.inject({ url: `/v1/objects?ids=${ids}`, headers: auth })))
    t.ok(results.every((r) => r.statusCode === 200))
    t.equal(results[0]?.body, results[1]?.body)
    t.equal(sandbox.calls.get('objects'), 1, 'the second replica waited for the first one\'s fill')
  })

  t.test('one upstream budget for both', async (t) => {
    const { sandbox, a, b, auth } = await twoReplicas(t, { UPSTREAM_RATE: '3/hour' })
    const ids = sandbox.ids().slice(10, 14).map(String)
    const statuses = []
    for (const [i, app] of [a, b, a, b].entries()) {
      statuses.push((await app.inject({ url: `/v1/objects/${ids[i] as string}`, headers: auth })).statusCode)
    }
    t.same(statuses, [200, 200, 200, 503], 'the fourth miss, on either replica, finds the shared budget spent')
  })

  t.test('an expired token is refreshed once for both replicas', async (t) => {
    const { sandbox, a, b, auth } = await twoReplicas(t)
    // Both replicas have used (and so share) the current token.
    t.equal((await a.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: auth })).statusCode, 200)
    t.equal((await b.inject({ url: `/v1/objects/${FIXTURE_IDS.B}`, headers: auth })).statusCode, 200)
    sandbox.expireToken('write')
    sandbox.resetCalls()
    const cones = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).inject({ url: `/v1/cone?ra=${50 + i}&dec=5&radius=5`, headers: auth }))
    const results = await Promise.all(cones)
    t.same(results.map((r) => r.statusCode), results.map(() => 200))
    t.equal(sandbox.calls.get('auth-token'), 1, 'one refresh across both replicas')
    // Like every key the gateway writes, the shared token expires (each refresh rewrites it).
    const ttl = await a.redis?.ttl(`${a.config.REDIS_KEY_PREFIX}token`)
    t.ok(ttl !== undefined && ttl > 0, `the shared token key has a TTL (${ttl} s)`)
  })
})
