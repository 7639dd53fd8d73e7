// LIMITS_ON_REDIS_ERROR: what a limit check does when Redis fails (timeout, disconnect). `open` serves
// the request unchecked, logs and counts the error; `closed` refuses with 503 GW_UNAVAILABLE. The Redis
// client fails fast (commandTimeout, no offline queue), so either way no request waits longer than
// REDIS_COMMAND_TIMEOUT_MS per Redis call.
import type { FastifyBaseLogger } from 'fastify'
import { UnavailableError } from '../errors.js'
import type { Metrics } from '../plugins/metrics.js'

export interface RedisPolicyOptions {
  mode: 'open' | 'closed'
  /** Memory stores do not fail; their errors are bugs and propagate as such. */
  isRedis: boolean
  log: Pick<FastifyBaseLogger, 'warn'>
  metrics: Pick<Metrics, 'redisErrors'>
}

export type RedisPolicy = ReturnType<typeof createRedisPolicy>

export function createRedisPolicy (opts: RedisPolicyOptions) {
  return {
    mode: opts.mode,
    /** The result of `op`, or undefined when Redis failed under the open policy (skip the check). */
    async run<T> (check: string, op: () => Promise<T>): Promise<T | undefined> {
      if (!opts.isRedis) return await op()
      try {
        return await op()
      } catch (err) {
        opts.metrics.redisErrors.inc()
        opts.log.warn({ check, policy: opts.mode, error: (err as Error).message }, 'redis error during a limit check')
        if (opts.mode === 'closed') {
          throw new UnavailableError('Limits cannot be checked right now (Redis is unavailable); try again shortly.')
        }
        return undefined
      }
    }
  }
}
