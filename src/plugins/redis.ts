// The one ioredis client, shared by cache, limits, budget and token (house style: clients have one
// owner). Configured to fail fast: a stalled Redis rejects commands after REDIS_COMMAND_TIMEOUT_MS and
// a disconnected one rejects at once, so no request ever waits on Redis longer than the timeout.
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { Config } from '../config.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** null when REDIS_URL is unset (memory mode). */
    redis: Redis | null
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
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000)
  })
}

export const redisPlugin = fp(async (app, opts: { client?: Redis }) => {
  const config = app.config
  if (opts.client === undefined && config.REDIS_URL === '') {
    app.decorate('redis', null)
    return
  }
  const client = opts.client ?? createRedis(config)
  const isOwned = opts.client === undefined
  client.on('error', (err: Error) => {
    app.log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'redis error')
    app.metrics.redisErrors.inc()
  })
  if (isOwned) await client.connect()
  app.decorate('redis', client)
  app.readiness.add('redis', async () => {
    await client.ping()
    return { ok: true }
  })
  app.addHook('onClose', async () => {
    if (isOwned) await client.quit().catch(() => client.disconnect())
  })
}, { name: 'redis', fastify: '5.x', dependencies: ['health', 'metrics'] })
