// Decorates `app.quota`: the request rate (@fastify/rate-limit keyed by consumer id, with a store that
// counts on leases) and daily object units, both counted in the process on leases from Redis
// (quota/lease.ts: most requests make no Redis call, and replicas never let a consumer pass a limit
// together), and the upstream share, all behind LIMITS_ON_REDIS_ERROR
// and the app's shared Redis health: once Redis has failed, no check calls it until it answers again.
// Also the one limit by client address: anonymous logins through the compat path's auth-token/.
// HTTP concerns (headers, status codes, dialects) live in auth/plugin.ts.
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { QuotaExhaustedError, withRetryAfter } from '../errors.js'
import { parseRate, type Consumer } from '../consumers/schema.js'
import { DAY_SECONDS, createDailyUnits } from './budgets.js'
import { calendarLeaseStore, createLeasedCounter, createMemoryRateStore, createRedisRateStore, type LeasedCounter, type LimitCharge } from './lease.js'
import { createRedisPolicy } from './redis-policy.js'
import { createUpstreamShare } from './upstream-share.js'
import { createMemoryWindowStore, createRedisWindowStore, type Clock } from './window-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    quota: Quota
  }
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>
type StoreCallback = (err: Error | null, res?: { current: number, ttl: number }) => void

/**
 * A @fastify/rate-limit store that counts on leases (quota/lease.ts) instead of one Redis INCR per
 * request. A charge the shared Redis view skips (open policy) counts as nothing.
 */
function leasedRateStore (counter: LeasedCounter, skipped: Set<string>) {
  const answer = (key: string, charge: LimitCharge | undefined, max: number, timeWindow: number, cb: StoreCallback, isRead: boolean): void => {
    if (charge === undefined) {
      if (!isRead) skipped.add(key)
      return cb(null, { current: 0, ttl: timeWindow })
    }
    const current = isRead || charge.isAllowed ? charge.used : max + 1
    cb(null, { current, ttl: charge.resetSeconds * 1000 })
  }
  return class LeasedRateStore {
    incr (key: string, cb: StoreCallback, timeWindow: number, max: number): void {
      counter.charge(key, 1, max, timeWindow).then((c) => answer(key, c, max, timeWindow, cb, false), (err: Error) => cb(err))
    }

    read (key: string, cb: StoreCallback, timeWindow: number, max: number): void {
      counter.used(key, max, timeWindow).then((c) => answer(key, c, max, timeWindow, cb, true), (err: Error) => cb(err))
    }

    child (): this { return this }
  }
}

/**
 * The request-rate limiter: @fastify/rate-limit keyed by consumer id, in an encapsulated child so its
 * decorators and onRoute hook stay private (routes are limited by the auth hooks after authentication,
 * never by the plugin's per-route config).
 */
async function createLimiter (app: FastifyInstance, counter: LeasedCounter, prefix: string, skipped: Set<string>): Promise<Limiter> {
  let limiter: Limiter | undefined
  await app.register(async (scope) => {
    await scope.register(rateLimit, {
      global: false,
      keyGenerator: (request) => `${prefix}rate:${request.consumer?.id ?? 'anonymous'}`,
      max: (request) => request.consumer?.rate.max ?? 1,
      timeWindow: (request) => request.consumer?.rate.windowMs ?? 60_000,
      store: leasedRateStore(counter, skipped),
      skipOnError: false
    })
    limiter = scope.createRateLimit()
  })
  /* c8 ignore next -- the child plugin above always runs before register() resolves */
  if (limiter === undefined) throw new Error('rate limiter was not created')
  return limiter
}

export interface RateState {
  limit: number
  remaining: number
  windowSeconds: number
  resetSeconds: number
  isExceeded: boolean
}

export interface Usage {
  /** Requests counted in the current rate window; null when Redis could not be read (open policy). */
  requests_this_window: number | null
  units_today: number | null
  upstream_share_used: number | null
}

export interface QuotaPluginOptions {
  /** Tests only: the clock of the daily and hourly windows (memory, or passed to the Redis script). */
  now?: Clock
}

export type Quota = Awaited<ReturnType<typeof createQuota>>

const DAY_MS = DAY_SECONDS * 1000

/** Units leased per Redis call for a limit: 1 (exact across replicas) below LIMIT_LEASE_DIVISOR × 2. */
export function leaseBlock (limit: number, divisor: number, max: number): number {
  return Math.max(1, Math.min(max, Math.floor(limit / divisor)))
}

export async function createQuota (app: FastifyInstance, opts: QuotaPluginOptions = {}) {
  const { REDIS_KEY_PREFIX: prefix, LIMIT_LEASE_DIVISOR: divisor, LIMIT_LEASE_MAX: maxBlock } = app.config
  const store = app.redis === null ? createMemoryWindowStore(opts) : createRedisWindowStore(app.redis, opts)
  const units = createDailyUnits(store, prefix)
  const mode = app.config.LIMITS_ON_REDIS_ERROR === 'closed' ? 'closed' : 'open'
  const guard = app.redis === null ? undefined : app.redisHealth.guard('limits')
  const policy = createRedisPolicy({ mode, guard, log: app.log })
  const blockFor = (limit: number): number => leaseBlock(limit, divisor, maxBlock)
  const rateStore = app.redis === null ? createMemoryRateStore() : createRedisRateStore(app.redis)
  const rates = createLeasedCounter({
    store: rateStore,
    run: async (op) => await policy.run('rate', op),
    blockFor
  })
  // One unit at a time: exact across replicas, and no lease kept per address (addresses are unbounded;
  // leases of consumers are not). A login is rare and costs far more than its one Redis call.
  const logins = createLeasedCounter({
    store: rateStore,
    run: async (op) => await policy.run('auth_token_rate', op),
    blockFor: () => 1
  })
  const loginRate = parseRate(app.config.AUTH_TOKEN_RATE)
  const share = createUpstreamShare(store, prefix, {
    run: async (op) => await policy.run('upstream_share', op),
    blockFor,
    ...(opts.now === undefined ? {} : { now: opts.now })
  })
  const dailyUnits = createLeasedCounter({
    store: calendarLeaseStore(store),
    run: async (op) => await policy.run('daily_objects', op),
    blockFor,
    ...(opts.now === undefined ? {} : { now: opts.now })
  })
  const rateKey = (consumer: Consumer): string => `${prefix}rate:${consumer.id}`
  const unitsKey = units.keyOf
  // Keys whose last rate check the shared Redis view skipped (open policy): no RateLimit headers then.
  const skipped = new Set<string>()
  const limiter = await createLimiter(app, rates, prefix, skipped)

  // A reload that changes a consumer's limits: every replica gives back what it leased under the old
  // ones as its own reload succeeds, so that no replica's old lease makes the others refuse early
  // (by more than the block each may hold under the new limits).
  app.consumers.onReload(async () => {
    const consumers = app.consumers.list()
    const limitsOf = (entries: Array<[string, number, number]>) => {
      const byKey = new Map(entries.map(([key, limit, periodMs]) => [key, { limit, periodMs }]))
      return (key: string) => byKey.get(key)
    }
    await Promise.allSettled([
      rates.dropChanged(limitsOf(consumers.map((c) => [rateKey(c), c.rate.max, c.rate.windowMs]))),
      dailyUnits.dropChanged(limitsOf(consumers.map((c) => [unitsKey(c), c.daily_objects, DAY_MS]))),
      share.dropChanged(consumers)
    ])
  })

  // Unspent leases go back to Redis before its client closes (registered later, so closed earlier).
  app.addHook('onClose', async () => {
    await Promise.allSettled([rates.release(), dailyUnits.release(), share.release()])
  })

  return {
    /** Counts this request against its consumer's rate; undefined when skipped (open policy). */
    async checkRate (request: FastifyRequest): Promise<RateState | undefined> {
      const consumer = request.consumer
      /* c8 ignore next -- the auth hook sets the consumer before it checks the rate */
      if (consumer === null) return undefined
      const result = await limiter(request)
      if (skipped.delete(rateKey(consumer))) return undefined
      /* c8 ignore next -- no allowList is configured, so every result carries counts */
      if (result.isAllowed) return undefined
      return {
        limit: result.max,
        remaining: result.remaining,
        windowSeconds: Math.max(1, Math.ceil(result.timeWindow / 1000)),
        resetSeconds: Math.max(1, result.ttlInSeconds),
        isExceeded: result.isExceeded
      }
    },
    /**
     * Counts one anonymous auth-token/ request of a client address against AUTH_TOKEN_RATE; undefined
     * when skipped (open policy). Throws 503 GW_UNAVAILABLE when Redis fails under the closed policy.
     */
    async chargeLogin (address: string): Promise<LimitCharge | undefined> {
      return await logins.charge(`${prefix}auth-token-rate:${address}`, 1, loginRate.max, loginRate.windowMs)
    },
    /** Charges daily object units all or nothing; undefined when skipped (open policy). */
    async chargeUnits (_request: FastifyRequest, consumer: Consumer, count: number): Promise<LimitCharge | undefined> {
      return await dailyUnits.charge(unitsKey(consumer), count, consumer.daily_objects, DAY_MS)
    },
    /** Gives back daily units of a request the gateway answered with a 5xx (none after their day: `windowEnd`). */
    async refundUnits (consumer: Consumer, count: number, windowEnd?: number): Promise<void> {
      await dailyUnits.refund(unitsKey(consumer), count, consumer.daily_objects, DAY_MS, windowEnd)
    },
    /**
     * Takes one upstream call from the consumer's hourly share. The upstream scheduler calls it once per
     * upstream call a consumer's miss causes. Throws 429 GW_QUOTA_EXHAUSTED (with retryAfter) when the
     * share is spent, or 503 GW_UNAVAILABLE when Redis fails under the closed policy. Resolves with the
     * charge (its windowEnd for refundUpstreamShare) when a unit was taken, undefined when the shared
     * count was skipped (open policy): nothing to give back then.
     */
    async takeUpstreamShare (consumer: Consumer): Promise<LimitCharge | undefined> {
      const result = await share.take(consumer)
      if (result === undefined || result.isAllowed) return result
      app.metrics.limitRejections.inc({ consumer: consumer.id, kind: 'upstream_share' })
      throw withRetryAfter(new QuotaExhaustedError(
        `This key has caused its ${consumer.upstream_share} upstream calls this hour; cached data is still served. Retry after the hour resets.`
      ), result.resetSeconds)
    },
    /** Gives back one unit of the share for a call that was charged but never reached the upstream. */
    async refundUpstreamShare (consumer: Consumer, windowEnd?: number): Promise<void> {
      await share.refund(consumer, windowEnd)
    },
    /** Current usage for /v1/me; pass the request to include the rate window count. */
    async usage (consumer: Consumer, request?: FastifyRequest): Promise<Usage> {
      const rate = request === undefined ? undefined : await rates.used(rateKey(consumer), consumer.rate.max, consumer.rate.windowMs)
      const [today, shared] = await Promise.all([
        dailyUnits.used(unitsKey(consumer), consumer.daily_objects, DAY_MS),
        share.used(consumer)
      ])
      return {
        requests_this_window: rate === undefined ? null : rate.used,
        units_today: today?.used ?? null,
        upstream_share_used: shared ?? null
      }
    }
  }
}

export const quotaPlugin = fp(async (app, opts: QuotaPluginOptions) => {
  app.decorate('quota', await createQuota(app, opts))
}, { name: 'quota', fastify: '5.x', dependencies: ['metrics', 'redis', 'consumers'] })
