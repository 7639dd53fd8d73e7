// Decorates `app.upstream`: the client (budget, token, retries), the object loader (id batching and
// single flight) and the resolved endpoint paths. Owns the undici Pool and closes it on shutdown.
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import type { Metrics } from '../plugins/metrics.js'
import { createMemoryBudget, createRedisBudget, createResilientBudget, type UpstreamBudget } from './budget.js'
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
}

export function createUpstream ({ config, metrics, log, redis }: UpstreamDeps) {
  const local = createMemoryBudget(config.UPSTREAM_RATE)
  const budget: UpstreamBudget = redis === null
    ? local
    : createResilientBudget(createRedisBudget(redis, config.REDIS_KEY_PREFIX, config.UPSTREAM_RATE), local, (err) => {
      metrics.redisErrors.inc()
      log.warn({ err: { message: (err as Error).message } }, 'redis budget unavailable; using the local budget')
    })
  // The token manager logs in through the client, and the client takes tokens from the manager.
  const tokens = createTokenManager({
    token: config.ATLAS_TOKEN,
    tokenFile: config.ATLAS_TOKEN_FILE,
    username: config.ATLAS_USERNAME,
    usernameFile: config.ATLAS_USERNAME_FILE,
    password: config.ATLAS_PASSWORD,
    passwordFile: config.ATLAS_PASSWORD_FILE
  }, (u, p) => client.login(u, p), (result) => metrics.tokenRefreshes.inc({ result }), redis === null
    ? undefined
    : {
        redis,
        prefix: config.REDIS_KEY_PREFIX,
        onError: (err) => {
          metrics.redisErrors.inc()
          log.warn({ err: { message: (err as Error).message } }, 'redis token store unavailable; using the local token')
        }
      })
  const client: UpstreamClient = createUpstreamClient({
    baseUrl: config.ATLAS_BASE_URL,
    paths: resolvePaths(config.UPSTREAM_PATHS),
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    connectTimeoutMs: config.UPSTREAM_CONNECT_TIMEOUT_MS,
    maxResponseBytes: config.UPSTREAM_MAX_RESPONSE_BYTES,
    retries: config.UPSTREAM_RETRIES,
    connections: config.UPSTREAM_CONNECTIONS,
    budget,
    tokens,
    metrics,
    log
  })
  const objects = createObjectLoader({ client, windowMs: config.UPSTREAM_BATCH_WINDOW_MS, maxIds: config.UPSTREAM_MAX_IDS_PER_CALL, metrics })
  return { client, objects, tokens, budget }
}

export const upstreamPlugin = fp(async (app) => {
  if (app.config.ATLAS_BASE_URL === '') throw new Error('ATLAS_BASE_URL is empty: the server starts the embedded sandbox; buildApp needs a base URL')
  const upstream = createUpstream({ config: app.config, metrics: app.metrics, log: app.log, redis: app.redis })
  app.decorate('upstream', upstream)
  app.readiness.add('upstream', async () => ({ ok: await upstream.client.ping() }))
  app.readiness.add('token', async () => {
    const ok = await upstream.tokens.isUsable()
    return ok ? { ok } : { ok, detail: 'no usable upstream token' }
  })
  app.addHook('onClose', async () => { await upstream.client.close() })
}, { name: 'upstream', fastify: '5.x', dependencies: ['health', 'metrics', 'redis'] })
