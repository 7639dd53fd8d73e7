// Decorates `app.quota`: the request rate (@fastify/rate-limit, keyed by consumer id, on the shared
// ioredis client), daily object units and the upstream share, all behind LIMITS_ON_REDIS_ERROR and the
// app's shared Redis health: once Redis has failed, no check calls it until it answers again.
// HTTP concerns (headers, status codes, dialects) live in plugins/consumer-auth.ts.
import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { QuotaExhaustedError, withRetryAfter } from '../errors.js'
import type { Consumer } from '../consumers/schema.js'
import { createDailyUnits } from './budgets.js'
import { createRedisPolicy } from './redis-policy.js'
import { createUpstreamShare } from './upstream-share.js'
import { createMemoryWindowStore, createRedisWindowStore, type Clock, type WindowCharge } from './window-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    quota: Quota
  }
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
type Limiter = ReturnType<FastifyInstance['createRateLimit']>

const ANONYMOUS = 'anonymous'
const DEFAULT_RATE_MAX = 60
const DEFAULT_RATE_WINDOW_MS = 60000

async function createLimiter (app: FastifyInstance): Promise<Limiter> {
  let limiter: Limiter | undefined
  // Registered in an encapsulated child so its decorators and onRoute hook stay private: routes are
  // limited by consumer-auth's hooks (after authentication), never by the plugin's per-route config.
  await app.register(async (scope) => {
    await scope.register(rateLimit, {
      global: false,
      keyGenerator: (request) => request.consumer?.id ?? ANONYMOUS,
      max: (request) => request.consumer?.rate.max ?? DEFAULT_RATE_MAX,
      timeWindow: (request) => request.consumer?.rate.windowMs ?? DEFAULT_RATE_WINDOW_MS,
      // Errors reach createRedisPolicy, which applies LIMITS_ON_REDIS_ERROR and counts them.
      skipOnError: false,
      ...(app.redis === null ? {} : { redis: app.redis, nameSpace: `${app.config.REDIS_KEY_PREFIX}rate:` })
    })
    limiter = scope.createRateLimit()
  })
  /* c8 ignore next -- the child plugin above always runs before register() resolves */
  if (limiter === undefined) throw new Error('rate limiter was not created')
  return limiter
}

export async function createQuota (app: FastifyInstance, opts: QuotaPluginOptions = {}) {
  const store = app.redis === null ? createMemoryWindowStore(opts) : createRedisWindowStore(app.redis, opts)
  const units = createDailyUnits(store, app.config.REDIS_KEY_PREFIX)
  const share = createUpstreamShare(store, app.config.REDIS_KEY_PREFIX)
  const mode = app.config.LIMITS_ON_REDIS_ERROR === 'closed' ? 'closed' : 'open'
  const guard = app.redis === null ? undefined : app.redisHealth.guard('limits')
  const policy = createRedisPolicy({ mode, guard, log: app.log })
  const limiter = await createLimiter(app)

  async function readRate (request: FastifyRequest, increment: boolean): Promise<RateState | undefined> {
    const result = await policy.run('rate', () => limiter(request, { increment }))
    if (result === undefined) return undefined
    /* c8 ignore next -- no allowList is configured, so every result carries counts */
    if (result.isAllowed) return undefined
    return {
      limit: result.max,
      remaining: result.remaining,
      windowSeconds: Math.max(1, Math.ceil(result.timeWindow / 1000)),
      resetSeconds: Math.max(1, result.ttlInSeconds),
      isExceeded: result.isExceeded
    }
  }

  return {
    /** Counts this request against its consumer's rate; undefined when skipped (open policy). */
    checkRate (request: FastifyRequest): Promise<RateState | undefined> {
      return readRate(request, true)
    },
    /** Charges daily object units all or nothing; undefined when skipped (open policy). */
    async chargeUnits (_request: FastifyRequest, consumer: Consumer, count: number): Promise<WindowCharge | undefined> {
      return await policy.run('daily_objects', () => units.charge(consumer, count))
    },
    /** Gives back daily units of a request the gateway answered with a 5xx. */
    async refundUnits (consumer: Consumer, count: number): Promise<void> {
      await policy.run('daily_objects', () => units.refund(consumer, count))
    },
    /**
     * Takes one upstream call from the consumer's hourly share. The upstream scheduler calls it once per
     * upstream call a consumer's miss causes. Throws 429 GW_QUOTA_EXHAUSTED (with retryAfter) when the
     * share is spent, or 503 GW_UNAVAILABLE when Redis fails under the closed policy.
     */
    async takeUpstreamShare (consumer: Consumer): Promise<void> {
      const result = await policy.run('upstream_share', () => share.take(consumer))
      if (result === undefined || result.isAllowed) return
      app.metrics.limitRejections.inc({ consumer: consumer.id, kind: 'upstream_share' })
      throw withRetryAfter(new QuotaExhaustedError(
        `This key has caused its ${consumer.upstream_share} upstream calls this hour; cached data is still served. Retry after the hour resets.`
      ), result.resetSeconds)
    },
    /** Gives back one unit of the share for a call that was charged but never reached the upstream. */
    async refundUpstreamShare (consumer: Consumer): Promise<void> {
      await policy.run('upstream_share', () => share.refund(consumer))
    },
    /** Current usage for /v1/me; pass the request to include the rate window count. */
    async usage (consumer: Consumer, request?: FastifyRequest): Promise<Usage> {
      const rate = request === undefined ? undefined : await readRate(request, false)
      const [today, shared] = await Promise.all([
        policy.run('usage', () => units.used(consumer)),
        policy.run('usage', () => share.used(consumer))
      ])
      return {
        requests_this_window: rate === undefined ? null : rate.limit - rate.remaining,
        units_today: today ?? null,
        upstream_share_used: shared ?? null
      }
    }
  }
}

export const quotaPlugin = fp(async (app, opts: QuotaPluginOptions) => {
  app.decorate('quota', await createQuota(app, opts))
}, { name: 'quota', fastify: '5.x', dependencies: ['metrics', 'redis'] })
