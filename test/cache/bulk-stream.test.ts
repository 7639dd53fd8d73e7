// A bulk NDJSON stream (more than one chunk of ids) passes its records through L2 without copying them
// into L1 (cache.ts fillL1, routes/v1/objects.ts): with an L1 smaller than the stream, copying them
// pushed out the hot entries every other read is served from. Redis MONITOR shows whether a read after
// the stream reached Redis (this test's key prefix in the shared Redis); without Redis, L1 is the only
// cache and the stream still fills it.
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, TEST_REDIS_URL } from '../helper.js'
import { redisCommandsDuring } from '../fixtures/redis-monitor.js'

const IDS = 300
// L1 holds a few dozen records; calls of 50 ids make a stream of 300 ids six chunks.
const CONFIG = { CACHE_MAX_BYTES: 300_000, UPSTREAM_MAX_IDS_PER_CALL: 50, PREFETCH_ENABLED: false }

async function streamIds (t: Test, app: FastifyInstance, ids: readonly string[]): Promise<string[]> {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/objects/query',
    headers: { ...demoAuth(app), 'content-type': 'application/json', accept: 'application/x-ndjson' },
    payload: JSON.stringify({ ids })
  })
  t.equal(res.statusCode, 200)
  return res.body.trim().split('\n')
}

/** The cache keys of this app that Redis was asked for in full (GET, MGET) while `run` ran. */
async function keysReadFromRedis (t: Test, app: FastifyInstance, run: () => Promise<void>): Promise<string[]> {
  const prefix = `${app.config.REDIS_KEY_PREFIX}{c}:k:`
  const commands = await redisCommandsDuring(t, TEST_REDIS_URL, run)
  return commands.filter(([name]) => name === 'mget' || name === 'get')
    .flatMap(([, ...keys]) => keys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)))
}

test('with Redis, a bulk NDJSON stream leaves L1\'s hot entries in place and its records in L2', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: CONFIG, sandbox: { objects: IDS + 1 } })
  const [hot, ...rest] = sandbox.ids().slice(0, IDS + 1).map(String) as [string, ...string[]]
  const auth = demoAuth(app)
  t.equal((await app.inject({ url: `/v1/objects/${hot}`, headers: auth })).headers['x-cache'], 'MISS')
  const before = await keysReadFromRedis(t, app, async () => {
    t.equal((await app.inject({ url: `/v1/objects/${hot}`, headers: auth })).headers['x-cache'], 'HIT')
  })
  t.same(before, [], 'before the stream, L1 answers the hot object')

  const lines = await streamIds(t, app, rest)
  t.equal(lines.length, IDS, 'one line per id')
  t.ok(lines.every((l) => l.includes('"object":')), 'every line carries its record')

  const calls = sandbox.calls.get('objects')
  const after = await keysReadFromRedis(t, app, async () => {
    t.equal((await app.inject({ url: `/v1/objects/${hot}`, headers: auth })).headers['x-cache'], 'HIT')
  })
  t.same(after, [], 'after a stream ten times the size of L1, L1 still answers the hot object')
  const streamed = rest[IDS - 1] as string
  const fromL2 = await keysReadFromRedis(t, app, async () => {
    t.equal((await app.inject({ url: `/v1/objects/${streamed}`, headers: auth })).headers['x-cache'], 'HIT')
  })
  t.ok(fromL2.some((key) => key.endsWith(streamed)), 'a streamed record is read from L2')
  t.equal(sandbox.calls.get('objects'), calls, 'no upstream call for either')
})

test('without Redis, a bulk NDJSON stream still fills L1 (its only cache)', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { useRedis: false, config: { UPSTREAM_MAX_IDS_PER_CALL: 50, PREFETCH_ENABLED: false }, sandbox: { objects: 120 } })
  const ids = sandbox.ids().slice(0, 120).map(String)
  t.equal((await streamIds(t, app, ids)).length, 120)
  const calls = sandbox.calls.get('objects')
  for (const id of [ids[0], ids[60], ids[119]]) {
    t.equal((await app.inject({ url: `/v1/objects/${id as string}`, headers: demoAuth(app) })).headers['x-cache'], 'HIT')
  }
  t.equal(sandbox.calls.get('objects'), calls, 'the streamed records are answered without an upstream call')
})
