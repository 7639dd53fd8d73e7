// The usage store on Redis, against REDIS_URL in whatever form it takes (the REDIS_URL matrix runs this
// file on a Cluster and a Sentinel setup too): a flush that spans days and carries last-used times
// touches keys in several slots, each of which may live on another master.
import { test } from 'tap'
import { createRedisUsageStore } from '../../src/usage/store.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''

test('a flush over a week of days and last-used times lands whole, and once', { skip: REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const prefix = testKeyPrefix('usage-store')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const store = createRedisUsageStore(await connectTestRedis(t, REDIS_URL), prefix, 30)
  // Seven day keys and the last-used key: on a three-master Cluster, all on one master by chance
  // about once in 700 runs.
  const days = Array.from({ length: 7 }, (_, i) => `2026-11-${String(20 + i).padStart(2, '0')}`)
  const batch = {
    id: 'b1',
    delta: new Map(days.map((day, i) => [day, new Map([['bot', { requests: i + 1 }]])])),
    lastUsed: new Map([['k'.repeat(64), Date.UTC(2026, 10, 26, 12)]])
  }
  await store.add(batch)
  await store.add(batch)
  const read = await store.read(days)
  t.same(days.map((day) => read.get(day)?.get('bot')?.requests), [1, 2, 3, 4, 5, 6, 7], 'every day\'s counts, once though sent twice')
  t.same(await store.lastUsed(), { ['k'.repeat(64)]: Date.UTC(2026, 10, 26, 12) })
})
