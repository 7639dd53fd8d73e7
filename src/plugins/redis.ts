// The one ioredis client, shared by cache, limits, budget and token (house style: clients have one
// owner), and the one view of its health every Redis user consults (lib/redis-health.ts). Configured
// to fail fast: a stalled Redis rejects commands after REDIS_COMMAND_TIMEOUT_MS and a disconnected one
// rejects at once; after the first failure every user skips Redis until a background PING answers, so
// a request waits for at most one command timeout in total.
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { Config } from '../config.js'
import { createRedisHealth, DEFAULT_REDIS_COOLDOWN_MS, type RedisHealth } from '../lib/redis-health.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** null when REDIS_URL is unset (memory mode). */
    redis: Redis | null
    /** Always present; without Redis it stays up and nothing consults it. */
    redisHealth: RedisHealth
  }
}

const DEFAULT_CONNECT_TIMEOUT_MS = 2000

export function createRedis (config: Pick<Config, 'REDIS_URL' | 'REDIS_COMMAND_TIMEOUT_MS'>): Redis {
  return new Redis(config.REDIS_URL, {
    lazyConnect: true,
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1,
    // Without an offline queue, commands issued while disconnected fail immediately instead of piling up.
    enableOfflineQueue: false,
    // Commands issued in the same tick (the many small reads and writes of concurrent requests) go out
    // as one pipeline: one write and one read on the socket instead of one per command.
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000)
  })
}

const errorFields = (err: unknown) => ({ message: (err as Error).message, code: (err as NodeJS.ErrnoException).code })

export const redisPlugin = fp(async (app, opts: { client?: Redis }) => {
  const config = app.config
  if (opts.client === undefined && config.REDIS_URL === '') {
    app.decorate('redis', null)
    app.decorate('redisHealth', createRedisHealth())
    return
  }
  const client = opts.client ?? createRedis(config)
  const isOwned = opts.client === undefined
  const { metrics } = app
  const health = createRedisHealth({
    timeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    cooldownMs: DEFAULT_REDIS_COOLDOWN_MS,
    probe: async () => client.ping(),
    onFailure: (err, user) => {
      metrics.redisErrors.inc()
      // Transitions are logged at warn (below); repeats during an outage only at debug.
      app.log.debug({ err: errorFields(err), user }, 'redis call failed')
    },
    onSkip: (user) => { metrics.redisSkipped.inc({ user }) },
    onStateChange: (state, err, user) => {
      metrics.redisAvailable.set(state === 'up' ? 1 : 0)
      if (state === 'down') {
        app.log.warn({ err: errorFields(err), user, cooldown_ms: DEFAULT_REDIS_COOLDOWN_MS }, 'redis unavailable: skipping it until a probe answers (limits follow LIMITS_ON_REDIS_ERROR)')
      } else {
        app.log.info('redis answers again: cache, limits, token and budget use it again')
      }
    }
  })
  metrics.redisAvailable.set(1)
  client.on('error', (err: Error) => { health.report(err, 'connection') })
  // A (re)connection that passed ioredis' ready check: Redis answers.
  client.on('ready', () => { health.reportSuccess() })
  if (isOwned) await client.connect()
  app.decorate('redis', client)
  app.decorate('redisHealth', health)
  app.health.addCheck('redis', async () => {
    try {
      await client.ping()
    } catch (err) {
      health.report(err, 'health-check')
      throw err
    }
    health.reportSuccess()
    return { ok: true }
  })
  app.addHook('onClose', async () => {
    health.close()
    if (isOwned) await client.quit().catch(() => client.disconnect())
  })
}, { name: 'redis', fastify: '5.x', dependencies: ['health', 'metrics'] })
