// One contract, run against the memory store and the Redis store (real Redis when REDIS_URL is set).
import { test, type Test } from 'tap'
import type { Redis } from 'ioredis'
import { createMemoryWindowStore, createRedisWindowStore, type Clock, type WindowStore } from '../../src/quota/window-store.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''
const DAY = 86400
const HOUR = 3600

// One prefix for this file's process; its keys are deleted when the last test that wrote them ends.
const FILE_PREFIX = testKeyPrefix('window')
let keyCount = 0
function prefix (): string {
  return `${FILE_PREFIX}${++keyCount}:`
}

async function redisClient (t: Test): Promise<Redis> {
  deleteKeysOnTeardown(t, REDIS_URL, FILE_PREFIX)
  const redis = await connectTestRedis(t, REDIS_URL)
  return redis
}

type Maker = (t: Test, now?: Clock) => Promise<WindowStore>

const makers: Array<[string, Maker | undefined]> = [
  ['memory', async (_t, now) => createMemoryWindowStore(now === undefined ? {} : { now })],
  ['redis', REDIS_URL === '' ? undefined : async (t, now) => createRedisWindowStore(await redisClient(t), now === undefined ? {} : { now })]
]

for (const [name, make] of makers) {
  test(`${name} window store`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    // 23:59:00 UTC: one minute before the day changes.
    let now = Date.UTC(2026, 7, 1, 23, 59, 0)
    const store = await make(t, () => now)
    const key = `${prefix()}units`

    t.test('charges accumulate up to the limit', async (t) => {
      t.strictSame(await store.charge(key, 4, 10, DAY), { isAllowed: true, used: 4, resetSeconds: 60, resetMs: 60 * 1000 })
      t.strictSame(await store.charge(key, 6, 10, DAY), { isAllowed: true, used: 10, resetSeconds: 60, resetMs: 60 * 1000 }, 'exactly the limit is allowed')
    })

    t.test('a charge that would cross the limit is refused whole and charges nothing', async (t) => {
      t.strictSame(await store.charge(key, 1, 10, DAY), { isAllowed: false, used: 10, resetSeconds: 60, resetMs: 60 * 1000 })
      t.strictSame(await store.charge(key, 0, 10, DAY), { isAllowed: true, used: 10, resetSeconds: 60, resetMs: 60 * 1000 }, 'units 0 only reads')
      const other = `${prefix()}units`
      await store.charge(other, 7, 10, DAY)
      t.equal((await store.charge(other, 5, 10, DAY)).isAllowed, false)
      t.strictSame(await store.charge(other, 3, 10, DAY), { isAllowed: true, used: 10, resetSeconds: 60, resetMs: 60 * 1000 }, 'a smaller charge still fits')
    })

    t.test('the next UTC day starts from zero', async (t) => {
      now = Date.UTC(2026, 7, 2, 0, 0, 1)
      t.strictSame(await store.charge(key, 0, 10, DAY), { isAllowed: true, used: 0, resetSeconds: DAY - 1, resetMs: (DAY - 1) * 1000 })
      t.strictSame(await store.charge(key, 10, 10, DAY), { isAllowed: true, used: 10, resetSeconds: DAY - 1, resetMs: (DAY - 1) * 1000 })
    })

    t.test('hour windows are UTC hours', async (t) => {
      const hourKey = `${prefix()}share`
      now = Date.UTC(2026, 7, 2, 10, 59, 30)
      t.strictSame(await store.charge(hourKey, 1, 1, HOUR), { isAllowed: true, used: 1, resetSeconds: 30, resetMs: 30 * 1000 })
      t.equal((await store.charge(hourKey, 1, 1, HOUR)).isAllowed, false)
      now = Date.UTC(2026, 7, 2, 11, 0, 0)
      t.strictSame(await store.charge(hourKey, 1, 1, HOUR), { isAllowed: true, used: 1, resetSeconds: HOUR, resetMs: HOUR * 1000 })
    })

    t.test('the time left is answered to the millisecond: Retry-After rounds it up', async (t) => {
      now = Date.UTC(2026, 7, 2, 11, 59, 59, 250)
      t.strictSame(await store.charge(`${prefix()}ms`, 1, 10, HOUR), { isAllowed: true, used: 1, resetSeconds: 1, resetMs: 750 })
      now = Date.UTC(2026, 7, 2, 11, 59, 58, 999)
      t.match(await store.lease(`${prefix()}ms`, 1, 4, 10, HOUR), { granted: 4, resetSeconds: 2, resetMs: 1001 })
    })

    t.test('concurrent leases at the limit: only what is left is granted', async (t) => {
      const key = `${prefix()}race`
      await store.charge(key, 9, 10, HOUR)
      const leases = await Promise.all([1, 2, 3].map(async () => await store.lease(key, 1, 1, 10, HOUR)))
      t.equal(leases.filter((l) => l.granted > 0).length, 1, 'one of three granted')
      t.equal((await store.charge(key, 0, 10, HOUR)).used, 10)
    })

    t.test('a limit of zero refuses every charge', async (t) => {
      t.equal((await store.charge(`${prefix()}zero`, 1, 0, DAY)).isAllowed, false)
    })
  })
}

// The wall clock stepped back 10 s across 00:00 UTC (NTP step, VM resume) after day D's units were
// spent: the older window read as 0 and overwrote day D's count, so day D-1's last seconds admitted a
// full limit and day D, 10 s on, another one. A window never goes back to an older one.
for (const [name, make] of makers) {
  test(`${name} window store: a clock stepping back across 00:00 UTC keeps the day's count`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    let now = Date.UTC(2026, 10, 30, 0, 0, 5)
    const store = await make(t, () => now)
    const key = `${prefix()}units`
    let admitted = 0
    const spend = async (): Promise<void> => {
      for (let i = 0; i < 20; i++) {
        if (!(await store.charge(key, 10, 100, DAY)).isAllowed) return
        admitted += 10
      }
    }
    await spend()
    t.equal(admitted, 100, 'day D spent')
    now -= 10_000
    await spend()
    t.equal(admitted, 100, 'nothing more 10 s back, in day D-1 by the clock')
    t.strictSame(await store.charge(key, 0, 100, DAY), { isAllowed: true, used: 100, resetSeconds: DAY + 5, resetMs: (DAY + 5) * 1000 }, 'day D\'s count, until day D ends')
    t.strictSame(await store.charge(key, -10, 100, DAY), { isAllowed: true, used: 90, resetSeconds: DAY + 5, resetMs: (DAY + 5) * 1000 }, 'a refund gives back to day D')
    now += 20_000
    await spend()
    t.equal(admitted, 110, 'back in day D: only the refunded 10 more')
    now = Date.UTC(2026, 11, 1, 0, 0, 0)
    t.strictSame(await store.charge(key, 10, 100, DAY), { isAllowed: true, used: 10, resetSeconds: DAY, resetMs: DAY * 1000 }, 'the next day starts from zero')
  })
}

test('redis: the TTL is set in the same step, and the server clock decides the day', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const redis = await redisClient(t)
  const store = createRedisWindowStore(redis)
  const key = `${prefix()}units`
  // The server clock cannot be injected here (it is what is tested): the script read it between these
  // two readings, so the answer is one of the resets of those seconds, also across a UTC midnight.
  const [before, beforeMicros] = await redis.time()
  const charge = await store.charge(key, 3, 10, DAY)
  const [after, afterMicros] = await redis.time()
  t.equal(charge.isAllowed, true)
  t.equal(charge.used, 3)
  const possible: number[] = []
  for (let s = Number(before); s <= Number(after); s++) possible.push(DAY - (s % DAY))
  t.ok(possible.includes(charge.resetSeconds), `seconds to the next UTC midnight by the Redis clock (${charge.resetSeconds} in ${possible.join(',')})`)
  const dayMs = DAY * 1000
  const msLeft = (seconds: unknown, micros: unknown): number => dayMs - ((Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)) % dayMs)
  const [most, least] = [msLeft(before, beforeMicros), msLeft(after, afterMicros)]
  t.ok(least <= most ? charge.resetMs >= least && charge.resetMs <= most : true, `milliseconds to midnight by the Redis clock (${charge.resetMs} in ${least}..${most})`)
  const ttl = await redis.ttl(key)
  // Kept until the day ends (a minute past it): a key gone sooner would start the day's count again.
  t.ok(ttl >= charge.resetSeconds && ttl <= charge.resetSeconds + 60, `key expires a minute after the day ends (ttl ${ttl}, ${charge.resetSeconds} s left)`)
  t.equal(await redis.ttl(`${prefix()}never-charged`), -2, 'a read does not create keys')
  await store.charge(`${key}:read`, 0, 10, DAY)
  t.equal(await redis.exists(`${key}:read`), 0)
  await redis.del(key)
})
