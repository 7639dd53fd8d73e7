// Decorates `app.cache`: L1 in memory when CACHE_MAX_BYTES > 0, L2 on the shared Redis client when there
// is one, and the cross-replica fill lock with it. Store, lock and pub/sub consult the app's shared
// Redis health (plugins/redis.ts): after a Redis failure anywhere they skip Redis until it answers
// again, so reads go on from L1 and the upstream without waiting.
import fp from 'fastify-plugin'
import { createCache, type Cache } from './cache.js'
import { parseFreshness } from './freshness.js'
import { createInvalidationBus, type InvalidationBus } from './invalidation-bus.js'
import { createMemoryStore } from './memory-store.js'
import { createRedisStore } from './redis-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    cache: Cache
  }
}

export interface CachePluginOptions {
  /** The cache's clock (freshness, ages, L1 expiry); tests inject one through buildApp's deps.now. */
  now?: () => number
}

export const cachePlugin = fp<CachePluginOptions>(async (app, opts) => {
  const config = app.config
  // Fails boot, naming the route and field, when CACHE_FRESHNESS is malformed.
  const freshness = parseFreshness(config.CACHE_FRESHNESS)
  const l1 = config.CACHE_MAX_BYTES > 0 ? createMemoryStore({ maxBytes: config.CACHE_MAX_BYTES, ...(opts.now === undefined ? {} : { now: opts.now }) }) : undefined
  const redis = app.redis
  const l2 = redis === null ? undefined : createRedisStore({ redis, prefix: config.REDIS_KEY_PREFIX, guard: app.redisHealth.guard('cache') })
  let bus: InvalidationBus | undefined
  if (redis !== null && l1 !== undefined) {
    // A subscribed connection can run no other command, hence a second one, owned (and closed) here.
    const subscriber = redis.duplicate()
    subscriber.on('error', (err: Error) => {
      app.metrics.redisErrors.inc()
      app.log.warn({ err: { message: err.message } }, 'cache: invalidation subscriber error')
    })
    app.addHook('onClose', async () => { await subscriber.quit().catch(() => subscriber.disconnect()) })
    try {
      // A duplicate of a lazyConnect client waits for connect(); one of an eager client is already connecting.
      if (subscriber.status === 'wait') await subscriber.connect()
    } catch (err) {
      app.metrics.redisErrors.inc()
      app.log.warn({ err }, 'cache: invalidation subscriber not connected; other replicas may serve invalidated entries until they go stale')
    }
    bus = createInvalidationBus({ publisher: redis, subscriber, prefix: config.REDIS_KEY_PREFIX, guard: app.redisHealth.guard('pubsub') })
    await bus.ready
  }
  if (redis !== null && config.CACHE_FILL_WAIT_MS < config.UPSTREAM_TIMEOUT_MS) {
    app.log.warn({ CACHE_FILL_WAIT_MS: config.CACHE_FILL_WAIT_MS, UPSTREAM_TIMEOUT_MS: config.UPSTREAM_TIMEOUT_MS },
      'cache: CACHE_FILL_WAIT_MS is below UPSTREAM_TIMEOUT_MS; a replica waiting for another replica\'s slow upstream call will make the same call itself')
  }
  const cache = createCache({
    freshness,
    ...(opts.now === undefined ? {} : { now: opts.now }),
    ...(l1 === undefined ? {} : { l1 }),
    ...(l2 === undefined ? {} : { l2 }),
    ...(redis === null ? {} : { lock: { redis, prefix: config.REDIS_KEY_PREFIX, guard: app.redisHealth.guard('lock'), waitMs: config.CACHE_FILL_WAIT_MS } }),
    ...(bus === undefined ? {} : { bus }),
    onResult: (status, route) => { app.metrics.cacheResults.inc({ route, result: status.toLowerCase() }) },
    onCoalesced: (kind) => { app.metrics.coalesced.inc({ kind }) },
    onRefreshError: (err, key) => { app.log.warn({ err, key }, 'cache: background refresh failed; stale entry kept') },
    onUnsentInvalidation: (event, tags) => {
      if (event === 'kept') app.log.warn({ tags }, 'cache: an invalidation did not reach Redis; other replicas keep the old entries until it is sent again')
      else if (event === 'sent') app.log.info({ tags }, 'cache: invalidations sent to Redis after all')
      else app.log.error({ tags }, 'cache: invalidations dropped unsent; other replicas keep the old entries until they go stale')
    }
  })
  app.decorate('cache', cache)
  // Before Redis closes (this plugin's onClose runs before the redis plugin's): answers did not wait
  // for their records' L2 writes, and invalidations Redis has not taken get a last try.
  app.addHook('onClose', async () => { await cache.close() })
}, { name: 'cache', fastify: '5.x', dependencies: ['metrics', 'redis'] })
