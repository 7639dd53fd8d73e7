// The object loader's adaptive batching window: UPSTREAM_BATCH_WINDOW_MS at no budget pressure, widened
// towards UPSTREAM_BATCH_WINDOW_MAX_MS as the budget is pressed (service/priorities.ts budgetPressure),
// and the whole maximum for a miss arriving while an objects/ call is in flight, so misses spread over
// time share calls. A requested id never waits longer than the maximum before its call leaves, nor
// longer than the budget takes to earn a call (UPSTREAM_RATE's window over its capacity).
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { buildTestApp } from '../helper.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { budgetPressure } from '../../src/service/priorities.js'
import { metricValue } from '../faults/upstream-probes.js'

const bot = makeConsumer('bot', { scopes: ['read'], rate: '100000/minute', daily_objects: 1000000, upstream_share: 10000 })

// [maximum window, UPSTREAM_RATE, window with nothing in flight, window with a call in flight, calls]
const cases = [
  [300, '1000/hour', 5, 300, 2],
  [5, '1000/hour', 5, 5, 3],
  // A call earned every 3.6 µs: waiting buys nothing, so no miss waits (the bench's unlimited budget).
  [300, '1000000000/hour', 0, 0, 3]
] as const
for (const [maxWindowMs, rate, baseWindowMs, heldWindowMs, expected] of cases) {
  test(`misses 40 ms apart while an objects/ call is in flight, maximum window ${maxWindowMs} ms, UPSTREAM_RATE ${rate}: ${expected} calls`, async (t) => {
    // Every upstream reply takes 400 ms, so the first call is in flight while the next misses arrive.
    const { app, sandbox } = await buildTestApp(t, {
      sandbox: { latencyMs: 400 },
      config: { CONSUMERS_FILE: consumersFile(t, [bot]), PREFETCH_ENABLED: false, UPSTREAM_RATE: rate, UPSTREAM_BATCH_WINDOW_MS: 5, UPSTREAM_BATCH_WINDOW_MAX_MS: maxWindowMs }
    })
    const ids = sandbox.ids().slice(10, 13).map(String)
    sandbox.resetCalls()
    t.equal(app.upstream.objects.windowMs, baseWindowMs, 'no pressure, nothing in flight: the base window')
    const answers: Array<Promise<{ statusCode: number }>> = []
    for (const id of ids) {
      answers.push(app.inject({ url: `/v1/objects/${id}`, headers: { authorization: `Bearer ${bot.key}` } }))
      if (id === ids[0]) {
        // The first call has reached the upstream (which answers 400 ms later).
        while ((sandbox.calls.get('objects') ?? 0) < 1) await sleep(2)
        t.equal(app.upstream.objects.windowMs, heldWindowMs, 'a call in flight: the widest window the budget makes worth waiting')
      } else if (expected === ids.length) {
        // Each miss goes alone: the next is sent once this one's call has left, not after a time that a
        // busy machine can stretch until two misses meet in one window.
        const sent = answers.length
        while ((sandbox.calls.get('objects') ?? 0) < sent) await sleep(2)
      }
      await sleep(40)
    }
    t.ok((await Promise.all(answers)).every((r) => r.statusCode === 200))
    t.equal(sandbox.calls.get('objects'), expected, `${expected} objects/ calls for 3 misses`)
  })
}

test('budget pressure widens the window: none before the first call, full once the pace is spent', async (t) => {
  let clock = Date.UTC(2026, 0, 5, 12)
  const { app, sandbox } = await buildTestApp(t, {
    useRedis: false,
    deps: { now: () => clock },
    config: {
      CONSUMERS_FILE: consumersFile(t, [bot]),
      PREFETCH_ENABLED: false,
      UPSTREAM_RATE: '100/hour',
      UPSTREAM_BACKGROUND_HEADROOM: '4',
      UPSTREAM_BATCH_WINDOW_MS: 10,
      UPSTREAM_BATCH_WINDOW_MAX_MS: 210
    }
  })
  const get = async (url: string) => app.inject({ url, headers: { authorization: `Bearer ${bot.key}` } })
  t.equal(budgetPressure(app), 0, 'before the first call')
  t.equal((await get('/v1/lists/good/objects')).statusCode, 200)
  // One call of a pace of 4: a quarter spent; one call in a minute is below the pace's 96/hour.
  t.equal(budgetPressure(app), 0.25)
  t.equal(app.upstream.objects.windowMs, 60, 'a quarter of the way from 10 to 210 ms')
  t.equal((await get('/v1/lists/eyeball/objects')).statusCode, 200)
  t.equal((await get('/v1/lists/follow_up/objects')).statusCode, 200)
  t.equal((await get('/v1/lists/attic/objects')).statusCode, 200)
  t.equal(budgetPressure(app), 1, 'the pace is spent')
  t.equal(app.upstream.objects.windowMs, 210)
  clock += 60 * 60 * 1000
  t.equal(budgetPressure(app), 0, 'an hour later: the pace is whole again and the calls have decayed')
  t.equal(sandbox.calls.get('objectlist'), 4)
})

test('no window worth waiting, every upstream connection busy: misses gather until a call returns, then go together', async (t) => {
  // A call earned every 3.6 µs (no window), one upstream connection, replies after 1 s: the first miss
  // goes at once, the next nine arrive 20 ms apart while it is out and leave together when it returns.
  // (With replies after 200 ms, timers late by 20 ms on a busy machine let the last miss arrive after the
  // first call had returned: a third call.) The maximum window is longer than the reply takes.
  const { app, sandbox } = await buildTestApp(t, {
    sandbox: { latencyMs: 1000 },
    config: { CONSUMERS_FILE: consumersFile(t, [bot]), PREFETCH_ENABLED: false, UPSTREAM_RATE: '1000000000/hour', UPSTREAM_CONNECTIONS: 1, UPSTREAM_BATCH_WINDOW_MAX_MS: 5000 }
  })
  const ids = sandbox.ids().slice(20, 30).map(String)
  sandbox.resetCalls()
  t.equal(app.upstream.objects.windowMs, 0)
  const answers: Array<Promise<{ statusCode: number }>> = []
  for (const id of ids) {
    answers.push(app.inject({ url: `/v1/objects/${id}`, headers: { authorization: `Bearer ${bot.key}` } }))
    if (id === ids[0]) while ((sandbox.calls.get('objects') ?? 0) < 1) await sleep(2)
    await sleep(20)
  }
  t.equal(sandbox.calls.get('objects'), 1, 'the nine later misses wait while the one connection is busy')
  t.ok((await Promise.all(answers)).every((r) => r.statusCode === 200))
  t.equal(sandbox.calls.get('objects'), 2, '2 objects/ calls for 10 misses (not 10 calls queued for one connection)')
})

test('no window, every connection carrying a hung objects/ call: a miss still leaves within the maximum window and fails fast', async (t) => {
  // Waiting for a call to return is bounded by UPSTREAM_BATCH_WINDOW_MAX_MS: the miss then queues for a
  // connection like any call, for at most UPSTREAM_POOL_WAIT_MS, and gets 503 long before a hung call ends.
  const { app, sandbox } = await buildTestApp(t, {
    config: {
      CONSUMERS_FILE: consumersFile(t, [bot]),
      PREFETCH_ENABLED: false,
      UPSTREAM_RATE: '1000000000/hour',
      UPSTREAM_CONNECTIONS: 2,
      UPSTREAM_BATCH_WINDOW_MAX_MS: 100,
      UPSTREAM_POOL_WAIT_MS: 200,
      UPSTREAM_TIMEOUT_MS: 15_000
    }
  })
  const [a, b, c] = sandbox.ids().slice(40, 43).map(String)
  sandbox.resetCalls()
  sandbox.inject({ kind: 'hang', endpoint: 'objects', times: 2 })
  let hungSettled = 0
  const read = async (id: string | undefined) => app.inject({ url: `/v1/objects/${id as string}`, headers: { authorization: `Bearer ${bot.key}` } })
  const hung: Array<Promise<unknown>> = []
  for (const [k, id] of [a, b].entries()) {
    hung.push(read(id).finally(() => { hungSettled++ }))
    // One call each (sent together they would share one).
    while (sandbox.calls.get('objects') !== k + 1) await sleep(2)
  }
  const miss = await read(c)
  t.equal(hungSettled, 0, 'answered while both hung calls were still hanging')
  t.equal(miss.statusCode, 503, 'the miss failed fast for want of a connection')
  // Order, not durations: the miss left the loader's wait and timed out in the pool's.
  t.ok(((await metricValue(app, 'gateway_upstream_pool_wait_timeouts_total')) ?? 0) >= 1, 'its call queued for a connection and gave up there, not when a hung call ended')
  await sandbox.close()
  await Promise.allSettled(hung)
})
