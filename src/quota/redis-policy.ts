// LIMITS_ON_REDIS_ERROR: what a limit check does when Redis fails (timeout, disconnect) or is being
// skipped after a failure (the app's shared Redis health, lib/redis-health.ts). `open` serves the
// request unchecked; `closed` refuses with 503 GW_UNAVAILABLE. While Redis is skipped the check is not
// attempted at all (the Lua counters are never called; leases already held are still spent), so either
// policy answers at once; only the call that meets the failure waits, for at most one command timeout.
import type { FastifyBaseLogger } from 'fastify'
import { UnavailableError, withRetryAfter } from '../errors.js'
import type { RedisGuard } from '../lib/redis-health.js'

export interface RedisPolicyOptions {
  mode: 'open' | 'closed'
  /** Absent in memory mode: memory stores do not fail, and their errors are bugs that propagate as such. */
  guard: RedisGuard | undefined
  log: Pick<FastifyBaseLogger, 'warn'>
}

export type RedisPolicy = ReturnType<typeof createRedisPolicy>

export function createRedisPolicy (opts: RedisPolicyOptions) {
  const { guard } = opts
  return {
    mode: opts.mode,
    /** The result of `op`, or undefined when Redis failed or is skipped under the open policy (skip the check). */
    async run<T> (check: string, op: () => Promise<T>): Promise<T | undefined> {
      if (guard === undefined) return await op()
      const result = await guard.attempt(op)
      if (result.ok) return result.value
      // Failures are counted by the health; a skipped call (err undefined) is counted there as a skip.
      if (result.err !== undefined) {
        opts.log.warn({ check, policy: opts.mode, error: (result.err as Error).message }, 'redis error during a limit check')
      }
      if (opts.mode === 'closed') {
        // Retry-After 1: the Redis health probes every second (lib/redis-health.ts).
        throw withRetryAfter(new UnavailableError('Limits cannot be checked right now (Redis is unavailable); try again shortly.'), 1)
      }
      return undefined
    }
  }
}
