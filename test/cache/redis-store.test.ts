import { test } from 'tap'
import { createRedisStore } from '../../src/cache/redis-store.js'
import { createRedis } from '../../src/plugins/redis.js'
import { runStoreContract } from './store-contract.js'
import { REDIS_URL, TEST_STORE_TIMEOUT_MS, connectRedis, uniquePrefix } from './redis-fixture.js'

const MIN = 60_000
const skip = REDIS_URL === '' ? 'REDIS_URL is not set' : false

test('store contract: redis', { skip }, async (t) => {
  runStoreContract(t, async (t) => {
    const { redis, prefix } = await connectRedis(t)
    return { store: createRedisStore({ redis, prefix, timeoutMs: TEST_STORE_TIMEOUT_MS }) }
  })
})

test('values live under the gateway prefix with their TTL', { skip }, async (t) => {
  const { redis, prefix } = await connectRedis(t)
  const store = createRedisStore({ redis, prefix })
  await store.set('v1:lists:', Buffer.from('x'), 90_000)
  const ttl = await redis.pttl(`${prefix}{c}:k:v1:lists:`)
  t.ok(ttl > 80_000 && ttl <= 90_000, `PTTL ${ttl}`)
  await store.setMany([{ key: 'a', value: Buffer.from('y'), ttlMs: 1500.2 }])
  const ttlA = await redis.pttl(`${prefix}{c}:k:a`)
  t.ok(ttlA > 0 && ttlA <= 1501, `fractional TTLs round up: ${ttlA}`)
})

test('a tag set lives as long as its longest-lived key: its TTL grows, never shrinks', { skip }, async (t) => {
  const { redis, prefix } = await connectRedis(t)
  const store = createRedisStore({ redis, prefix })
  await store.set('long', Buffer.from('x'), 10 * MIN)
  await store.set('short', Buffer.from('x'), MIN)
  await store.addTags(['t'], ['long'], 10 * MIN)
  await store.addTags(['t'], ['short'], MIN)
  const ttl = await redis.pttl(`${prefix}{c}:t:t`)
  t.ok(ttl > 9 * MIN, `tag PTTL ${ttl} kept the longer lifetime`)
  t.equal(await store.invalidateTags(['t']), 2)
})

test('a dead Redis is a miss or a no-op, reported through onError, never thrown', { skip }, async (t) => {
  // Never connected and no offline queue: every command fails at once, like a Redis that went away.
  const redis = createRedis({ REDIS_URL: 'redis://127.0.0.1:1', REDIS_COMMAND_TIMEOUT_MS: 200 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  const errors: unknown[] = []
  const store = createRedisStore({ redis, prefix: uniquePrefix(), onError: (err) => errors.push(err) })
  // Each call is made after the previous failure opened the guard's cool-down; the first fails for real.
  t.equal(await store.get('k'), undefined)
  t.equal(errors.length, 1)
  t.same(await store.getMany(['a', 'b']), [undefined, undefined])
  await store.set('k', Buffer.from('v'), MIN)
  await store.setMany([{ key: 'k', value: Buffer.from('v'), ttlMs: MIN }])
  await store.delete(['k'])
  await store.addTags(['t'], ['k'], MIN)
  t.equal(await store.invalidateTags(['t']), undefined, 'not done: the cache keeps the tags to send again')
  t.equal(errors.length, 1, 'calls during the cool-down do not touch Redis')
})
