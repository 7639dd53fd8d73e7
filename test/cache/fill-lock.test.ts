// Two replicas (two apps on one Redis key space) missing the same object while the upstream takes longer
// than a few seconds to answer, as its objects/ calls may (it allows 600 s): the second replica waits for
// the first one's call instead of spending a second upstream call on the same ids. Counted by a proxy
// in front of the sandbox.
import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { startCountingProxy } from '../fixtures/counting-proxy.js'
import { testKeyPrefix } from '../fixtures/redis-keys.js'
import { waitFor } from '../fixtures/wait.js'

const skip = TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false
/** Above the 5 s the waiting replica used to wait before calling the upstream itself. */
const SLOW_CALL_MS = 6_000

test('a replica missing an id another replica is loading waits for that call even when it takes longer than 5 s: one objects/ call', { skip }, async (t) => {
  const sandbox = await startTestSandbox(t)
  let objectCalls = 0
  const proxy = await startCountingProxy(sandbox.baseUrl, { onArrival: (r) => { if (r.url.includes('objects/')) objectCalls++ } })
  t.teardown(proxy.close)
  const config = { ATLAS_BASE_URL: proxy.url, REDIS_KEY_PREFIX: testKeyPrefix('fill'), UPSTREAM_RATE: '1000000/hour' }
  const a = (await buildTestApp(t, { upstream: sandbox, config })).app
  const b = (await buildTestApp(t, { upstream: sandbox, config })).app
  sandbox.setOptions({ latencyMs: SLOW_CALL_MS })
  const url = `/v1/objects/${FIXTURE_IDS.A}`
  const fromA = a.inject({ url, headers: demoAuth(a) })
  // B misses once A's call is out (and A holds the fill lock).
  await waitFor('A\'s objects/ call to leave', () => objectCalls > 0)
  const fromB = b.inject({ url, headers: demoAuth(b) })
  const [ra, rb] = await Promise.all([fromA, fromB])
  t.equal(ra.statusCode, 200)
  t.equal(rb.statusCode, 200)
  t.equal(rb.body, ra.body, 'B answered A\'s fill')
  t.equal(objectCalls, 1, 'one objects/ call for both replicas')
})
