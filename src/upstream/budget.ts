// The global upstream budget: a token bucket that every upstream call takes from before it is sent,
// so the gateway never provokes the upstream's 429 itself (one token has ~100 calls/hour across all
// endpoints, shared by every consumer). Also holds the pause after an upstream 429 (Retry-After).
// With Redis the bucket and the pause are shared by every replica (atomic Lua, the Redis clock).
import type { Redis } from 'ioredis'

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
    async pause (seconds) {
      pausedUntil = Math.max(pausedUntil, now() + seconds * 1000)
    }
  }
}

// KEYS[1] bucket hash, KEYS[2] pause key; ARGV capacity, window ms. Takes one token unless paused.
// Returns {ok, remaining, wait ms, paused}. TIME makes every replica use the Redis clock.
const TAKE_LUA = `
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or capacity
local ts = tonumber(data[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * capacity / window)
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

type BudgetCommand = (bucket: string, pause: string, capacity: number, windowMs: number) => Promise<[number, number, number, number]>

export function createRedisBudget (redis: Redis, prefix: string, rate: string): UpstreamBudget {
  const { capacity, windowMs } = parseRate(rate)
  if (!('agwBudgetTake' in redis)) redis.defineCommand('agwBudgetTake', { numberOfKeys: 2, lua: TAKE_LUA })
  const command = (redis as unknown as { agwBudgetTake: BudgetCommand }).agwBudgetTake.bind(redis)
  const bucketKey = `${prefix}budget:${rate}`
  const pauseKey = `${prefix}budget:pause`
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
    async pause (seconds) {
      // Never shorten a longer pause another replica already set.
      const current = await redis.pttl(pauseKey)
      if (current < seconds * 1000) await redis.set(pauseKey, '1', 'PX', Math.ceil(seconds * 1000))
    }
  }
}

/**
 * A Redis budget that falls back to a local one when Redis fails, so a Redis outage never stops
 * upstream reads (each replica then spends from its own local bucket; logged by the caller).
 */
export function createResilientBudget (primary: UpstreamBudget, fallback: UpstreamBudget, onError: (err: unknown) => void): UpstreamBudget {
  async function guard<T> (fn: (b: UpstreamBudget) => Promise<T>): Promise<T> {
    try {
      return await fn(primary)
    } catch (err) {
      onError(err)
      return fn(fallback)
    }
  }
  return {
    take: () => guard((b) => b.take()),
    pause: async (seconds) => {
      await fallback.pause(seconds)
      await guard((b) => b.pause(seconds))
    }
  }
}
