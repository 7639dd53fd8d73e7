// The one ioredis client, shared by cache, limits, budget and token (house style: clients have one
// owner), and the one view of its health every Redis user consults (lib/redis-health.ts). Configured
// to fail fast: a stalled Redis rejects commands after REDIS_COMMAND_TIMEOUT_MS and a disconnected one
// rejects at once; after the first failure every user skips Redis until a background PING answers, so
// a request waits for at most one command timeout in total.
import fp from 'fastify-plugin'
import { Cluster, Redis } from 'ioredis'
import type { Config } from '../config.js'
import { parseRedisUrl, redactRedisUrl } from '../lib/redis-url.js'
import { createRedisHealth, DEFAULT_REDIS_COOLDOWN_MS, type RedisHealth } from '../lib/redis-health.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** null when REDIS_URL is unset (memory mode). */
    redis: Redis | null
    /** Always present; without Redis it stays up and nothing consults it. */
    redisHealth: RedisHealth
    /**
     * Runs `task` when the app closes, after the onClose hooks of every plugin registered after this one
     * (the upstream's among them, whose abandoned calls still end requests) and before the client quits;
     * also without Redis. For work that must see everything the closing app still does (usage's final flush).
     */
    beforeRedisQuit: (task: () => Promise<void>) => void
  }
}

const DEFAULT_CONNECT_TIMEOUT_MS = 2000
// How long a cluster client waits before retrying a command that met a failover (MOVED to a node that is
// gone, CLUSTERDOWN): about the time a replica needs to be promoted, in a few steps.
const CLUSTER_RETRY_DELAY_MS = 200

const retryStrategy = (attempt: number): number => Math.min(attempt * 100, 2000)

/**
 * The client for REDIS_URL's form (lib/redis-url.ts): one server, a Sentinel-managed master, or a
 * Cluster. A Cluster client is returned as the `Redis` type: the gateway uses only the command surface
 * both share (single-slot scripts, pipelines and MULTIs whose keys carry one hash tag, pub/sub), which
 * the cluster matrix (test/scale) runs every Redis suite through.
 */
export function createRedis (config: Pick<Config, 'REDIS_URL' | 'REDIS_COMMAND_TIMEOUT_MS'>): Redis {
  const common = {
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 1
  }
  const fast = {
    lazyConnect: true,
    // Without an offline queue, commands issued while disconnected fail immediately instead of piling up.
    enableOfflineQueue: false,
    // Commands issued in the same tick (the many small reads and writes of concurrent requests) go out
    // as one pipeline: one write and one read on the socket instead of one per command.
    enableAutoPipelining: true
  }
  const target = parseRedisUrl(config.REDIS_URL)
  if (target.kind === 'single') return new Redis(config.REDIS_URL, { ...common, ...fast, retryStrategy })
  const auth = {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password })
  }
  if (target.kind === 'sentinel') {
    return new Redis({
      ...common,
      ...fast,
      ...auth,
      retryStrategy,
      sentinels: target.sentinels,
      name: target.name,
      db: target.db,
      ...(target.sentinelUsername === undefined ? {} : { sentinelUsername: target.sentinelUsername }),
      ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword }),
      ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      sentinelCommandTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
      // No failoverDetector: its Sentinel connections outlive quit() and log outside the logger; a
      // promotion closes the old master's client connections anyway, and the reconnect asks a Sentinel.
      sentinelRetryStrategy: retryStrategy
    })
  }
  const cluster = new Cluster(target.nodes, {
    ...fast,
    redisOptions: { ...common, ...auth, ...(target.tls ? { tls: {} } : {}) },
    clusterRetryStrategy: retryStrategy,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    slotsRefreshTimeout: DEFAULT_CONNECT_TIMEOUT_MS,
    // TLS certificates name the hosts in the URL; without this ioredis would connect to resolved addresses.
    ...(target.tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => { callback(null, address) } } : {})
  })
  return cluster as unknown as Redis
}

const errorFields = (err: unknown) => ({ message: (err as Error).message, code: (err as NodeJS.ErrnoException).code })

export const redisPlugin = fp(async (app, opts: { client?: Redis }) => {
  const config = app.config
  const lastTasks: Array<() => Promise<void>> = []
  app.decorate('beforeRedisQuit', (task: () => Promise<void>) => { lastTasks.push(task) })
  // Each task logs its own failures; one that throws does not keep the others or the quit from running.
  const runLastTasks = async () => { await Promise.allSettled(lastTasks.map(async (task) => { await task() })) }
  if (opts.client === undefined && config.REDIS_URL === '') {
    app.decorate('redis', null)
    app.decorate('redisHealth', createRedisHealth())
    app.addHook('onClose', runLastTasks)
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
  if (isOwned) {
    app.log.info({ redis: redactRedisUrl(config.REDIS_URL), form: parseRedisUrl(config.REDIS_URL).kind }, 'redis: connecting')
    // A replica that starts while Redis is down serves as one whose Redis went down does (skipping it,
    // see Operating through failures) instead of failing to start: a restart or a scale-out during an
    // outage would otherwise crash-loop. ioredis keeps reconnecting; its ready event brings Redis back.
    await client.connect().catch((err: unknown) => {
      health.report(err, 'connection')
      app.log.warn({ err: errorFields(err) }, 'redis: not reachable at start; serving without it until it answers')
    })
  }
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
    await runLastTasks()
    health.close()
    if (isOwned) await client.quit().catch(() => client.disconnect())
  })
}, { name: 'redis', fastify: '5.x', dependencies: ['health', 'metrics'] })
