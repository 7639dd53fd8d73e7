// LIMITS_ON_REDIS_ERROR against a Redis this test starts and freezes with SIGSTOP (never the shared
// one): requests still answer (open: served, closed: 503), the checks after the first failure skip
// Redis instead of trying it, and once the background probe finds Redis back (after SIGCONT, no
// restart) the limits hold again.
import { test } from 'tap'
import { REDIS_SERVER_SKIP, startRedisServer } from '../fixtures/redis-server.js'
import { startTestSandbox } from '../helper.js'
import { bearer, buildAuthTestApp, consumersFile, makeConsumer, registerTestRoutes } from '../consumer-helper.js'
import { waitFor } from '../fixtures/wait.js'

const skip = REDIS_SERVER_SKIP

for (const policy of ['open', 'closed'] as const) {
  test(`a frozen Redis under LIMITS_ON_REDIS_ERROR=${policy}`, { skip }, async (t) => {
    const redis = await startRedisServer(t)
    const sandbox = await startTestSandbox(t)
    const c = makeConsumer('frozen', { rate: '3/minute', daily_objects: 100 })
    const { app } = await buildAuthTestApp(t, {
      upstream: sandbox,
      register: registerTestRoutes,
      config: { CONSUMERS_FILE: consumersFile(t, [c]), REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: 150, LIMITS_ON_REDIS_ERROR: policy }
    })
    const read = () => app.inject({ method: 'GET', url: '/t/read', headers: bearer(c.key) })
    t.equal((await read()).statusCode, 200, 'healthy Redis: served')

    redis.pause()
    let thawed = false
    t.teardown(() => { if (!thawed) redis.resume() })

    const during = await read()
    const batch = await app.inject({ method: 'POST', url: '/t/batch', headers: bearer(c.key), payload: { ids: ['1', '2'] } })
    const compat = await app.inject({ method: 'GET', url: '/compat/read/', headers: { authorization: `Token ${c.key}` } })
    const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(c.key) })
    if (policy === 'open') {
      t.equal(during.statusCode, 200, 'open: served')
      t.equal(during.headers.ratelimit, undefined, 'open: no counts to report')
      t.equal(batch.statusCode, 200, 'open: units not charged, request served')
      t.equal(compat.statusCode, 200)
      t.equal(me.statusCode, 200)
      t.match(me.json().usage, { requests_this_window: null, units_today: null, upstream_share_used: null })
      const consumer = app.consumers.authenticate(c.key)
      if (consumer === undefined) throw new Error('the test consumer is not known')
      t.equal(await app.quota.takeUpstreamShare(consumer), undefined, 'open: a share take that skipped Redis says it charged nothing')
    } else {
      t.equal(during.statusCode, 503, 'closed: refused')
      t.match(during.json(), { code: 'GW_UNAVAILABLE' })
      t.equal(during.headers['retry-after'], '1', 'closed: says when to come back (the Redis probe runs every second)')
      t.equal(compat.headers['retry-after'], '1', 'compat too')
      t.equal(batch.statusCode, 503)
      t.equal(compat.statusCode, 503)
      t.equal(compat.body, '{"detail":"Service temporarily unavailable, try again later."}')
      t.equal(me.statusCode, 503)
    }
    const errors = (await app.metrics.redisErrors.get()).values[0]?.value ?? 0
    t.ok(errors >= 1, `Redis errors counted (${errors})`)
    const skipped = (await app.metrics.redisSkipped.get()).values.find((v) => v.labels.user === 'limits')?.value ?? 0
    t.ok(skipped >= 3, `checks after the first failure skipped Redis (${skipped})`)

    redis.resume()
    thawed = true
    await waitFor('the background probe to find Redis back', () => app.redisHealth.state === 'up')
    // Commands that timed out while frozen still ran once Redis woke up, so the count may already be
    // spent; either way the limit holds again within max+1 requests.
    const statuses: number[] = []
    for (let i = 0; i < 4 && !statuses.includes(429); i++) statuses.push((await read()).statusCode)
    t.ok(statuses.includes(429), `limits hold again after SIGCONT (${statuses.join(',')})`)
    t.notOk(statuses.includes(503), 'no more 503s')
  })
}
