// The global upstream budget, memory and Redis behind one contract: takes, refunds for calls that never
// reached the upstream (never above capacity, never losing a concurrent take), and the 429 pause.
import { test, type Test } from 'tap'
import { createMemoryBudget, createRedisBudget, type UpstreamBudget } from '../../src/upstream/budget.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''

async function redisBudget (t: Test, rate: string): Promise<UpstreamBudget> {
  const prefix = testKeyPrefix('budget')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const redis = await connectTestRedis(t, REDIS_URL)
  return createRedisBudget(redis, prefix, rate)
}

const makers: Array<[string, ((t: Test, rate: string) => Promise<UpstreamBudget>) | undefined]> = [
  ['memory', async (_t, rate) => createMemoryBudget(rate)],
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

  test(`${name} budget: a pause refuses every take until it ends`, { skip: make === undefined ? 'REDIS_URL is not set' : false }, async (t) => {
    if (make === undefined) return
    const budget = await make(t, '100/hour')
    await budget.pause(60)
    const take = await budget.take()
    t.match(take, { ok: false, reason: 'paused' })
    t.ok(take.retryAfterS > 50 && take.retryAfterS <= 60)
  })
}
