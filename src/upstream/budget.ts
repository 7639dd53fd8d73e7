// The global upstream budget: a token bucket that every upstream call takes from before it is sent,
// so the gateway never provokes the upstream's 429 itself (one token has ~100 calls/hour across all
// endpoints, shared by every consumer). Also holds the pause after an upstream 429 (Retry-After).
// With Redis the bucket and the pause are shared by every replica (atomic Lua, the Redis clock).
//
// Beside the bucket, the same take keeps the pace: a second, smaller bucket (GCRA-like) of `burst`
// tokens refilled at (capacity - burst) per window, from which every call takes one, never refused (it
// may go negative, down to -capacity). The bucket starts full, so on its own it lets a first hour spend
// up to twice the rate; work that can wait (background refreshes, prefetch, loads of entries that a stale
// answer could serve) runs only while the pace is at 1 or above, which keeps what the gateway spends in
// any rolling window within the rate: at most burst + (capacity - burst) calls start while it allows,
// and only misses nothing cached can answer go beyond (service/priorities.ts).
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Metrics } from '../plugins/metrics.js'
import { budgetError } from './error-map.js'
import type { RedisGuard } from '../lib/redis-health.js'

export interface BudgetTake {
  ok: boolean
  /** Whole tokens left after this take (ok) or now (refused). */
  remaining: number
  /**
   * When refused: seconds until a take can succeed, the later of the pause's end and a token in the
   * bucket (a pause often comes with the bucket spent: its end alone would only bring another refusal).
   */
  retryAfterS: number
  reason?: 'budget' | 'paused'
  /** When paused: seconds the pause has left. */
  pauseS?: number
  /** The pace after this take (ok) or now (refused): may be fractional or negative; see above. */
  pace: number
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

/**
 * The headroom in whole tokens: a count (`20`) or a share of the bucket's capacity (`20%`, rounded up),
 * never above the capacity (UPSTREAM_BACKGROUND_HEADROOM; also the pace's burst). One at or above the
 * capacity fails at boot (config.ts): background work would never run.
 */
export function parseHeadroom (rate: string, headroom: string): number {
  const { capacity } = parseRate(rate)
  return Math.min(capacity, headroomTokens(capacity, headroom))
}

/** UPSTREAM_BACKGROUND_HEADROOM in whole tokens of a bucket of `capacity`, as set (not capped). */
export function headroomTokens (capacity: number, headroom: string): number {
  const text = headroom.trim()
  return text.endsWith('%') ? Math.ceil(capacity * Number(text.slice(0, -1)) / 100) : Number(text)
}

/** The pace's burst for a headroom: at least one token, so that work that can wait ever runs. */
export function paceBurst (capacity: number, headroom: number): number {
  return Math.min(capacity, Math.max(1, headroom))
}

// The most a rate may count per period. The Redis scripts compute tokens in doubles and reply whole
// tokens as 64-bit integers: far below 2^53 the refill's fractions stay exact, and a reply never wraps
// (99999999999999999999999/second came back as -9223372036854778000 tokens left, a spent budget).
export const MAX_RATE_COUNT = 1_000_000_000

/** Parses `100/hour` into a capacity and a refill window; loadConfig checks UPSTREAM_RATE and AUTH_TOKEN_RATE with it. */
export function parseRate (rate: string): { capacity: number, windowMs: number } {
  const [count, unit] = rate.split('/')
  const windowMs = WINDOWS_MS[unit ?? '']
  const capacity = Number(count)
  if (windowMs === undefined || !Number.isInteger(capacity) || capacity < 1) throw new Error(`bad rate "${rate}"`)
  if (capacity > MAX_RATE_COUNT) throw new Error(`rate "${rate}" must count at most ${MAX_RATE_COUNT} per period`)
  return { capacity, windowMs }
}

// The memory budget's default clock: monotonic, so that no step of the wall clock (NTP, VM resume) refills
// the bucket or ends a pause; a step back then forward (a wrong step corrected) read on the wall clock as
// that much time elapsed. Its readings are compared with each other only.
const monotonicNow = (): number => performance.now()

/**
 * `burst`: the pace's capacity (default a fifth of the bucket's); see the top of this file. `now`: its
 * clock, monotonic unless injected (tests).
 */
export function createMemoryBudget (rate: string, now: () => number = monotonicNow, burst?: number): UpstreamBudget {
  const { capacity, windowMs } = parseRate(rate)
  const paceCapacity = burst ?? paceBurst(capacity, Math.ceil(capacity / 5))
  let tokens = capacity
  let pace = paceCapacity
  let updatedAt = now()
  let pausedUntil = 0
  function refill (): void {
    const t = now()
    // A wall clock stepping back (NTP step, VM resume) refills nothing and drains nothing, as in the
    // Redis script: the time since counts from the new reading.
    const elapsed = Math.max(0, t - updatedAt)
    // The pause's end moves back with it: it keeps the length the upstream asked for, as the Redis
    // pause key's PTTL does. Held at its wall-clock end, it lasted as long again as the step.
    if (t < updatedAt && pausedUntil > 0) pausedUntil -= updatedAt - t
    tokens = Math.min(capacity, tokens + elapsed * capacity / windowMs)
    pace = Math.min(paceCapacity, pace + elapsed * (capacity - paceCapacity) / windowMs)
    updatedAt = t
  }
  const tokenWaitS = (): number => tokens >= 1 ? 0 : Math.ceil((1 - tokens) * windowMs / capacity / 1000)
  return {
    async take () {
      refill()
      const pausedMs = pausedUntil - updatedAt
      if (pausedMs > 0) {
        const pauseS = Math.ceil(pausedMs / 1000)
        return { ok: false, remaining: Math.floor(tokens), retryAfterS: Math.max(pauseS, tokenWaitS()), reason: 'paused', pauseS, pace }
      }
      if (tokens >= 1) {
        tokens -= 1
        pace = Math.max(-capacity, pace - 1)
        return { ok: true, remaining: Math.floor(tokens), retryAfterS: 0, pace }
      }
      return { ok: false, remaining: 0, retryAfterS: tokenWaitS(), reason: 'budget', pace }
    },
    async refund () {
      refill()
      tokens = Math.min(capacity, tokens + 1)
      pace = Math.min(paceCapacity, pace + 1)
      return Math.floor(tokens)
    },
    async pause (seconds) {
      // Read the clock through refill: a step back since the last reading moves the current pause first.
      refill()
      pausedUntil = Math.max(pausedUntil, updatedAt + seconds * 1000)
    }
  }
}

// KEYS[1] bucket hash; ARGV capacity, window ms, pace burst (the calling replica's). The bucket's tokens
// now: what was left, refilled for the time since, never above capacity; the pace likewise (in the same
// hash, so no new key). Replicas on different rates (a rolling update that changes UPSTREAM_RATE) share
// the one hash, each refilling and capping it at its own rate: what one on a higher rate left above a
// lower capacity is cut to that capacity by the next take of a replica on the lower one.
// TIME makes every replica use the Redis clock.
const REFILL_LUA = `
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'pace')
local tokens = tonumber(data[1]) or capacity
local ts = tonumber(data[2]) or now
local pace = tonumber(data[3]) or burst
tokens = math.min(capacity, tokens + math.max(0, now - ts) * capacity / window)
pace = math.min(burst, pace + math.max(0, now - ts) * (capacity - burst) / window)
`

// KEYS[2] pause key. Takes one token unless paused. Returns {ok, remaining, wait ms, paused, pace,
// pause ms} (the pace as text: Lua numbers become integers in a reply); while paused the wait is the
// later of the pause's end and a token in the bucket.
const TAKE_LUA = REFILL_LUA + `
local pause = redis.call('PTTL', KEYS[2])
local function token_wait () if tokens >= 1 then return 0 end return math.ceil((1 - tokens) * window / capacity) end
if pause > 0 then return {0, math.floor(tokens), math.max(pause, token_wait()), 1, tostring(pace), pause} end
local ok = 0
if tokens >= 1 then tokens = tokens - 1; pace = math.max(-capacity, pace - 1); ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now, 'pace', tostring(pace))
redis.call('PEXPIRE', KEYS[1], window * 2)
local wait = 0
if ok == 0 then wait = token_wait() end
return {ok, math.floor(tokens), wait, 0, tostring(pace), 0}
`

// Adds one token (never above capacity) and one to the pace, and returns the whole tokens left, so a
// refund and a concurrent take never lose an update.
const REFUND_LUA = REFILL_LUA + `
tokens = math.min(capacity, tokens + 1)
pace = math.min(burst, pace + 1)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now, 'pace', tostring(pace))
redis.call('PEXPIRE', KEYS[1], window * 2)
return math.floor(tokens)
`

// A pause of ARGV[1] ms, unless a longer one is already set: read and set in one step, so two replicas
// pausing at once keep the longer of their pauses.
const PAUSE_LUA = `
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return 0
`

type BudgetCommand = (bucket: string, pause: string, capacity: number, windowMs: number, burst: number) => Promise<[number, number, number, number, string, number]>
type RefundCommand = (bucket: string, capacity: number, windowMs: number, burst: number) => Promise<number>

/** `burst`: the pace's capacity (default a fifth of the bucket's); see the top of this file. */
export function createRedisBudget (redis: Redis, prefix: string, rate: string, burst?: number): UpstreamBudget {
  const { capacity, windowMs } = parseRate(rate)
  const paceCapacity = burst ?? paceBurst(capacity, Math.ceil(capacity / 5))
  if (!('agwBudgetTake' in redis)) redis.defineCommand('agwBudgetTake', { numberOfKeys: 2, lua: TAKE_LUA })
  const command = (redis as unknown as { agwBudgetTake: BudgetCommand }).agwBudgetTake.bind(redis)
  if (!('agwBudgetRefund' in redis)) redis.defineCommand('agwBudgetRefund', { numberOfKeys: 1, lua: REFUND_LUA })
  const refundCommand = (redis as unknown as { agwBudgetRefund: RefundCommand }).agwBudgetRefund.bind(redis)
  if (!('agwBudgetPause' in redis)) redis.defineCommand('agwBudgetPause', { numberOfKeys: 1, lua: PAUSE_LUA })
  const pauseCommand = (redis as unknown as { agwBudgetPause: (key: string, ms: number) => Promise<number> }).agwBudgetPause.bind(redis)
  // One hash tag: the take script reads both keys, so on a Redis Cluster they must share a slot. The
  // bucket's key names no rate: replicas on an old and a new UPSTREAM_RATE (a rolling update) draw from
  // one count. Until 2026-12-02 it was `{budget}:<rate>`, so those replicas each had a full bucket (10/hour
  // and 9/hour: 19 calls in the hour); such keys are no longer read and expire after two windows.
  const bucketKey = `${prefix}{budget}:bucket`
  const pauseKey = `${prefix}{budget}:pause`
  async function run () {
    const [ok, remaining, waitMs, paused, pace, pauseMs] = await command(bucketKey, pauseKey, capacity, windowMs, paceCapacity)
    return { ok: ok === 1, remaining, waitMs, paused: paused === 1, pace: Number(pace), pauseMs }
  }
  return {
    async take () {
      const r = await run()
      if (r.ok) return { ok: true, remaining: r.remaining, retryAfterS: 0, pace: r.pace }
      const retryAfterS = Math.max(1, Math.ceil(r.waitMs / 1000))
      if (!r.paused) return { ok: false, remaining: r.remaining, retryAfterS, reason: 'budget', pace: r.pace }
      return { ok: false, remaining: r.remaining, retryAfterS, reason: 'paused', pauseS: Math.max(1, Math.ceil(r.pauseMs / 1000)), pace: r.pace }
    },
    refund: () => refundCommand(bucketKey, capacity, windowMs, paceCapacity),
    async pause (seconds) {
      // Never shorten a longer pause another replica already set.
      await pauseCommand(pauseKey, Math.ceil(seconds * 1000))
    }
  }
}

/**
 * The fallback under LIMITS_ON_REDIS_ERROR=closed: while the shared budget cannot be asked, nothing is
 * spent (a local bucket per replica would let N replicas spend N budgets during a Redis failover).
 */
export function createRefusingBudget (): UpstreamBudget {
  return {
    take: async () => ({ ok: false, remaining: 0, retryAfterS: 1, reason: 'budget', pace: 0 }),
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
  // Whole tokens left and the pace as the last take or refund saw them (Infinity until the first call),
  // and how many figures there have been (a reader notes when a new one arrives).
  let lastRemaining = Infinity
  let lastPace = Infinity
  let seen = 0
  let takes = 0
  return {
    /**
     * The budget left as the last call saw it, without asking the store: what background work (refresh
     * ahead, prefetch) checks for headroom. Infinity before the first call.
     */
    get lastRemaining (): number { return lastRemaining },

    /** The pace as the last call saw it (Infinity before the first call). */
    get lastPace (): number { return lastPace },

    /** A count of the figures seen: it changes with every take and refund. */
    get seen (): number { return seen },

    /** Tokens this replica has taken and kept so far (calls sent or about to be; refunds give back). */
    get takes (): number { return takes },

    /** Takes a token for a call about to be sent; returns the whole tokens left. */
    async take (): Promise<number> {
      const take = await budget.take()
      seen++
      lastRemaining = take.remaining
      lastPace = take.pace
      if (take.ok) takes++
      metrics.upstreamBudgetRemaining.set(take.remaining)
      // The pause gauge shows the pause left; any answer that is not "paused" means there is none.
      metrics.upstreamPauseSeconds.set(take.reason === 'paused' ? take.pauseS ?? take.retryAfterS : 0)
      if (!take.ok) throw budgetError(take.retryAfterS, take.reason)
      return take.remaining
    },

    /** Gives the token back for a call that never reached the upstream; a failure here only logs. */
    async refund (endpoint: string): Promise<void> {
      try {
        lastRemaining = await budget.refund()
        if (Number.isFinite(lastPace)) lastPace += 1
        takes = Math.max(0, takes - 1)
        seen++
        metrics.upstreamBudgetRemaining.set(lastRemaining)
        metrics.upstreamBudgetRefunds.inc()
      } catch (err) {
        log.warn({ endpoint, err: { message: (err as Error).message } }, 'upstream budget refund failed')
      }
    }
  }
}
