// Leased counters (quota/lease.ts) over both rate stores and the calendar store, with two or three
// counters on one store standing for replicas: however the charges are spread and interleaved, the
// replicas together never admit more than the limit; small limits (block 1) stay exact; leased units
// go back to the store on refund (beyond one block) and on release.
import { test, type Test } from 'tap'
import type { Redis } from 'ioredis'
import {
  calendarLeaseStore, createLeasedCounter, createMemoryRateStore, createRedisRateStore, type LeaseStore
} from '../../src/quota/lease.js'
import { createMemoryWindowStore, createRedisWindowStore, type Clock } from '../../src/quota/window-store.js'
import { leaseBlock } from '../../src/quota/plugin.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''
const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000
const FILE_PREFIX = testKeyPrefix('lease')
let keyCount = 0
const newKey = (): string => `${FILE_PREFIX}${++keyCount}`

async function redisClient (t: Test): Promise<Redis> {
  deleteKeysOnTeardown(t, REDIS_URL, FILE_PREFIX)
  const redis = await connectTestRedis(t, REDIS_URL)
  return redis
}

/** A counter as a replica holds it: its own leases, the shared store, every call counted. */
function replica (store: LeaseStore, block: number, now?: Clock) {
  let calls = 0
  const counter = createLeasedCounter({
    store,
    run: async (op) => { calls++; return await op() },
    blockFor: () => block,
    ...(now === undefined ? {} : { now })
  })
  return { counter, calls: () => calls }
}

type StoreMaker = (t: Test) => Promise<LeaseStore>
const stores: Array<[string, StoreMaker | undefined]> = [
  ['memory rate', async () => createMemoryRateStore()],
  ['memory calendar', async () => calendarLeaseStore(createMemoryWindowStore())],
  ['redis rate', REDIS_URL === '' ? undefined : async (t) => createRedisRateStore(await redisClient(t))],
  ['redis calendar', REDIS_URL === '' ? undefined : async (t) => calendarLeaseStore(createRedisWindowStore(await redisClient(t)))]
]

test('lease sizes: one unit below twice the divisor, then limit / divisor, capped', async (t) => {
  t.equal(leaseBlock(600, 1000, 1000), 1)
  t.equal(leaseBlock(1999, 1000, 1000), 1)
  t.equal(leaseBlock(100000, 1000, 1000), 100)
  t.equal(leaseBlock(1e12, 1000, 1000), 1000)
  // The defaults (LIMIT_LEASE_DIVISOR 20, LIMIT_LEASE_MAX 1000): 600/minute leases 30 requests at a
  // time, the default 100,000 daily units 1,000; limits under 40 stay exact.
  t.equal(leaseBlock(600, 20, 1000), 30)
  t.equal(leaseBlock(100000, 20, 1000), 1000)
  t.equal(leaseBlock(39, 20, 1000), 1)
  t.equal(leaseBlock(10, 20, 1000), 1)
})

for (const [name, make] of stores) {
  test(`leases over the ${name} store`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const store = await make(t)
    const period = name.endsWith('calendar') ? DAY_MS : MINUTE_MS

    t.test('three replicas, sequential, alternating: never more than the limit together', async (t) => {
      const key = newKey()
      const limit = 1000
      const replicas = [replica(store, 50), replica(store, 50), replica(store, 50)]
      let admitted = 0
      let callsBelowLimit = 0
      for (let i = 0; i < 1500; i++) {
        const charge = await replicas[i % 3]?.counter.charge(key, 1, limit, period)
        if (charge?.isAllowed === true) admitted++
        if (i === 899) callsBelowLimit = replicas.reduce((sum, r) => sum + r.calls(), 0)
      }
      t.ok(admitted <= limit, `${admitted} admitted ≤ ${limit}`)
      // Near the limit grants halve, so at most a few units per replica are left unspent.
      t.ok(admitted >= limit - 3 * 2, `${admitted} admitted: little stranded`)
      t.ok(callsBelowLimit <= 900 / 50 + 3, `${callsBelowLimit} store calls for the first 900 charges (blocks of 50)`)
    })

    t.test('a burst split across two replicas: never more than the limit', async (t) => {
      const key = newKey()
      const limit = 500
      const [a, b] = [replica(store, 40), replica(store, 40)]
      const results = await Promise.all(Array.from({ length: 800 }, (_, i) => (i % 2 === 0 ? a : b).counter.charge(key, 1 + (i % 3), limit, period)))
      const admitted = results.reduce((sum, r, i) => sum + (r?.isAllowed === true ? 1 + (i % 3) : 0), 0)
      t.ok(admitted <= limit, `${admitted} units admitted ≤ ${limit}`)
      t.ok(admitted >= limit - 2 * 2 * 3, `${admitted} units admitted: little stranded`)
    })

    t.test('block 1: exact across replicas, one store call per charge', async (t) => {
      const key = newKey()
      const [a, b] = [replica(store, 1), replica(store, 1)]
      const statuses: boolean[] = []
      for (let i = 0; i < 12; i++) statuses.push((await (i % 2 === 0 ? a : b).counter.charge(key, 1, 5, period))?.isAllowed === true)
      t.equal(statuses.filter(Boolean).length, 5)
      t.strictSame(statuses.slice(0, 5), [true, true, true, true, true], 'the first five, whichever replica')
      t.equal(a.calls() + b.calls(), 12)
    })

    t.test('a charge larger than the block is granted whole or refused whole', async (t) => {
      const key = newKey()
      const r = replica(store, 10)
      t.match(await r.counter.charge(key, 60, 100, period), { isAllowed: true, used: 60 })
      const refused = await r.counter.charge(key, 45, 100, period)
      t.match(refused, { isAllowed: false }, 'would cross the limit')
      t.ok(refused !== undefined && refused.used <= 60 + 10, `the refusal reports what is used (${refused?.used})`)
      t.match(await r.counter.charge(key, 30, 100, period), { isAllowed: true })
    })

    t.test('refunds stay local up to one block; the rest and release go back to the store', async (t) => {
      const key = newKey()
      const limit = 10_000
      const a = replica(store, 100)
      const b = replica(store, 100)
      t.match(await a.counter.charge(key, 1, limit, period), { isAllowed: true, used: 1 })
      t.equal((await a.counter.used(key, limit, period))?.used, 1, 'the store count less what the replica holds')
      t.equal((await b.counter.used(key, limit, period))?.used, 100, 'another replica sees the whole lease as used')
      await a.counter.charge(key, 500, limit, period)
      await a.counter.refund(key, 500, limit, period)
      t.equal((await a.counter.used(key, limit, period))?.used, 1, 'refunded')
      t.equal((await b.counter.used(key, limit, period))?.used, 101, 'beyond one block (100 kept), the refund went back to the store')
      await a.counter.release()
      t.equal((await b.counter.used(key, limit, period))?.used, 1, 'released: only what was spent stays counted')
    })
  })
}

test('a lease ends with its window', async (t) => {
  let now = Date.UTC(2026, 7, 1, 12, 0, 0)
  const store = createMemoryRateStore(() => now)
  const r = replica(store, 10, () => now)
  const key = newKey()
  t.match(await r.counter.charge(key, 1, 100, MINUTE_MS), { isAllowed: true, resetSeconds: 60 })
  t.equal(r.calls(), 1)
  now += 30_000
  t.match(await r.counter.charge(key, 1, 100, MINUTE_MS), { isAllowed: true, resetSeconds: 30 }, 'spent from the lease')
  t.equal(r.calls(), 1)
  now += 30_000
  t.match(await r.counter.charge(key, 1, 100, MINUTE_MS), { isAllowed: true, used: 1, resetSeconds: 60 }, 'a new window, a new lease')
  t.equal(r.calls(), 2)
})

// The last second of a calendar window (an hour's upstream share, a day's object units). The store once
// answered in whole seconds and a lease was cut a second short to end before the window, so in that last
// second every lease ended as it was granted: each charge leased a new block and stranded the rest, and
// every refund was dropped. 20 charges and 20 refunds left 40 units counted where 0 were spent.
const calendarStores: Array<[string, ((t: Test, now: Clock) => Promise<LeaseStore>) | undefined]> = [
  ['memory', async (_t, now) => calendarLeaseStore(createMemoryWindowStore({ now }))],
  ['redis', REDIS_URL === '' ? undefined : async (t, now) => calendarLeaseStore(createRedisWindowStore(await redisClient(t), { now }))]
]
for (const [name, make] of calendarStores) {
  test(`the last second of a calendar window (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const hourEnd = Date.UTC(2026, 7, 1, 13, 0, 0)
    let now = hourEnd - 500
    const store = await make(t, () => now)
    const key = newKey()
    const limit = 50
    const a = replica(store, 2, () => now)
    const b = replica(store, 2, () => now)
    for (let i = 0; i < 20; i++) {
      t.match(await a.counter.charge(key, 1, limit, HOUR_MS), { isAllowed: true, resetSeconds: 1 })
      now += 10
    }
    t.equal((await a.counter.used(key, limit, HOUR_MS))?.used, 20, 'this replica spent 20')
    const seen = (await b.counter.used(key, limit, HOUR_MS))?.used ?? -1
    t.ok(seen <= 20 + 2, `the store counts ${seen}: at most one block more than was spent`)
    t.ok(a.calls() <= 2 + 20 / 2, `${a.calls()} store calls: the leases lasted`)
    for (let i = 0; i < 20; i++) await a.counter.refund(key, 1, limit, HOUR_MS)
    t.equal((await a.counter.used(key, limit, HOUR_MS))?.used, 0, 'every refund counted')
    const after = (await b.counter.used(key, limit, HOUR_MS))?.used ?? -1
    t.ok(after <= 2, `the store counts ${after} after the refunds: at most one block held`)
    now = hourEnd
    t.match(await b.counter.used(key, limit, HOUR_MS), { used: 0, resetSeconds: 3600 }, 'the next hour starts at 0')
  })

  test(`two replicas in the last 100 ms of a calendar window and across its end (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const hourEnd = Date.UTC(2026, 7, 1, 14, 0, 0)
    let now = hourEnd - 100
    const store = await make(t, () => now)
    const key = newKey()
    const limit = 30
    const replicas = [replica(store, 4, () => now), replica(store, 4, () => now)]
    let admitted = 0
    for (let i = 0; i < 50; i++) {
      if ((await replicas[i % 2]?.counter.charge(key, 1, limit, HOUR_MS))?.isAllowed === true) admitted++
      now += 1
    }
    t.ok(admitted <= limit, `${admitted} admitted ≤ ${limit}`)
    t.ok(admitted >= limit - 2 * 2, `${admitted} admitted: little stranded`)
    // 50 ms later the hour has ended: what was leased in it is not spent in the next one.
    now = hourEnd
    const reader = replica(store, 4, () => now)
    for (let i = 0; i < 3; i++) t.match(await replicas[i % 2]?.counter.charge(key, 1, limit, HOUR_MS), { isAllowed: true, resetSeconds: 3600 })
    const counted = (await reader.counter.used(key, limit, HOUR_MS))?.used ?? -1
    t.ok(counted >= 3 && counted <= 3 + 2 * 4, `the new hour counts the 3 charges made in it and the leases they took (${counted}), nothing of the last`)
  })
}

// A request charged before midnight and answered with a 5xx after it gives its units back. The refund
// went to whatever lease was current, so the new day's lease (or, leasing one at a time, the new day's
// store count) gained units never charged in it: 105 admitted of a 100-unit day.
for (const [name, make] of calendarStores) {
  test(`a refund given after its window ended is dropped, not credited to the next (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    for (const [limit, block] of [[100, 5], [30, 1]] as const) {
      const midnight = Date.UTC(2026, 7, 2)
      let now = midnight - 1000
      const store = await make(t, () => now)
      const key = newKey()
      const r = replica(store, block, () => now)
      const before = await r.counter.charge(key, 5, limit, DAY_MS)
      t.match(before, { isAllowed: true })
      now = midnight + 1000
      let admitted = (await r.counter.charge(key, 1, limit, DAY_MS))?.isAllowed === true ? 1 : 0
      await r.counter.refund(key, 5, limit, DAY_MS, before?.windowEnd)
      for (let i = 0; i < 2 * limit && (await r.counter.charge(key, 1, limit, DAY_MS))?.isAllowed === true; i++) admitted++
      t.equal(admitted, limit, `block ${block}: the new day admits ${admitted} of ${limit}`)
    }
  })
}

for (const [name, make] of stores) {
  test(`a limit changed by a reload applies at once: the old lease goes back to the store (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const store = await (make as StoreMaker)(t)
    const counter = createLeasedCounter({ store, run: async (op) => await op(), blockFor: (limit) => leaseBlock(limit, 20, 1000) })
    const charge = async (key: string, limit: number, n: number): Promise<number> => {
      let allowed = 0
      for (let i = 0; i < n; i++) if ((await counter.charge(key, 1, limit, HOUR_MS))?.isAllowed === true) allowed++
      return allowed
    }
    // Lowered: 100,000 a window leases 1,000 at a time; cut to 50, the 49 left are all there is.
    const lowered = newKey()
    t.equal(await charge(lowered, 100_000, 1), 1)
    t.equal(await charge(lowered, 50, 60), 49, 'lowered: 49 more of 50, not the 999 leased before')
    // Lowered below the lease divisor: 600 leases 30; cut to 10, the 9 left can still be used.
    const cut = newKey()
    t.equal(await charge(cut, 600, 1), 1)
    t.equal(await charge(cut, 10, 20), 9, 'cut to an exact limit: 9 more of 10, not 0 (the 29 leased stayed counted)')
  })
}

// A reload that shortens a rate's period: the first request under the new one cuts the running window
// (2000/hour to 200/minute: 60 s left). Another replica still holds a lease taken under the hour window,
// which it spends only until its own reload. Once the cut window has ended and a new one started, that
// reload gave the lease's unspent units back to the new window, which never counted them: 299 admitted
// in one window of 200/minute; so did replica 2's close, and a lease that ends before the new window
// does (a period of 90 s, 25 s of it left when the new window starts, with 60 s). The replicas' clock
// is the test's; Redis ends the cut window early (DEL), as its TTL would.
let clock = Date.UTC(2026, 7, 3, 12, 0, 0)
async function redisRateStore (t: Test): Promise<{ store: LeaseStore, windowEnds: (key: string) => Promise<void> }> {
  const redis = await redisClient(t)
  return { store: createRedisRateStore(redis), windowEnds: async (key) => { await redis.del(key) } }
}
const rateStores: Array<[string, ((t: Test) => Promise<{ store: LeaseStore, windowEnds: (key: string) => Promise<void> }>) | undefined]> = [
  ['memory', async () => ({ store: createMemoryRateStore(() => clock), windowEnds: async () => {} })],
  ['redis', REDIS_URL === '' ? undefined : redisRateStore]
]
for (const [name, make] of rateStores) {
  test(`a lease of a window a reload cut gives nothing back to a later window (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const { store, windowEnds } = await (make as NonNullable<typeof make>)(t)
    const NEW = { limit: 200, periodMs: MINUTE_MS }
    for (const [oldPeriod, later, by] of [[HOUR_MS, MINUTE_MS + 1, 'reload'], [90_000, 65_000, 'reload'], [HOUR_MS, MINUTE_MS + 1, 'close']] as const) {
      const key = newKey()
      const mk = () => createLeasedCounter({ store, run: async (op) => await op(), blockFor: (limit) => leaseBlock(limit, 20, 1000), now: () => clock })
      const [one, two] = [mk(), mk()]
      const fill = async (): Promise<number> => {
        let admitted = 0
        for (let i = 0; i < 2 * NEW.limit; i++) if ((await one.charge(key, 1, NEW.limit, NEW.periodMs))?.isAllowed === true) admitted++
        return admitted
      }
      t.match(await two.charge(key, 1, 2000, oldPeriod), { isAllowed: true }, 'replica 2 leases under the old period')
      t.match(await one.charge(key, 1, NEW.limit, NEW.periodMs), { isAllowed: true, resetSeconds: 60 }, 'replica 1 reloaded first: the window is cut to 60 s')
      clock += later
      await windowEnds(key)
      const before = await fill()
      await (by === 'reload' ? two.dropChanged(() => NEW) : two.release())
      const after = await fill()
      t.ok(before + after <= NEW.limit, `old period ${oldPeriod / 1000} s, replica 2's ${by}: ${before} + ${after} admitted in one window of ${NEW.limit}`)
      t.ok(before >= NEW.limit - 10, `${before} admitted before replica 2's reload`)
    }
  })
}

// A give-back into the lease's own window, never cut: the app's clock steps (NTP, VM resume) between the
// lease and the close, or the lease call reaches Redis late (REDIS_COMMAND_TIMEOUT_MS may exceed 1 s).
// Compared on the app's clock, the lease's time left and the window's then differed by more than the
// slack allowed for a cut window, and the give-back was dropped: replica 1 charged 1 of 1000/hour and
// closed, the store kept counting its block of 100, and replica 2 admitted 900 more instead of 999.
// Replica 1's clock is the store's (the memory store's injected clock, the Redis server's) plus an offset.
type LiveRateStore = (t: Test) => Promise<{ store: LeaseStore, storeNow: Clock, used: (key: string) => Promise<number> }>
const memoryLiveStore: LiveRateStore = async () => {
  const store = createMemoryRateStore(() => clock)
  return { store, storeNow: () => clock, used: async (key) => (await store.lease(key, 0, 0, 1000, HOUR_MS)).used }
}
const redisLiveStore: LiveRateStore = async (t) => {
  const redis = await redisClient(t)
  return { store: createRedisRateStore(redis), storeNow: Date.now, used: async (key) => Number(await redis.get(key)) }
}
const liveRateStores: Array<[string, LiveRateStore | undefined]> = [
  ['memory', memoryLiveStore],
  ['redis', REDIS_URL === '' ? undefined : redisLiveStore]
]
for (const [name, make] of liveRateStores) {
  test(`a lease gives back into its own window whatever the app's clock or the trip (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const { store: inner, storeNow, used } = await (make as NonNullable<typeof make>)(t)
    for (const [step, trip] of [[-2000, 0], [2000, 0], [0, 1500]] as const) {
      const key = newKey()
      // The lease call is sent `trip` ms (on replica 1's clock) before the store answers it.
      let offset = -trip
      const store: LeaseStore = {
        async lease (...args) {
          if (args[1] > 0) offset += trip
          return await inner.lease(...args)
        }
      }
      const one = createLeasedCounter({ store, run: async (op) => await op(), blockFor: () => 100, now: () => storeNow() + offset })
      const two = createLeasedCounter({ store: inner, run: async (op) => await op(), blockFor: () => 100, now: storeNow })
      t.match(await one.charge(key, 1, 1000, HOUR_MS), { isAllowed: true })
      offset += step
      await one.release()
      const stored = await used(key)
      let admitted = 0
      for (let i = 0; i < 1000 && (await two.charge(key, 1, 1000, HOUR_MS))?.isAllowed === true; i++) admitted++
      t.same({ stored, admitted }, { stored: 1, admitted: 999 }, `clock stepped ${step} ms, lease call ${trip} ms late: the store counts the 1 spent, replica 2 admits 999`)
    }
  })
}

// A store call of a lease refill that is out when the lease is dropped: a reload changed the limit (the
// next charge under the new one drops the old lease), or the app gives every lease back (release on
// close, dropChanged on a reload). The grant landed on a lease no longer held, so nothing spent it and
// nothing gave it back: 1,001 admitted of a 2,000 limit, 999 units counted until the window's end.
for (const [name, make] of stores) {
  test(`a grant that lands on a dropped lease goes back to the store (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const inner = await (make as StoreMaker)(t)
    const period = name.endsWith('calendar') ? DAY_MS : MINUTE_MS
    // Holds the next leasing call until let go: `reached` resolves once the call has been made.
    let hold: { reached: () => void, gate: Promise<void> } | undefined
    const store: LeaseStore = {
      async lease (...args) {
        const held = args[1] > 0 ? hold : undefined
        hold = undefined
        if (held !== undefined) {
          held.reached()
          await held.gate
        }
        return await inner.lease(...args)
      }
    }
    const holdNext = () => {
      let open = (): void => {}
      let reached = (): void => {}
      const gate = new Promise<void>((resolve) => { open = resolve })
      const arrived = new Promise<void>((resolve) => { reached = resolve })
      hold = { reached, gate }
      return { arrived, open }
    }
    const counter = createLeasedCounter({ store, run: async (op) => await op(), blockFor: (limit) => leaseBlock(limit, 20, 1000) })
    const stored = async (key: string, limit: number): Promise<number> => (await inner.lease(key, 0, 0, limit, period)).used

    // The limit lowered while a charge under the old one is out to the store.
    const key = newKey()
    const held = holdNext()
    const old = counter.charge(key, 1, 100_000, period)
    await held.arrived
    let admitted = (await counter.charge(key, 1, 2000, period))?.isAllowed === true ? 1 : 0
    held.open()
    if ((await old)?.isAllowed === true) admitted++
    for (let i = 0; i < 3000 && (await counter.charge(key, 1, 2000, period))?.isAllowed === true; i++) admitted++
    t.equal(admitted, 2000, 'every unit of the new limit is admitted')
    await counter.release()
    t.equal(await stored(key, 2000), admitted, 'released: the store counts only what was spent')

    // Every lease given back (close, reload) while a refill is out.
    for (const drop of [async () => { await counter.release() }, async () => { await counter.dropChanged(() => undefined) }]) {
      const other = newKey()
      const out = holdNext()
      const charged = counter.charge(other, 1, 100_000, period)
      await out.arrived
      await drop()
      out.open()
      t.match(await charged, { isAllowed: true })
      t.equal(await stored(other, 100_000), 1, 'the grant landing on the dropped lease went back: 1 unit counted, the one spent')
    }
  })
}

// Each store's own give-back: never below zero. A give-back of more than the window counted (the count
// was reset under it) read as a credit, and the window then admitted that many more than its limit.
for (const [name, make] of stores) {
  test(`a give-back never takes a count below zero (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const store = await (make as StoreMaker)(t)
    const period = name.endsWith('calendar') ? DAY_MS : MINUTE_MS
    const key = newKey()
    t.match(await store.lease(key, 3, 3, 10, period), { granted: 3, used: 3 })
    t.match(await store.lease(key, -5, 0, 10, period), { granted: 0, used: 0 }, 'five given back of three counted: 0, not -2')
    const r = replica(store, 1)
    let admitted = 0
    for (let i = 0; i < 20; i++) if ((await r.counter.charge(key, 1, 10, period))?.isAllowed === true) admitted++
    t.equal(admitted, 10, 'the window admits its limit, not 12')
  })
}

// How the leased counter splits a limit among replicas and charges, with figures every store gives alike.
for (const [name, make] of stores) {
  test(`lease accounting near the limit (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const store = await make(t)
    const period = name.endsWith('calendar') ? DAY_MS : MINUTE_MS
    const stored = async (key: string, limit: number): Promise<number> => (await store.lease(key, 0, 0, limit, period)).used

    t.test('a grant is at most half of what is left: two replicas\' leases leave a third room', async (t) => {
      const key = newKey()
      const [a, b, c] = [replica(store, 50), replica(store, 50), replica(store, 50)]
      t.match(await a.counter.charge(key, 1, 100, period), { isAllowed: true })
      t.equal(await stored(key, 100), 50, 'the first lease: the whole block (half of 100)')
      t.match(await b.counter.charge(key, 1, 100, period), { isAllowed: true })
      t.equal(await stored(key, 100), 75, 'the second: half of the 50 left, not all of it')
      t.match(await c.counter.charge(key, 1, 100, period), { isAllowed: true }, 'a third replica is not refused with 2 units spent')
      t.equal(await stored(key, 100), 87)
    })

    t.test('a charge larger than the lease holds takes what is left of it and asks the store for the rest', async (t) => {
      const key = newKey()
      const [a, b] = [replica(store, 10), replica(store, 1)]
      t.match(await a.counter.charge(key, 1, 100, period), { isAllowed: true })
      t.match(await b.counter.charge(key, 85, 100, period), { isAllowed: true, used: 95 }, 'a holds 9 of the 95 counted')
      t.match(await a.counter.charge(key, 12, 100, period), { isAllowed: true }, '9 held and 3 of the 5 left: not refused as 12 more')
      t.equal(await stored(key, 100), 98)
    })

    t.test('a refused charge keeps the lease it would have used: the limit is still reached exactly', async (t) => {
      const key = newKey()
      const [a, b] = [replica(store, 10), replica(store, 1)]
      t.match(await a.counter.charge(key, 1, 100, period), { isAllowed: true })
      t.match(await b.counter.charge(key, 85, 100, period), { isAllowed: true })
      t.match(await a.counter.charge(key, 20, 100, period), { isAllowed: false }, '9 held and 5 left: 20 is refused')
      let admitted = 0
      for (let i = 0; i < 50; i++) if ((await a.counter.charge(key, 1, 100, period))?.isAllowed === true) admitted++
      t.equal(admitted, 14, 'the 9 still held and the 5 left, not the 5 alone')
    })

    t.test('a refund beyond one block lowers the count later charges report', async (t) => {
      const key = newKey()
      const a = replica(store, 100)
      t.match(await a.counter.charge(key, 1, 10_000, period), { isAllowed: true, used: 1 })
      t.match(await a.counter.charge(key, 500, 10_000, period), { isAllowed: true, used: 501 })
      await a.counter.refund(key, 500, 10_000, period)
      t.match(await a.counter.charge(key, 1, 10_000, period), { isAllowed: true, used: 2 }, 'from the lease: 2 used, not 402')
    })

    t.test('a reload that changes only the limit gives the lease back', async (t) => {
      const key = newKey()
      const counter = createLeasedCounter({ store, run: async (op) => await op(), blockFor: (limit) => leaseBlock(limit, 20, 1000) })
      t.match(await counter.charge(key, 1, 100_000, period), { isAllowed: true })
      t.equal(await stored(key, 100_000), 1000, 'a block of 1,000 leased')
      await counter.dropChanged(() => ({ limit: 50, periodMs: period }))
      t.equal(await stored(key, 50), 1, 'the 999 unspent went back: 1 counted')
    })

    t.test('a refund that comes while a refill is out stays with the lease', async (t) => {
      const key = newKey()
      let hold: Promise<void> | undefined
      let reached = (): void => {}
      const held: LeaseStore = {
        async lease (...args) {
          if (args[1] > 0 && hold !== undefined) {
            const gate = hold
            hold = undefined
            reached()
            await gate
          }
          return await store.lease(...args)
        }
      }
      const counter = createLeasedCounter({ store: held, run: async (op) => await op(), blockFor: () => 10 })
      t.match(await counter.charge(key, 1, 1000, period), { isAllowed: true })
      let open = (): void => {}
      hold = new Promise((resolve) => { open = resolve })
      const arrived = new Promise<void>((resolve) => { reached = resolve })
      const charged = counter.charge(key, 15, 1000, period)
      await arrived
      await counter.refund(key, 1, 1000, period)
      open()
      t.match(await charged, { isAllowed: true })
      await counter.release()
      t.equal(await stored(key, 1000), 15, 'released: 1 + 15 charged, 1 refunded: 15 counted, not 16')
    })
  })
}

// A lease that has ended holds nothing: given back (a reload, the close) after its calendar window, its
// unspent units went into the next window, which never counted them (rate stores refuse a give-back
// into another window; calendar ones take it).
for (const [name, make] of calendarStores) {
  test(`a lease of an ended window gives nothing back to the next (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const hourEnd = Date.UTC(2026, 7, 1, 16, 0, 0)
    for (const [how, drop] of [
      ['release', async (c: ReturnType<typeof replica>) => { await c.counter.release() }],
      ['reload', async (c: ReturnType<typeof replica>) => { await c.counter.dropChanged(() => undefined) }]
    ] as const) {
      let now = hourEnd - 1000
      const store = await make(t, () => now)
      const key = newKey()
      const a = replica(store, 10, () => now)
      const b = replica(store, 1, () => now)
      t.match(await a.counter.charge(key, 1, 100, HOUR_MS), { isAllowed: true }, 'a leases 10 in the hour\'s last second')
      now = hourEnd + 1000
      t.match(await b.counter.charge(key, 5, 100, HOUR_MS), { isAllowed: true, used: 5 })
      await drop(a)
      t.equal((await b.counter.used(key, 100, HOUR_MS))?.used, 5, `${how} after the hour ended: the next hour still counts its 5, not 0`)
    }
  })
}

// A reload that shortens a rate's period and keeps its limit: the lease taken under the old period ends
// with the old window, so kept, its units were spent in the new, shorter windows that never counted them.
for (const [name, make] of rateStores) {
  test(`a reload that changes only the period gives the lease back (${name} store)`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    const { store, windowEnds } = await (make as NonNullable<typeof make>)(t)
    const key = newKey()
    const counter = createLeasedCounter({ store, run: async (op) => await op(), blockFor: (limit) => leaseBlock(limit, 20, 1000), now: () => clock })
    t.match(await counter.charge(key, 1, 200, HOUR_MS), { isAllowed: true }, 'a block of 10 leased under 200/hour')
    t.match(await counter.charge(key, 1, 200, MINUTE_MS), { isAllowed: true, resetSeconds: 60 }, 'now 200/minute')
    clock += MINUTE_MS + 1
    await windowEnds(key)
    let admitted = 0
    for (let i = 0; i < 400; i++) if ((await counter.charge(key, 1, 200, MINUTE_MS))?.isAllowed === true) admitted++
    t.equal(admitted, 200, 'the next minute admits 200, not 200 and what was left of the hour\'s lease')
  })
}
