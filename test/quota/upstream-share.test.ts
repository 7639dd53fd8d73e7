import { test } from 'tap'
import { createUpstreamShare } from '../../src/quota/upstream-share.js'
import { createMemoryWindowStore } from '../../src/quota/window-store.js'
import { toRecord } from '../../src/consumers/schema.js'
import { startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { buildAuthTestApp, consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'

test('the share is per UTC hour (injected clock)', async (t) => {
  let now = Date.UTC(2026, 0, 1, 9, 59, 0)
  const share = createUpstreamShare(createMemoryWindowStore({ now: () => now }), 'p:')
  const consumer = toRecord({ id: 'c', key_sha256: [], upstream_share: 1 }).consumer
  t.match(await share.take(consumer), { isAllowed: true, used: 1 })
  t.match(await share.take(consumer), { isAllowed: false, used: 1, resetSeconds: 60 })
  now += 60000
  t.match(await share.take(consumer), { isAllowed: true, used: 1 })
  t.equal(await share.used(consumer), 1)
})

test('app.quota.takeUpstreamShare throws GW_QUOTA_EXHAUSTED with retryAfter once the share is spent', async (t) => {
  const sandbox = await startTestSandbox(t)
  const file = consumersFile(t, [makeConsumer('two', { upstream_share: 2 }), makeConsumer('none', { upstream_share: 0 })])
  const config = { CONSUMERS_FILE: file, REDIS_KEY_PREFIX: uniquePrefix('share') }
  const { app } = await buildAuthTestApp(t, { upstream: sandbox, config })
  const two = app.consumers.get('two')
  const none = app.consumers.get('none')
  if (two === undefined || none === undefined) throw new Error('consumers not loaded')

  await app.quota.takeUpstreamShare(two)
  await app.quota.takeUpstreamShare(two)
  const err = await app.quota.takeUpstreamShare(two).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'GW_QUOTA_EXHAUSTED', statusCode: 429 })
  const retryAfter = (err as { retryAfter?: number }).retryAfter ?? 0
  t.ok(retryAfter >= 1 && retryAfter <= 3600, `retryAfter to the end of the hour (${retryAfter})`)
  await t.rejects(app.quota.takeUpstreamShare(none), { code: 'GW_QUOTA_EXHAUSTED' }, 'a share of 0 allows no upstream calls')

  const metric = await app.metrics.limitRejections.get()
  t.equal(metric.values.find((v) => v.labels.consumer === 'two' && v.labels.kind === 'upstream_share')?.value, 1)
  t.match(await app.quota.usage(two), { upstream_share_used: 2, units_today: 0, requests_this_window: null })

  if (TEST_REDIS_URL !== '') {
    const replica = await buildAuthTestApp(t, { upstream: sandbox, config })
    const same = replica.app.consumers.get('two')
    if (same === undefined) throw new Error('consumer not loaded')
    await t.rejects(replica.app.quota.takeUpstreamShare(same), { code: 'GW_QUOTA_EXHAUSTED' }, 'another replica sees the same count')
  }
})
