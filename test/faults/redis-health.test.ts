// The shared view of Redis health on its own (lib/redis-health.ts), with calls that stand in for
// Redis commands: a promise that never settles is a stalled Redis. What the whole app does with it
// against a real frozen redis-server is in redis-stall.test.ts. Order and counts are asserted, never
// durations. The background probe's timer is unref'd (it must not keep a server process alive), so
// the waits below use waitFor, whose own timer keeps this process running meanwhile. The last test
// starts a whole gateway while Redis is down.
import { test } from 'tap'
import { createRedisHealth, type RedisHealthOptions, type RedisState } from '../../src/lib/redis-health.js'
import { waitFor } from '../fixtures/wait.js'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'
import { freePort, startRedisServer } from '../fixtures/redis-server.js'

const stalled = async (): Promise<never> => new Promise<never>(() => {})
const replyError = (): Error => Object.assign(new Error('ERR script failed'), { name: 'ReplyError' })

function recorder (opts: RedisHealthOptions = {}) {
  const failures: string[] = []
  const skips: string[] = []
  const changes: RedisState[] = []
  const health = createRedisHealth({
    timeoutMs: 50,
    cooldownMs: 100,
    ...opts,
    onFailure: (_err, user) => { failures.push(user) },
    onSkip: (user) => { skips.push(user) },
    onStateChange: (state) => { changes.push(state) }
  })
  return { health, failures, skips, changes }
}

test('one timeout marks Redis down for every user; calls in flight are released, later ones skipped', async (t) => {
  // The cool-down's clock stands still: on a busy machine more than its 100 ms could pass between the
  // timeout and the calls below, which then went to Redis as the probe.
  const { health, failures, skips, changes } = recorder({ now: () => 0 })
  t.teardown(() => health.close())
  const cache = health.guard('cache')
  const limits = health.guard('limits')
  // Started later on the same stalled connection, as soon as the first is waiting on it (no timer runs in
  // between: after a fixed 20 ms sleep a busy machine could let the first time out before the second
  // started, which was then skipped): released by the first timeout, not its own, which is set later.
  let isFirstSent: () => void = () => {}
  const firstSent = new Promise<void>((resolve) => { isFirstSent = resolve })
  const first = cache.run(async () => { isFirstSent(); return await stalled() }, 'fallback')
  await firstSent
  const second = limits.attempt(stalled)
  t.equal(await first, 'fallback')
  t.same(await second, { ok: false, err: undefined }, 'released without an error of its own')
  t.same(failures, ['cache'], 'one failure reported: the second call did not wait out its own timeout')
  t.same(changes, ['down'])

  let ran = 0
  t.equal(await limits.run(async () => { ran++; return 'redis' }, 'skipped'), 'skipped')
  t.equal(await health.guard('token').run(async () => { ran++; return 'redis' }, 'local'), 'local')
  t.equal(ran, 0, 'no call reaches Redis while it is down')
  t.same(skips, ['limits', 'token'])
  t.notOk(health.isAvailable)
})

test('with a background probe: skipped until the probe answers, re-probed while it fails', async (t) => {
  let isAnswering = false
  let probes = 0
  const { health, changes, failures } = recorder({
    probe: async () => {
      probes++
      if (!isAnswering) await stalled()
      return 'PONG'
    }
  })
  t.teardown(() => health.close())
  const guard = health.guard('budget')
  t.same(await guard.attempt(async () => { throw new Error('connect ECONNREFUSED') }), { ok: false, err: new Error('connect ECONNREFUSED') })
  t.equal(health.state, 'down')

  // The first probe times out, which starts a new cool-down; calls are skipped all along.
  await waitFor('the first probe to fail', () => failures.includes('probe'))
  t.equal(health.state, 'down', 'a failed probe keeps Redis down')
  t.equal(await guard.run(async () => 'redis', 'local'), 'local', 'no call passes while the probe decides')

  isAnswering = true
  await waitFor('the probe to find Redis back', () => health.state === 'up')
  t.ok(probes >= 2, `probed again after the failed probe (${probes})`)
  t.same(changes, ['down', 'up'])
  t.equal(await guard.run(async () => 'redis', 'local'), 'redis', 'calls go to Redis again')
})

test('without a probe: the first call after the cool-down is the probe, the others keep skipping', async (t) => {
  let at = 0
  const { health, changes } = recorder({ now: () => at })
  const guard = health.guard('cache')
  await guard.run(stalled, undefined)
  t.notOk(health.isAvailable)
  at += 100
  t.ok(health.isAvailable, 'the cool-down is over')

  let answer: (value: string) => void = () => {}
  const probe = guard.run(async () => new Promise<string>((resolve) => { answer = resolve }), 'fallback')
  t.equal(await guard.run(async () => 'other', 'skipped'), 'skipped', 'one probe at a time')
  answer('redis')
  t.equal(await probe, 'redis')
  t.same(changes, ['down', 'up'])
  t.equal(await guard.run(async () => 'other', 'skipped'), 'other')
})

test('a reply error fails the call but Redis stays up (it answered)', async (t) => {
  const { health, failures, changes } = recorder()
  const result = await health.guard('limits').attempt(async () => { throw replyError() })
  t.equal(result.ok, false)
  t.match(result, { err: { name: 'ReplyError' } })
  t.same(failures, ['limits'], 'counted as a Redis error')
  t.same(changes, [], 'not a reason to skip Redis')
  t.ok(health.isAvailable)
})

test('a value that does not parse inside a call fails the call but Redis stays up (it answered)', async (t) => {
  const { health, changes } = recorder()
  const guard = health.guard('idempotency')
  await t.rejects(guard.call(async () => JSON.parse('{"state":"do') as unknown), SyntaxError)
  t.same(changes, [], 'not a reason to skip Redis')
  t.ok(health.isAvailable)
  t.equal(await guard.run(async () => 'next', 'skipped'), 'next', 'the next call goes to Redis')
})

test('errors and answers seen outside a call (connection events, health checks) move the state too', async (t) => {
  const { health, changes } = recorder({ probe: stalled })
  health.report(new Error('read ECONNRESET'), 'connection')
  t.equal(health.state, 'down')
  health.reportSuccess()
  t.equal(health.state, 'up')
  health.report(new Error('read ECONNRESET'), 'connection')
  health.close()
  t.same(changes, ['down', 'up', 'down'])
})

test('a gateway started while Redis is down serves without it, and uses it once it answers', async (t) => {
  const port = await freePort()
  // The test apps' command timeout: a Redis that is down refuses at once, and with 300 ms a command that
  // took longer once Redis was back (on a loaded machine) marked it down again, so the fill below skipped it.
  const { app } = await buildTestApp(t, { config: { REDIS_URL: `redis://127.0.0.1:${port}` } })
  t.equal(app.redisHealth.state, 'down', 'started, with Redis marked down')
  const read = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: demoAuth(app) })
  t.equal(read.statusCode, 200, 'reads are served (limits open)')
  await startRedisServer(t, { port })
  await waitFor('Redis to be found', () => app.redisHealth.state === 'up', { timeoutMs: 15_000, intervalMs: 50 })
  const miss = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.B}`, headers: demoAuth(app) })
  t.equal(miss.statusCode, 200)
  await app.cache.settleWrites()
  const keys = await app.redis?.keys(`${app.config.REDIS_KEY_PREFIX}{c}:k:*`) ?? []
  t.ok(keys.length > 0, 'fills reach Redis')
})
