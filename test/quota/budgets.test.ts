// Daily object units over both stores, with the day driven by an injected clock (passed to the Redis
// script as its test-only time override), never by sleeping.
import { test, type Test } from 'tap'
import { createDailyUnits, DAY_SECONDS } from '../../src/quota/budgets.js'
import { createMemoryWindowStore, createRedisWindowStore, type Clock, type WindowStore } from '../../src/quota/window-store.js'
import { toRecord } from '../../src/consumers/schema.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''
const consumer = toRecord({ id: 'bot', key_sha256: [], daily_objects: 100 }).consumer

async function redisStore (t: Test, now: Clock): Promise<WindowStore> {
  const redis = await connectTestRedis(t, REDIS_URL)
  return createRedisWindowStore(redis, { now })
}

const stores: Array<[string, ((t: Test, now: Clock) => Promise<WindowStore>) | undefined]> = [
  ['memory', async (_t, now) => createMemoryWindowStore({ now })],
  ['redis', REDIS_URL === '' ? undefined : redisStore]
]

for (const [name, make] of stores) {
  test(`daily units (${name})`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    let now = Date.UTC(2026, 2, 10, 18, 0, 0)
    const prefix = testKeyPrefix('budgets')
    if (name === 'redis') deleteKeysOnTeardown(t, REDIS_URL, prefix)
    const units = createDailyUnits(await make(t, () => now), prefix)

    t.equal(await units.used(consumer), 0)
    t.match(await units.charge(consumer, 60), { isAllowed: true, used: 60 })
    const refused = await units.charge(consumer, 41)
    t.match(refused, { isAllowed: false, used: 60 }, 'a batch that would cross the budget is refused')
    t.equal(refused.resetSeconds, 6 * 3600, 'Retry-After runs to the next UTC midnight')
    t.equal(await units.used(consumer), 60, 'and charges nothing')
    t.match(await units.charge(consumer, 40), { isAllowed: true, used: 100 }, 'what is left can still be spent')
    t.match(await units.charge(consumer, 1), { isAllowed: false, used: 100 })

    now += 6 * 3600 * 1000
    t.equal(await units.used(consumer), 0, 'the budget resets on the next UTC day')
    t.match(await units.charge(consumer, 100), { isAllowed: true, used: 100, resetSeconds: DAY_SECONDS })
  })
}
