// The cache plugin wired from config on a minimal app (metrics, health, redis, cache): tiers chosen by
// settings, metrics per route, a bad CACHE_FRESHNESS failing boot, invalidations reaching other apps.
import { test } from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import { cachePlugin } from '../../src/cache/plugin.js'
import { loadConfig, type Config } from '../../src/config.js'
import { healthPlugin } from '../../src/plugins/health.js'
import { metricsPlugin } from '../../src/plugins/metrics.js'
import { redisPlugin } from '../../src/plugins/redis.js'
import { countingLoader } from './cache-fixture.js'
import { REDIS_URL, connectRedis, uniquePrefix } from './redis-fixture.js'
import { waitFor } from '../fixtures/wait.js'

const skip = REDIS_URL === '' ? 'REDIS_URL is not set' : false

async function buildCacheApp (t: Test, env: Record<string, string>) {
  const config: Config = loadConfig({ LOG_LEVEL: 'silent', ...env })
  const app = Fastify({ logger: false })
  app.decorate('config', config)
  t.teardown(() => app.close())
  await app.register(healthPlugin)
  await app.register(metricsPlugin)
  await app.register(redisPlugin)
  await app.register(cachePlugin)
  await app.ready()
  return app
}

async function metricValue (app: Awaited<ReturnType<typeof buildCacheApp>>, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await app.metrics.registry.getSingleMetric(name)?.get()
  const sample = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
  return sample?.value ?? 0
}

test('memory only: app.cache works and counts results per route', async (t) => {
  const app = await buildCacheApp(t, {})
  const loader = countingLoader()
  const freshness = app.cache.freshness('lists')
  t.equal((await app.cache.fetch('k', freshness, loader.fn, { route: 'lists' })).status, 'MISS')
  t.equal((await app.cache.fetch('k', freshness, loader.fn, { route: 'lists' })).status, 'HIT')
  t.equal(await metricValue(app, 'gateway_cache_results_total', { route: 'lists', result: 'miss' }), 1)
  t.equal(await metricValue(app, 'gateway_cache_results_total', { route: 'lists', result: 'hit' }), 1)
})

test('a lookup whose load fails is counted as the miss it was, single and batch', async (t) => {
  const app = await buildCacheApp(t, {})
  const failing = async (): Promise<never> => { throw new Error('upstream down') }
  await t.rejects(app.cache.fetch('k', app.cache.freshness('lists'), failing, { route: 'lists' }), /upstream down/)
  await t.rejects(app.cache.fetchMany(['a', 'b'], failing, { route: 'objects', freshnessOf: () => app.cache.freshness('objects') }), /upstream down/)
  await t.rejects(app.cache.fetch('k', app.cache.freshness('lists'), failing, { route: 'lists', bypass: true }), /upstream down/)
  // Before: no sample at all, so the hit ratio read 100 % while every miss failed.
  t.equal(await metricValue(app, 'gateway_cache_results_total', { route: 'lists', result: 'miss' }), 1)
  t.equal(await metricValue(app, 'gateway_cache_results_total', { route: 'objects', result: 'miss' }), 1)
  t.equal(await metricValue(app, 'gateway_cache_results_total', { route: 'lists', result: 'bypass' }), 1)
})

test('CACHE_FRESHNESS overrides reach app.cache; a bad one fails boot naming route and field', async (t) => {
  const app = await buildCacheApp(t, { CACHE_FRESHNESS: '{"lists":{"freshS":5}}' })
  t.equal(app.cache.freshness('lists').freshMs, 5000)
  await t.rejects(buildCacheApp(t, { CACHE_FRESHNESS: '{"lists":{"freshS":-5}}' }), /CACHE_FRESHNESS: route "lists" field "freshS"/)
})

test('CACHE_MAX_BYTES=0 without Redis: no tier at all, every read loads', async (t) => {
  const app = await buildCacheApp(t, { CACHE_MAX_BYTES: '0' })
  const loader = countingLoader()
  await app.cache.fetch('k', app.cache.freshness('cone'), loader.fn)
  await app.cache.fetch('k', app.cache.freshness('cone'), loader.fn)
  t.equal(loader.calls, 2)
})

test('with Redis: L2 under REDIS_KEY_PREFIX, shared by two apps; invalidation reaches the other app\'s L1', { skip }, async (t) => {
  const { redis, prefix } = await connectRedis(t)
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix }
  const a = await buildCacheApp(t, env)
  const b = await buildCacheApp(t, env)
  const loader = countingLoader(() => 'members', { tags: ['custom-list:vra'] })
  const freshness = a.cache.freshness('custom-lists')
  await a.cache.fetch('v1:custom-lists:name=vra', freshness, loader.fn, { route: 'custom-lists' })
  t.ok(await redis.exists(`${prefix}{c}:k:v1:custom-lists:name=vra`), 'stored in L2 under the prefix')
  t.equal((await b.cache.fetch('v1:custom-lists:name=vra', freshness, loader.fn)).status, 'HIT')
  await a.cache.invalidate(['custom-list:vra'])
  let status = 'HIT'
  // Pub/sub is asynchronous and the app does not expose its subscriber: re-check until B's L1 has
  // dropped the entry (waitFor fails the test, naming this, if it never does).
  await waitFor('B\'s L1 to drop the invalidated entry', async () => {
    status = (await b.cache.fetch('v1:custom-lists:name=vra', freshness, loader.fn)).status
    return status !== 'HIT'
  })
  t.equal(status, 'MISS')
  t.equal(loader.calls, 2)
})

test('with Redis down at runtime, errors are counted in gateway_redis_errors_total', { skip }, async (t) => {
  const app = await buildCacheApp(t, { REDIS_URL, REDIS_KEY_PREFIX: uniquePrefix() })
  // Closing the client under the cache stands in for a dead Redis.
  app.redis?.disconnect()
  const loader = countingLoader()
  t.equal((await app.cache.fetch('k', app.cache.freshness('lists'), loader.fn)).status, 'MISS')
  t.ok(await metricValue(app, 'gateway_redis_errors_total', {}) >= 1)
})
