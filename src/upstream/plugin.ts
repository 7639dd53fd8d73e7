// Decorates `app.upstream`: the client (budget, token, retries), the object loader (id batching and
// single flight) and the resolved endpoint paths. Owns the undici Pool and closes it on shutdown.
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import type { RedisHealth } from '../lib/redis-health.js'
import type { Metrics } from '../plugins/metrics.js'
import { createMemoryBudget, createRedisBudget, createRefusingBudget, createResilientBudget, paceBurst, parseHeadroom, parseRate, type UpstreamBudget } from './budget.js'
import { createUpstreamClient, type UpstreamClient } from './client.js'
import { resolvePaths } from './endpoints.js'
import { createObjectLoader } from './object-loader.js'
import { createTokenManager } from './token.js'

declare module 'fastify' {
  interface FastifyInstance {
    upstream: ReturnType<typeof createUpstream>
  }
}

export interface UpstreamDeps {
  config: Config
  metrics: Metrics
  log: FastifyBaseLogger
  redis: Redis | null
  /** The app's shared Redis health: budget and token skip Redis while it is unavailable. */
  redisHealth: RedisHealth
  /** The in-memory budget's clock (tests: a simulated hour); the Redis budget uses the Redis server's. */
  now?: () => number
}

export function createUpstream ({ config, metrics, log, redis, redisHealth, now }: UpstreamDeps) {
  // The pace's burst is the background headroom: work that can wait leaves it to foreground misses.
  const rate = parseRate(config.UPSTREAM_RATE)
  const burst = paceBurst(rate.capacity, parseHeadroom(config.UPSTREAM_RATE, config.UPSTREAM_BACKGROUND_HEADROOM))
  const local = createMemoryBudget(config.UPSTREAM_RATE, now, burst)
  const budget: UpstreamBudget = redis === null
    ? local
    : createResilientBudget(createRedisBudget(redis, config.REDIS_KEY_PREFIX, config.UPSTREAM_RATE, burst), config.LIMITS_ON_REDIS_ERROR === 'closed' ? createRefusingBudget() : local, redisHealth.guard('budget'))
  // The token manager logs in through the client, and the client takes tokens from the manager.
  const tokens = createTokenManager({
    token: config.ATLAS_TOKEN,
    tokenFile: config.ATLAS_TOKEN_FILE,
    username: config.ATLAS_USERNAME,
    usernameFile: config.ATLAS_USERNAME_FILE,
    password: config.ATLAS_PASSWORD,
    passwordFile: config.ATLAS_PASSWORD_FILE,
    onUnreadable: (setting, file, err) => {
      log.warn({ setting, file, error: err.message }, `${setting} cannot be read: it counts as empty (${setting === 'ATLAS_TOKEN_FILE' ? 'no token: the login is used when credentials are set' : 'no login credentials'}) until it can`)
    }
  }, (u, p) => client.login(u, p), (result) => metrics.tokenRefreshes.inc({ result }), redis === null
    ? undefined
    : { redis, prefix: config.REDIS_KEY_PREFIX, guard: redisHealth.guard('token'), isClosed: config.LIMITS_ON_REDIS_ERROR === 'closed' },
  { baseMs: config.UPSTREAM_LOGIN_BACKOFF_MS, maxMs: config.UPSTREAM_LOGIN_BACKOFF_MAX_MS })
  const client: UpstreamClient = createUpstreamClient({
    baseUrl: config.ATLAS_BASE_URL,
    paths: resolvePaths(config.UPSTREAM_PATHS),
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    maxResponseBytes: config.UPSTREAM_MAX_RESPONSE_BYTES,
    retries: config.UPSTREAM_RETRIES,
    retryMinBudget: config.UPSTREAM_RETRY_MIN_BUDGET,
    connections: config.UPSTREAM_CONNECTIONS,
    poolWaitMs: config.UPSTREAM_POOL_WAIT_MS,
    breaker: { threshold: config.UPSTREAM_BREAKER_THRESHOLD, openMs: config.UPSTREAM_BREAKER_OPEN_MS, probeIntervalMs: config.UPSTREAM_BREAKER_PROBE_INTERVAL_MS },
    budget,
    maxWaitS: rate.windowMs / 1000,
    tokens,
    metrics,
    log
  })
  const objects = createObjectLoader({
    client,
    windowMs: config.UPSTREAM_BATCH_WINDOW_MS,
    maxWindowMs: config.UPSTREAM_BATCH_WINDOW_MAX_MS,
    tokenMs: rate.windowMs / rate.capacity,
    maxCalls: config.UPSTREAM_CONNECTIONS,
    maxIds: config.UPSTREAM_MAX_IDS_PER_CALL,
    metrics
  })
  return { client, objects, tokens, budget }
}

export const upstreamPlugin = fp<{ now?: () => number }>(async (app, opts) => {
  if (app.config.ATLAS_BASE_URL === '') throw new Error('ATLAS_BASE_URL is empty: the server starts the embedded sandbox; buildApp needs a base URL')
  const upstream = createUpstream({ config: app.config, metrics: app.metrics, log: app.log, redis: app.redis, redisHealth: app.redisHealth, ...(opts.now === undefined ? {} : { now: opts.now }) })
  app.decorate('upstream', upstream)
  await upstream.tokens.checkFiles()
  app.health.addCheck('upstream', async () => ({ ok: await upstream.client.ping() }))
  app.health.addCheck('token', async () => {
    const ok = await upstream.tokens.isUsable()
    return ok ? { ok } : { ok, detail: 'no usable upstream token' }
  })
  // What this replica last saw; neither check calls anything.
  app.health.addCheck('token_refresh', async () => {
    const s = upstream.tokens.refreshState()
    if (s.state !== 'ok') {
      return { ok: false, detail: `logins ${s.state === 'backoff' ? 'backing off' : 'failing'} (${s.reason ?? 'unknown'}) after ${s.failures} failure(s); next attempt in ${s.retryAfterS} s` }
    }
    // A token without login credentials is a deployment of its own (up), but nothing can refresh the
    // token: say so, or the operator learns it only when the token expires and every miss fails.
    if (!await upstream.tokens.hasCredentials()) {
      return { ok: true, detail: 'no login credentials (ATLAS_USERNAME and ATLAS_PASSWORD, or their _FILE settings): the token cannot be refreshed; when it expires an operator must replace it' }
    }
    return { ok: true }
  })
  app.health.addCheck('upstream_breaker', async () => {
    const state = upstream.client.breakerState
    return state === 'closed' ? { ok: true } : { ok: false, detail: `circuit ${state}: misses fail fast while the upstream fails` }
  })
  // By onClose the server has answered every request (the shutdown answers those still running at its
  // deadline), so a pending upstream call serves nobody: abandon it instead of waiting up to
  // UPSTREAM_TIMEOUT_MS. A shutdown past its deadline has done so already (server.ts), before the writes
  // it left running answered.
  app.addHook('onClose', async () => { await upstream.client.destroy() })
}, { name: 'upstream', fastify: '5.x', dependencies: ['health', 'metrics', 'redis'] })
