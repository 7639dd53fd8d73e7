// A write whose cache invalidation could not reach Redis (Redis stalled, or still skipped after a
// failure): the write succeeds upstream and the writer's own L1 drops the entry at once, but the copy in
// L2 and in the other replicas' L1 would stay until it went stale. The invalidation is kept and sent
// again once Redis answers. Two replicas (two apps on one private redis-server, frozen with SIGSTOP).
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS, startTestSandbox } from '../helper.js'
import { freePort, startRedisServer } from '../fixtures/redis-server.js'
import { testKeyPrefix } from '../fixtures/redis-keys.js'
import { waitFor } from '../fixtures/wait.js'

const LIST = '/v1/custom-lists/salt/objects'

async function members (app: FastifyInstance): Promise<{ ids: string[], cache: string }> {
  const res = await app.inject({ url: LIST, headers: demoAuth(app) })
  if (res.statusCode !== 200) throw new Error(`list read: ${res.statusCode} ${res.body}`)
  const body = res.json<{ objects: Array<{ transient_object_id: string }> }>()
  return { ids: body.objects.map((o) => o.transient_object_id), cache: String(res.headers['x-cache']) }
}

test('an invalidation that could not reach Redis is sent once Redis answers: the other replica and L2 drop the pre-write list', async (t) => {
  const server = await startRedisServer(t)
  const sandbox = await startTestSandbox(t)
  const config = { REDIS_URL: server.url, REDIS_KEY_PREFIX: testKeyPrefix('replay'), REDIS_COMMAND_TIMEOUT_MS: 300 }
  const a = (await buildTestApp(t, { upstream: sandbox, config })).app
  const b = (await buildTestApp(t, { upstream: sandbox, config })).app
  let isPaused = false
  t.teardown(() => { if (isPaused) server.resume() })
  const id = FIXTURE_IDS.E
  const before = await members(b)
  t.notOk(before.ids.includes(id), 'E is not on the list yet')
  t.equal((await members(a)).cache, 'HIT', 'A took B\'s entry from L2')

  server.pause()
  isPaused = true
  const write = await a.inject({ method: 'PUT', url: `${LIST.replace('/objects', '')}/objects/${id}`, headers: demoAuth(a) })
  t.equal(write.statusCode, 201, 'the write went upstream')
  t.equal(a.redisHealth.state, 'down', 'Redis was found stalled during the write')
  t.ok((await members(a)).ids.includes(id), 'the writer\'s own read shows the write')

  server.resume()
  isPaused = false
  await waitFor('A\'s probe to find Redis back', () => a.redisHealth.state === 'up')
  let seen = before
  await waitFor('B to read the list with the write in it', async () => {
    seen = await members(b)
    return seen.ids.includes(id)
  }, { timeoutMs: 5000, intervalMs: 100 })
  t.ok(seen.ids.includes(id), 'B reads the list with E')
  t.equal(seen.cache, 'MISS', 'from the upstream: neither B\'s L1 nor L2 held the pre-write list any more')
})

test('a replica started while Redis was down subscribes to invalidations once Redis answers', async (t) => {
  const port = await freePort()
  const sandbox = await startTestSandbox(t)
  const prefix = testKeyPrefix('late-subscribe')
  const config = { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_KEY_PREFIX: prefix, REDIS_COMMAND_TIMEOUT_MS: 300 }
  // B boots with nothing listening on Redis's port; A once it is there.
  const b = (await buildTestApp(t, { upstream: sandbox, config })).app
  t.equal(b.redisHealth.state, 'down', 'B found Redis down at boot')
  await startRedisServer(t, { port })
  const a = (await buildTestApp(t, { upstream: sandbox, config })).app
  await waitFor('B to find Redis back', () => b.redisHealth.state === 'up', { timeoutMs: 10_000, intervalMs: 50 })
  const subscribers = async () => Number((await a.redis?.pubsub('NUMSUB', `${prefix}c:invalidate`) as [string, number])[1])
  await waitFor('both replicas on the invalidation channel', async () => await subscribers() === 2, { timeoutMs: 10_000, intervalMs: 50 })
  t.equal(await subscribers(), 2, 'A and B subscribed')

  const id = FIXTURE_IDS.E
  t.notOk((await members(b)).ids.includes(id), 'B holds the list without E in L1')
  t.equal((await members(b)).cache, 'HIT')
  const write = await a.inject({ method: 'PUT', url: `${LIST.replace('/objects', '')}/objects/${id}`, headers: demoAuth(a) })
  t.equal(write.statusCode, 201)
  let seen = await members(b)
  await waitFor('B to drop its pre-write copy', async () => (seen = await members(b)).ids.includes(id), { timeoutMs: 5000, intervalMs: 50 })
  t.ok(seen.ids.includes(id), 'B reads the list with E, not its pre-write copy')
})
