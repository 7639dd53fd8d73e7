// The global upstream budget: a token bucket that every upstream call takes from before it is sent,
// so the gateway never provokes the upstream's 429 itself (one token has ~100 calls/hour across all
// endpoints, shared by every consumer). Also holds the pause after an upstream 429 (Retry-After).
// With Redis the bucket and the pause are shared by every replica (atomic Lua, the Redis clock).
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Metrics } from '../plugins/metrics.js'
import { budgetError } from './error-map.js'
import type { RedisGuard } from '../lib/redis-health.js'

export interface BudgetTake {
  ok: boolean
  /** Whole tokens left after this take (ok) or now (refused). */
  remaining: number
  /** When refused: seconds until a token is available or the pause ends. */
  retryAfterS: number
  reason?: 'budget' | 'paused'
}

export interface UpstreamBudget {
  take(): Promise<BudgetTake>
  /**
   * Gives back a token taken for a call that never reached the upstream (refused connection, DNS
   * failure, no free connection in time); resolves with the whole tokens left. Never above capacity.
   */
  refund(): Promise<number>
  /** Stops every call for `seconds` (an upstream 429 said so). */
  pause(seconds: number): Promise<void>
}

const WINDOWS_MS: Record<string, number> = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 }

/** Parses `100/hour` into a capacity and a refill window (validated by the config schema). */
export function parseRate (rate: string): { capacity: number, windowMs: number } {
  const [count, unit] = rate.split('/')
  const windowMs = WINDOWS_MS[unit ?? '']
  const capacity = Number(count)
  if (windowMs === undefined || !Number.isInteger(capacity) || capacity < 1) throw new Error(`bad rate "${rate}"`)
  return { capacity, windowMs }
}

export function createMemoryBudget (rate: string, now: () => number = Date.now): UpstreamBudget {
  const { capacity, windowMs } = parseRate(rate)
  let tokens = capacity
  let updatedAt = now()
  let pausedUntil = 0
  function refill (): void {
    const t = now()
    tokens = Math.min(capacity, tokens + (t - updatedAt) * capacity / windowMs)
    updatedAt = t
  }
  return {
    async take () {
      const pausedMs = pausedUntil - now()
      refill()
      if (pausedMs > 0) return { ok: false, remaining: Math.floor(tokens), retryAfterS: Math.ceil(pausedMs / 1000), reason: 'paused' }
      if (tokens >= 1) {
        tokens -= 1
        return { ok: true, remaining: Math.floor(tokens), retryAfterS: 0 }
      }
      return { ok: false, remaining: 0, retryAfterS: Math.ceil((1 - tokens) * windowMs / capacity / 1000), reason: 'budget' }
    },
    async refund () {
      refill()
      tokens = Math.min(capacity, tokens + 1)
      return Math.floor(tokens)
    },
    async pause (seconds) {
      pausedUntil = Math.max(pausedUntil, now() + seconds * 1000)
    }
  }
}

// KEYS[1] bucket hash; ARGV capacity, window ms. The bucket's tokens now: what was left, refilled for
// the time since, never above capacity. TIME makes every replica use the Redis clock.
const REFILL_LUA = `
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or capacity
local ts = tonumber(data[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * capacity / window)
`

// KEYS[2] pause key. Takes one token unless paused. Returns {ok, remaining, wait ms, paused}.
const TAKE_LUA = REFILL_LUA + `
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {0, math.floor(tokens), pause, 1} end
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], window * 2)
local wait = 0
if ok == 0 then wait = math.ceil((1 - tokens) * window / capacity) end
return {ok, math.floor(tokens), wait, 0}
`

// Adds one token (never above capacity) and returns the whole tokens left, so a refund and a
// concurrent take never lose an update.
const REFUND_LUA = REFILL_LUA + `
tokens = math.min(capacity, tokens + 1)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], window * 2)
return math.floor(tokens)
`

type BudgetCommand = (bucket: string, pause: string, capacity: number, windowMs: number) => Promise<[number, number, number, number]>
type RefundCommand = (bucket: string, capacity: number, windowMs: number) => Promise<number>

export function createRedisBudget (redis: Redis, prefix: string, rate: string): UpstreamBudget {
  const { capacity, windowMs } = parseRate(rate)
  if (!('agwBudgetTake' in redis)) redis.defineCommand('agwBudgetTake', { numberOfKeys: 2, lua: TAKE_LUA })
  const command = (redis as unknown as { agwBudgetTake: BudgetCommand }).agwBudgetTake.bind(redis)
  if (!('agwBudgetRefund' in redis)) redis.defineCommand('agwBudgetRefund', { numberOfKeys: 1, lua: REFUND_LUA })
  const refundCommand = (redis as unknown as { agwBudgetRefund: RefundCommand }).agwBudgetRefund.bind(redis)
  // One hash tag: the take script reads both keys, so on a Redis Cluster they must share a slot.
  const bucketKey = `${prefix}{budget}:${rate}`
  const pauseKey = `${prefix}{budget}:pause`
  async function run () {
    const [ok, remaining, waitMs, paused] = await command(bucketKey, pauseKey, capacity, windowMs)
    return { ok: ok === 1, remaining, waitMs, paused: paused === 1 }
  }
  return {
    async take () {
      const r = await run()
      if (r.ok) return { ok: true, remaining: r.remaining, retryAfterS: 0 }
      return { ok: false, remaining: r.remaining, retryAfterS: Math.max(1, Math.ceil(r.waitMs / 1000)), reason: r.paused ? 'paused' : 'budget' }
    },
    refund: () => refundCommand(bucketKey, capacity, windowMs),
    async pause (seconds) {
      // Never shorten a longer pause another replica already set.
      const current = await redis.pttl(pauseKey)
      if (current < seconds * 1000) await redis.set(pauseKey, '1', 'PX', Math.ceil(seconds * 1000))
    }
  }
}

/**
 * The fallback under LIMITS_ON_REDIS_ERROR=closed: while the shared budget cannot be asked, nothing is
 * spent (a local bucket per replica would let N replicas spend N budgets during a Redis failover).
 */
export function createRefusingBudget (): UpstreamBudget {
  return {
    take: async () => ({ ok: false, remaining: 0, retryAfterS: 1, reason: 'budget' }),
    refund: async () => 0,
    pause: async () => {}
  }
}

/**
 * A Redis budget that falls back to a local one when Redis fails or is being skipped after a failure
 * (the app's shared Redis health), so a Redis outage never stops upstream reads and never makes them
 * wait: each replica then spends from its own local bucket. Failures are counted and logged by the health.
 */
export function createResilientBudget (primary: UpstreamBudget, fallback: UpstreamBudget, guard: RedisGuard): UpstreamBudget {
  async function either<T> (fn: (b: UpstreamBudget) => Promise<T>): Promise<T> {
    const result = await guard.attempt(async () => fn(primary))
    return result.ok ? result.value : fn(fallback)
  }
  return {
    take: () => either((b) => b.take()),
    refund: () => either((b) => b.refund()),
    pause: async (seconds) => {
      await fallback.pause(seconds)
      await guard.run(async () => primary.pause(seconds), undefined)
    }
  }
}

/**
 * The budget as the upstream client uses it: a refused take throws GW_UPSTREAM_BUDGET (with the pause
 * or the wait as Retry-After), and every take and refund updates the gauges.
 */
export function createBudgetGate (budget: UpstreamBudget, metrics: Metrics, log: FastifyBaseLogger) {
  // Whole tokens left as the last take or refund saw them (Infinity until the first call).
  let lastRemaining = Infinity
  return {
    /**
     * The budget left as the last call saw it, without asking the store: what background work (refresh
     * ahead, prefetch) checks for headroom. Infinity before the first call.
     */
    get lastRemaining (): number { return lastRemaining },

    /** Takes a token for a call about to be sent; returns the whole tokens left. */
    async take (): Promise<number> {
      const take = await budget.take()
      lastRemaining = take.remaining
      metrics.upstreamBudgetRemaining.set(take.remaining)
      // The pause gauge shows the pause left; any answer that is not "paused" means there is none.
      metrics.upstreamPauseSeconds.set(take.reason === 'paused' ? take.retryAfterS : 0)
      if (!take.ok) throw budgetError(take.retryAfterS, take.reason)
      return take.remaining
    },

    /** Gives the token back for a call that never reached the upstream; a failure here only logs. */
    async refund (endpoint: string): Promise<void> {
      try {
        lastRemaining = await budget.refund()
        metrics.upstreamBudgetRemaining.set(lastRemaining)
        metrics.upstreamBudgetRefunds.inc()
      } catch (err) {
        log.warn({ endpoint, err: { message: (err as Error).message } }, 'upstream budget refund failed')
      }
    }
  }
}
