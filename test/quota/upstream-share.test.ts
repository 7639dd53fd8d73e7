import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { createQuota, leaseBlock, type Quota } from '../../src/quota/plugin.js'
import { createUpstreamShare } from '../../src/quota/upstream-share.js'
import { createMemoryWindowStore, type WindowStore } from '../../src/quota/window-store.js'
import { toRecord } from '../../src/consumers/schema.js'
import { startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { buildAuthTestApp, consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'

test('the share is per UTC hour (injected clock)', async (t) => {
  let now = Date.UTC(2026, 0, 1, 9, 59, 0)
  const share = createUpstreamShare(createMemoryWindowStore({ now: () => now }), 'p:', { run: async (op) => await op(), blockFor: () => 1, now: () => now })
  const consumer = toRecord({ id: 'c', key_sha256: [], upstream_share: 1 }).consumer
  t.match(await share.take(consumer), { isAllowed: true, used: 1 })
  t.match(await share.take(consumer), { isAllowed: false, used: 1, resetSeconds: 60 })
  now += 60000
  t.match(await share.take(consumer), { isAllowed: true, used: 1 })
  t.equal(await share.used(consumer), 1)
})

test('a large share is spent from leases: far fewer store calls, and two replicas together never pass it', async (t) => {
  const now = Date.UTC(2026, 0, 1, 9, 0, 0)
  const store = createMemoryWindowStore({ now: () => now })
  let storeCalls = 0
  const counted: WindowStore = {
    charge: async (...args) => { storeCalls++; return await store.charge(...args) },
    lease: async (...args) => { storeCalls++; return await store.lease(...args) }
  }
  // Two replicas' shares over one store; blocks of 50 (a share of 1,000 with LIMIT_LEASE_DIVISOR 20).
  const options = { run: async <T>(op: () => Promise<T>) => await op(), blockFor: (limit: number) => leaseBlock(limit, 20, 1000), now: () => now }
  const a = createUpstreamShare(counted, 'p:', options)
  const b = createUpstreamShare(counted, 'p:', options)
  const consumer = toRecord({ id: 'c', key_sha256: [], upstream_share: 1000 }).consumer
  let allowed = 0
  const takeBoth = async (rounds: number) => {
    for (let i = 0; i < rounds; i++) {
      for (const share of [a, b]) if ((await share.take(consumer))?.isAllowed === true) allowed++
    }
  }
  await takeBoth(450)
  t.equal(allowed, 900, 'well within the share, every call is allowed')
  t.ok(storeCalls <= 900 / 10, `${storeCalls} store calls for 900 takes`)
  // Past the share: every take is refused (each asks the store), and none of them is counted.
  await takeBoth(250)
  t.ok(allowed <= 1000, `${allowed} calls allowed of a share of 1,000`)
  t.ok(allowed >= 1000 - 2 * 50, 'at most a block per replica left unspent')
  t.equal((await store.charge('p:quota:share:c', 0, 1000, 3600)).used <= 1000, true, 'the store never counts past the share')
})

// The share is per UTC hour, so the app's quota is built here with an injected clock (createQuota is
// what the quota plugin decorates app.quota with): the test means the same at any wall-clock minute.
test('the app\'s quota: takeUpstreamShare throws GW_QUOTA_EXHAUSTED with retryAfter once the share is spent', async (t) => {
  let now = Date.UTC(2026, 0, 1, 9, 30, 0)
  const clock = () => now
  const sandbox = await startTestSandbox(t)
  const file = consumersFile(t, [makeConsumer('two', { upstream_share: 2 }), makeConsumer('none', { upstream_share: 0 })])
  const config = { CONSUMERS_FILE: file, REDIS_KEY_PREFIX: uniquePrefix('share') }
  const quotaOf = async (app: FastifyInstance) => { quotas.set(app, await createQuota(app, { now: clock })) }
  const quotas = new Map<FastifyInstance, Quota>()
  const { app } = await buildAuthTestApp(t, { upstream: sandbox, config, register: quotaOf })
  const quota = quotas.get(app)
  const two = app.consumers.get('two')
  const none = app.consumers.get('none')
  if (quota === undefined || two === undefined || none === undefined) throw new Error('quota or consumers not loaded')

  await quota.takeUpstreamShare(two)
  await quota.takeUpstreamShare(two)
  const err = await quota.takeUpstreamShare(two).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'GW_QUOTA_EXHAUSTED', statusCode: 429 })
  t.equal((err as { retryAfter?: number }).retryAfter, 1800, 'retryAfter runs to the end of the UTC hour')
  await t.rejects(quota.takeUpstreamShare(none), { code: 'GW_QUOTA_EXHAUSTED' }, 'a share of 0 allows no upstream calls')

  const metric = await app.metrics.limitRejections.get()
  t.equal(metric.values.find((v) => v.labels.consumer === 'two' && v.labels.kind === 'upstream_share')?.value, 1)
  t.match(await quota.usage(two), { upstream_share_used: 2, units_today: 0, requests_this_window: null })

  if (TEST_REDIS_URL !== '') {
    const replica = await buildAuthTestApp(t, { upstream: sandbox, config, register: quotaOf })
    const same = replica.app.consumers.get('two')
    const replicaQuota = quotas.get(replica.app)
    if (same === undefined || replicaQuota === undefined) throw new Error('quota or consumer not loaded')
    await t.rejects(replicaQuota.takeUpstreamShare(same), { code: 'GW_QUOTA_EXHAUSTED' }, 'another replica sees the same count')
  }

  now = Date.UTC(2026, 0, 1, 10, 0, 0)
  await quota.takeUpstreamShare(two)
  t.match(await quota.usage(two), { upstream_share_used: 1 }, 'the next UTC hour starts a new share')
})
