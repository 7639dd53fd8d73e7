// The global upstream budget, memory and Redis behind one contract: takes, refunds for calls that never
// reached the upstream (never above capacity, never losing a concurrent take), and the 429 pause.
import { test, type Test } from 'tap'
import { createMemoryBudget, createRedisBudget, createResilientBudget, MAX_RATE_COUNT, paceBurst, parseRate, type UpstreamBudget } from '../../src/upstream/budget.js'
import { createRedisHealth } from '../../src/lib/redis-health.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''

async function redisBudget (t: Test, rate: string, burst?: number): Promise<UpstreamBudget> {
  const prefix = testKeyPrefix('budget')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const redis = await connectTestRedis(t, REDIS_URL)
  return createRedisBudget(redis, prefix, rate, burst)
}

const makers: Array<[string, ((t: Test, rate: string, burst?: number) => Promise<UpstreamBudget>) | undefined]> = [
  ['memory', async (_t, rate, burst) => createMemoryBudget(rate, Date.now, burst)],
  ['redis', REDIS_URL === '' ? undefined : redisBudget]
]

for (const [name, make] of makers) {
  test(`${name} budget: a refund gives back what a take took, never above capacity`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '3/hour')
    t.equal(await budget.refund(), 3, 'a refund on a full bucket stays at capacity')
    t.match(await budget.take(), { ok: true, remaining: 2 })
    t.match(await budget.take(), { ok: true, remaining: 1 })
    t.equal(await budget.refund(), 2)
    t.match(await budget.take(), { ok: true, remaining: 1 })
    t.match(await budget.take(), { ok: true, remaining: 0 })
    t.match(await budget.take(), { ok: false, reason: 'budget' })
    t.equal(await budget.refund(), 1)
    t.match(await budget.take(), { ok: true, remaining: 0 })
  })

  test(`${name} budget: concurrent takes and refunds lose no update`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '100/hour')
    const takes = await Promise.all(Array.from({ length: 40 }, () => budget.take()))
    t.ok(takes.every((r) => r.ok))
    // 10 of those calls never reached the upstream, and 10 more calls fail the same way meanwhile: every
    // refund comes back once, interleaved with the new takes.
    await Promise.all(Array.from({ length: 20 }, async (_, i) => (i % 2 === 0 ? budget.refund() : budget.take().then(() => budget.refund()))))
    const after = await budget.take()
    t.equal(after.remaining, 100 - 40 + 10 - 1, 'every take and refund counted once')
  })

  test(`${name} budget: every call takes one from the pace, which is never refused and goes below zero`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    // 10/hour with a burst of 2: the pace refills 8 an hour, nothing measurable during the test.
    const budget = await make(t, '10/hour', 2)
    const near = (value: number, expected: number, what: string) => t.ok(Math.abs(value - expected) < 0.01, `${what}: pace ${value} ≈ ${expected}`)
    near((await budget.take()).pace, 1, 'first take')
    near((await budget.take()).pace, 0, 'second take')
    const third = await budget.take()
    t.equal(third.ok, true, 'the bucket still holds tokens: the pace never refuses a call')
    near(third.pace, -1, 'third take')
    t.equal(await budget.refund(), 8, 'a refund gives the bucket its token back…')
    near((await budget.take()).pace, -1, '…and the pace its one')
  })

  test(`${name} budget: a pause refuses every take until it ends`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '100/hour')
    await budget.pause(60)
    const take = await budget.take()
    t.match(take, { ok: false, reason: 'paused' })
    t.ok(take.retryAfterS > 50 && take.retryAfterS <= 60)
  })

  // Above 2^63 a Redis reply wrapped: 99999999999999999999999/second left -9223372036854778000 tokens, a
  // spent budget. The largest count a rate may have (MAX_RATE_COUNT) stays exact in the script's doubles.
  test(`${name} budget: the largest rate allowed counts whole tokens exactly`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    // The bucket refills about 11,574 tokens a second: only figures at the cap are certain.
    const budget = await make(t, `${MAX_RATE_COUNT}/day`)
    t.match(await budget.take(), { ok: true, remaining: MAX_RATE_COUNT - 1 })
    t.equal(await budget.refund(), MAX_RATE_COUNT)
    t.match(await budget.take(), { ok: true, remaining: MAX_RATE_COUNT - 1 })
  })

  // An upstream 429 on the call that spent the bucket: the pause ends long before a token is back.
  // Until 2026-12-02 a paused take answered the pause's 60 s, and the retry then 1,139 s more.
  test(`${name} budget: a pause over an empty bucket answers the wait for a token when that is longer`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '3/hour')
    for (let i = 0; i < 3; i++) t.match(await budget.take(), { ok: true })
    await budget.pause(60)
    const take = await budget.take()
    t.match(take, { ok: false, reason: 'paused' })
    t.ok(take.retryAfterS > 1190 && take.retryAfterS <= 1200, `retry after ${take.retryAfterS} s: a token every 1,200 s`)
    t.ok(take.pauseS !== undefined && take.pauseS > 50 && take.pauseS <= 60, `the pause alone: ${take.pauseS} s`)
  })
}

test('a pause over an empty bucket: the retry after the pause answers the same wait (memory, injected clock)', async (t) => {
  let clock = 0
  const budget = createMemoryBudget('3/hour', () => clock)
  for (let i = 0; i < 3; i++) await budget.take()
  await budget.pause(60)
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 1200, pauseS: 60 })
  clock += 61_000
  t.match(await budget.take(), { ok: false, reason: 'budget', retryAfterS: 1139 }, 'nothing changed but the pause ended')
  await budget.pause(3600)
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 3600, pauseS: 3600 }, 'a pause longer than the wait for a token')
})

test('the pace refills (capacity - burst) per window, up to its burst (memory, injected clock)', async (t) => {
  let clock = 0
  const budget = createMemoryBudget('10/hour', () => clock, 2)
  for (let i = 0; i < 5; i++) await budget.take()
  t.equal((await budget.take()).pace, -4, '6 takes from a pace of 2')
  clock += 30 * 60 * 1000
  t.equal((await budget.take()).pace, -1, 'half an hour refills 4 (8 an hour), the take spends 1')
  clock += 10 * 60 * 60 * 1000
  t.equal((await budget.take()).pace, 1, 'never above the burst before the take')
})

test('a refused take spends no pace', async (t) => {
  const budget = createMemoryBudget('3/second', () => 0, 1)
  let last = 0
  for (let i = 0; i < 3; i++) last = (await budget.take()).pace
  t.equal(last, -2)
  const refused = await budget.take()
  t.equal(refused.ok, false, 'a spent bucket refuses')
  t.equal(refused.pace, -2, 'a refused take spends no pace')
})

// Two replicas paused at once by the upstream's 429s: the pause read its time left and set its own in
// two calls, so a shorter pause sent between them replaced a longer one (60 s left of 120 in 20 of 20).
test('redis budget: concurrent pauses from two replicas keep the longer one', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  for (let i = 0; i < 30; i++) {
    const prefix = testKeyPrefix('budget')
    deleteKeysOnTeardown(t, REDIS_URL, prefix)
    const [a, b] = [createRedisBudget(await connectTestRedis(t, REDIS_URL), prefix, '100/hour'), createRedisBudget(await connectTestRedis(t, REDIS_URL), prefix, '100/hour')]
    await Promise.all([a.pause(120), b.pause(60)])
    const take = await a.take()
    t.ok(take.retryAfterS > 100, `run ${i}: the 120 s pause holds (${take.retryAfterS} s left)`)
  }
})

// UPSTREAM_RATE changes by a rolling update (operators lower it after upstream 429s), so for a while
// replicas on the old rate and on the new one share a prefix. The bucket's key carried the rate's text
// ({budget}:10/hour, {budget}:9/hour): two full buckets, 10 + 9 = 19 calls granted in the hour. One bucket
// now, whatever the rate; each replica refills and caps it at its own.
test('redis budget: replicas on different rates draw from one bucket, each capping it at its own capacity', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const pair = async () => {
    const prefix = testKeyPrefix('budget')
    deleteKeysOnTeardown(t, REDIS_URL, prefix)
    return [createRedisBudget(await connectTestRedis(t, REDIS_URL), prefix, '10/hour'), createRedisBudget(await connectTestRedis(t, REDIS_URL), prefix, '9/hour')] as const
  }
  const [older, newer] = await pair()
  let granted = 0
  for (let i = 0; i < 14; i++) if ((await older.take()).ok) granted++
  t.equal(granted, 10, 'the replica on 10/hour spends the bucket')
  const refused = await newer.take()
  t.match(refused, { ok: false, reason: 'budget', remaining: 0 }, 'the replica on 9/hour finds it spent (before: a bucket of its own)')
  for (let i = 0; i < 13; i++) if ((await newer.take()).ok) granted++
  t.equal(granted, 10, 'both together: 10 calls in the hour, not 10 + 9')

  // A bucket the higher rate left full holds more than the lower rate's capacity: that one caps it.
  const [high, low] = await pair()
  t.match(await high.take(), { ok: true, remaining: 9 })
  t.equal(await high.refund(), 10, 'full at 10')
  t.match(await low.take(), { ok: true, remaining: 8 }, 'the replica on 9/hour: at most 9, less the one it took')
  t.match(await high.take(), { ok: true, remaining: 7 }, 'the replica on 10/hour carries on from the same count')
  t.equal(await low.refund(), 8)
})

// The wall clock stepped back an hour (NTP step, VM resume) with 50 of 100 tokens left: the refill read
// the negative time as a drain, so the next take was refused for about half an hour (retry after 1,872 s,
// pace -111). The Redis script never counts time backwards; neither does the memory bucket.
test('memory budget: a clock stepping back takes no tokens (injected clock)', async (t) => {
  let clock = Date.UTC(2026, 10, 30, 12, 0, 0)
  const budget = createMemoryBudget('100/hour', () => clock)
  for (let i = 0; i < 50; i++) await budget.take()
  clock -= 60 * 60 * 1000
  const take = await budget.take()
  t.match(take, { ok: true, remaining: 49, retryAfterS: 0 }, 'the 50 tokens left are still there')
  t.equal(take.pace, -31, 'the pace (a burst of 20, 51 takes) is not drained by the step either')
  clock += 36_000
  t.match(await budget.take(), { ok: true, remaining: 49 }, 'time after the step refills from the new reading')
})

// The pause after an upstream 429 was held as a wall-clock end: after pause(60) and a step back of an
// hour, a take 61 s later was still refused (retry after 3,599 s), for the length of the step. The Redis
// budget holds the pause by PTTL, which no step of the clock moves; the memory one now keeps its length.
test('memory budget: a clock stepping back keeps the pause as long as the upstream asked (injected clock)', async (t) => {
  let clock = Date.UTC(2026, 11, 1, 12, 0, 0)
  const budget = createMemoryBudget('100/hour', () => clock)
  await budget.pause(60)
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 60 })
  clock -= 60 * 60 * 1000
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 60 }, 'right after the step: the 60 s left')
  clock += 30_000
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 30 }, '30 s on: 30 s left')
  clock += 31_000
  t.match(await budget.take(), { ok: true, remaining: 99 }, '61 s on: the pause is over')

  // A pause asked for after the step (the clock read again only then) is not moved back by it.
  clock -= 60 * 60 * 1000
  await budget.pause(60)
  clock += 59_000
  t.match(await budget.take(), { ok: false, reason: 'paused', retryAfterS: 1 })
  clock += 1000
  t.match(await budget.take(), { ok: true })
})

// The memory budget read the wall clock by default. A step back then forward again (a wrong step
// corrected: NTP, VM resume) read as an hour elapsed: the pause an upstream 429 asked for was over at
// once, and the bucket refilled whole. By default it now measures time on the monotonic clock, which no
// step moves (Date.now is stepped here; tests inject their own clock).
test('memory budget: by default no step of the wall clock shortens the pause or refills the bucket', async (t) => {
  const realNow = Date.now
  let offset = 0
  Date.now = () => realNow() + offset
  t.teardown(() => { Date.now = realNow })
  const budget = createMemoryBudget('100/hour')
  for (let i = 0; i < 40; i++) await budget.take()
  await budget.pause(60)
  offset -= 60 * 60 * 1000
  t.match(await budget.take(), { ok: false, reason: 'paused' })
  offset += 60 * 60 * 1000
  t.match(await budget.take(), { ok: false, reason: 'paused' }, 'the step corrected: still paused (before: the pause was over)')
  await budget.refund()
  const left = await budget.refund()
  t.ok(left <= 62, `the bucket did not refill for the hour the clock jumped (${left} tokens)`)
})

test('a rate counts at most MAX_RATE_COUNT per period', async (t) => {
  t.equal(MAX_RATE_COUNT, 1_000_000_000)
  t.same(parseRate(`${MAX_RATE_COUNT}/second`), { capacity: MAX_RATE_COUNT, windowMs: 1000 })
  t.throws(() => parseRate(`${MAX_RATE_COUNT + 1}/second`), /at most 1000000000/)
  t.throws(() => parseRate('99999999999999999999999/second'), /at most 1000000000/)
})

for (const [name, make] of makers) {
  // A bucket of one token (1/hour) starts full: exactly 1, not a token and a fraction.
  test(`${name} budget: a bucket of one token grants its one call`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '1/hour')
    t.match(await budget.take(), { ok: true, remaining: 0 })
    t.match(await budget.take(), { ok: false, reason: 'budget' })
  })

  // Two 429s in a row: the pause lasts until the later of their ends, whichever came first.
  test(`${name} budget: a longer pause extends a shorter one, a shorter one never cuts a longer one`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '100/hour')
    await budget.pause(60)
    await budget.pause(120)
    const longer = await budget.take()
    t.ok(longer.pauseS !== undefined && longer.pauseS > 100, `pause(60) then pause(120): ${longer.pauseS} s left`)
    await budget.pause(30)
    const kept = await budget.take()
    t.ok(kept.pauseS !== undefined && kept.pauseS > 100, `then pause(30): still ${kept.pauseS} s left`)
  })
}

test('memory budget: a Retry-After never comes before the token it waits for (injected clock)', async (t) => {
  let clock = 0
  const budget = createMemoryBudget('3/hour', () => clock)
  for (let i = 0; i < 3; i++) await budget.take()
  clock += 500
  t.match(await budget.take(), { ok: false, reason: 'budget', retryAfterS: 1200 }, '1,199.5 s to the next token: 1,200, not 1,199')
})

test('memory budget: the pace goes no lower than minus the capacity (injected clock)', async (t) => {
  let clock = 0
  // 2/hour with a burst of 1: the bucket refills 2 an hour, the pace 1; each hour's 2 takes lower it by 1.
  const budget = createMemoryBudget('2/hour', () => clock, 1)
  const paces: number[] = []
  for (let hour = 0; hour < 4; hour++) {
    for (let i = 0; i < 2; i++) paces.push((await budget.take()).pace)
    clock += 3_600_000
  }
  t.same(paces, [0, -1, -1, -2, -2, -2, -2, -2], 'down to -2 (minus the capacity) and held there, not -4')
})

// The Redis bucket's refill, from the time its hash says it was last taken from: moved back here, as an
// hour's takes would have aged it (the test cannot wait for the Redis clock).
test('redis budget: the bucket refills its capacity per window, from the last take', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const prefix = testKeyPrefix('budget')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const redis = await connectTestRedis(t, REDIS_URL)
  const budget = createRedisBudget(redis, prefix, '3/hour', 1)
  const bucket = `${prefix}{budget}:bucket`
  for (let i = 0; i < 3; i++) t.match(await budget.take(), { ok: true })
  t.match(await budget.take(), { ok: false, reason: 'budget' })
  // Kept for longer than a window: a bucket dropped sooner would read as full again.
  t.ok(await redis.pttl(bucket) > 3_600_000, 'the spent bucket outlives its window')
  const age = async (ms: number): Promise<void> => {
    await redis.hset(bucket, 'ts', String(Number(await redis.hget(bucket, 'ts')) - ms))
  }
  // 25 minutes: 1.25 tokens (3 an hour), and the pace 0.83 more (2 an hour, burst 1).
  await age(25 * 60_000)
  const took = await budget.take()
  t.match(took, { ok: true, remaining: 0 }, 'one token back, not two')
  t.ok(Math.abs(took.pace - (-2 + 50 / 60 - 1)) < 0.01, `the pace refilled 2 an hour (capacity less burst): ${took.pace}`)
  t.match(await budget.take(), { ok: false, reason: 'budget' })
  // The Redis clock stepped back an hour since the last take: no refill, and no drain either.
  await age(-60 * 60_000)
  const refused = await budget.take()
  t.match(refused, { ok: false, remaining: 0 })
  t.ok(refused.retryAfterS > 800 && refused.retryAfterS <= 900, `the 0.25 token left waits ${refused.retryAfterS} s, not an hour more`)
})

test('a rate counts at least 1 per period; the pace\'s burst is at least 1 token', async (t) => {
  t.throws(() => parseRate('0/hour'), /bad rate/)
  t.equal(paceBurst(100, 0), 1, 'a headroom of 0: work that can wait still runs at the pace')
  t.equal(paceBurst(100, 20), 20)
  t.equal(paceBurst(10, 20), 10)
})

// An upstream 429 while Redis answers, then Redis fails: the replica's local bucket takes over, and it
// must be paused too, or the first call after the failure goes to an upstream that asked for quiet.
test('resilient budget: a pause holds in the local bucket that takes over when Redis fails', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const prefix = testKeyPrefix('budget')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const redis = await connectTestRedis(t, REDIS_URL)
  const health = createRedisHealth({ cooldownMs: 60_000 })
  t.teardown(() => { health.close() })
  const budget = createResilientBudget(createRedisBudget(redis, prefix, '100/hour'), createMemoryBudget('100/hour'), health.guard('budget'))
  await budget.pause(60)
  t.match(await budget.take(), { ok: false, reason: 'paused' }, 'paused, from Redis')
  redis.disconnect()
  t.match(await budget.take(), { ok: false, reason: 'paused' }, 'Redis gone: the local bucket is paused as well')
})
