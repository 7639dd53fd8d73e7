// Three gateway replicas on one Redis act as one: one upstream call for the same miss, one upstream
// budget, one token refresh, exact limits. test/scale runs this file on a Redis Cluster and on Sentinel too.
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, FIXTURE_IDS, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'

async function threeReplicas (t: Test, config: Record<string, string | number> = {}, consumer: Partial<Parameters<typeof makeConsumer>[1]> = {}) {
  const sandbox = await startTestSandbox(t)
  const bot = makeConsumer('bot', { scopes: ['read'], upstream_share: 10000, ...consumer })
  const shared = { CONSUMERS_FILE: consumersFile(t, [bot]), REDIS_KEY_PREFIX: uniquePrefix('replicas'), ...config }
  const [a, b, c] = await Promise.all([0, 1, 2].map(async () => (await buildTestApp(t, { upstream: sandbox, config: shared })).app)) as [FastifyInstance, FastifyInstance, FastifyInstance]
  return { sandbox, a, b, c, auth: { authorization: `Bearer ${bot.key}` } }
}

test('replicas on one Redis', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  t.test('the same miss on all three replicas → one upstream call', async (t) => {
    const { sandbox, a, b, c, auth } = await threeReplicas(t)
    sandbox.resetCalls()
    const results = await Promise.all([a, b, c, a, b, c].map((app) => app.inject({ url: '/v1/lists/good/objects', headers: auth })))
    t.ok(results.every((r) => r.statusCode === 200))
    t.equal(sandbox.calls.get('objectlist'), 1)
    t.same(new Set(results.map((r) => r.body)).size, 1, 'all six got the same bytes')
  })

  t.test('the same object missed on three replicas at once → one objects/ call', async (t) => {
    const { sandbox, a, b, c, auth } = await threeReplicas(t, { UPSTREAM_BATCH_WINDOW_MS: 50 })
    const ids = sandbox.ids().slice(20, 25).map(String).join(',')
    sandbox.resetCalls()
    const results = await Promise.all([a, b, c].map((app) => app.inject({ url: `/v1/objects?ids=${ids}`, headers: auth })))
    t.ok(results.every((r) => r.statusCode === 200))
    t.equal(new Set(results.map((r) => r.body)).size, 1, 'the same bytes on every replica')
    t.equal(sandbox.calls.get('objects'), 1, 'the other replicas waited for the first one\'s fill')
  })

  t.test('one upstream budget for all three', async (t) => {
    const { sandbox, a, b, c, auth } = await threeReplicas(t, { UPSTREAM_RATE: '4/hour' })
    const ids = sandbox.ids().slice(10, 16).map(String)
    const statuses = []
    for (const [i, app] of [a, b, c, a, b, c].entries()) {
      statuses.push((await app.inject({ url: `/v1/objects/${ids[i] as string}`, headers: auth })).statusCode)
    }
    t.same(statuses, [200, 200, 200, 200, 503, 503], 'the fifth miss, on any replica, finds the shared budget spent')
  })

  t.test('a request-rate limit is exact across three replicas', async (t) => {
    const { a, b, c, auth } = await threeReplicas(t, {}, { rate: '7/minute' })
    // Concurrent bursts on all three: exactly the limit passes in total, whichever replica served it.
    const results = await Promise.all(Array.from({ length: 15 }, (_, i) => [a, b, c][i % 3]!.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: auth })))
    const statuses = results.map((r) => r.statusCode)
    t.equal(statuses.filter((s) => s === 200).length, 7, `exactly 7 of 15 served (${statuses.join(' ')})`)
    const other = results.find((r) => r.statusCode !== 200 && r.statusCode !== 429)
    t.equal(statuses.filter((s) => s === 429).length, 8, `the rest are 429${other === undefined ? '' : ` (another answer: ${other.statusCode} ${other.body.slice(0, 300)})`}`)
  })

  t.test('an expired token is refreshed once for all three replicas', async (t) => {
    const { sandbox, a, b, c, auth } = await threeReplicas(t)
    // Every replica has used (and so shares) the current token.
    for (const [app, id] of [[a, FIXTURE_IDS.A], [b, FIXTURE_IDS.B], [c, FIXTURE_IDS.C]] as const) {
      t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: auth })).statusCode, 200)
    }
    sandbox.expireToken('write')
    sandbox.resetCalls()
    const cones = Array.from({ length: 21 }, (_, i) => [a, b, c][i % 3]!.inject({ url: `/v1/cone?ra=${50 + i}&dec=5&radius=5`, headers: auth }))
    const results = await Promise.all(cones)
    t.same(results.map((r) => r.statusCode), results.map(() => 200))
    t.equal(sandbox.calls.get('auth-token'), 1, 'one refresh across three replicas')
    // Like every key the gateway writes, the shared token expires (each refresh rewrites it).
    const ttl = await a.redis?.ttl(`${a.config.REDIS_KEY_PREFIX}token`)
    t.ok(ttl !== undefined && ttl > 0, `the shared token key has a TTL (${ttl} s)`)
  })
})
