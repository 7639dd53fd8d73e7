// The upstream circuit breaker on its own, with a test clock: when it opens, what it answers while open,
// the half-open probe (one at a time, at a bounded rate), and a metric and a log line per transition.
import { test } from 'tap'
import { PassThrough } from 'node:stream'
import { pino } from 'pino'
import { createBreaker } from '../../src/upstream/breaker.js'
import { createMetrics } from '../../src/plugins/metrics.js'

function setup (opts: { threshold?: number, openMs?: number, probeIntervalMs?: number } = {}) {
  const lines: string[] = []
  const stream = new PassThrough()
  stream.on('data', (c: Buffer) => lines.push(...c.toString('utf8').split('\n').filter((l) => l !== '')))
  const metrics = createMetrics()
  const clock = { now: 1_000_000 }
  const breaker = createBreaker({
    threshold: opts.threshold ?? 3,
    openMs: opts.openMs ?? 10_000,
    probeIntervalMs: opts.probeIntervalMs ?? 1000,
    metrics,
    log: pino(stream),
    now: () => clock.now
  })
  const refusal = () => {
    try {
      breaker.acquire().cancel()
      return undefined
    } catch (err) {
      return err as { code?: string, statusCode?: number, retryAfter?: number }
    }
  }
  return { breaker, metrics, clock, lines, refusal }
}

test('closed: failures below the threshold keep it closed, and a success resets the count', async (t) => {
  const { breaker, refusal } = setup({ threshold: 3 })
  breaker.acquire().failure('ECONNREFUSED')
  breaker.acquire().failure('status 500')
  breaker.acquire().success()
  breaker.acquire().failure('ECONNREFUSED')
  breaker.acquire().failure('ECONNREFUSED')
  t.equal(breaker.state, 'closed')
  t.equal(refusal(), undefined)
  breaker.acquire().failure('ECONNREFUSED')
  t.equal(breaker.state, 'open', 'three failures in a row open it')
  breaker.close()
})

test('open: every call is refused with 503 GW_UPSTREAM_UNAVAILABLE and the time left as Retry-After', async (t) => {
  const { breaker, clock, refusal } = setup({ threshold: 1, openMs: 10_000 })
  breaker.acquire().failure('ECONNREFUSED')
  t.match(refusal(), { code: 'GW_UPSTREAM_UNAVAILABLE', statusCode: 503, retryAfter: 10 })
  clock.now += 7_500
  t.match(refusal(), { retryAfter: 3 })
  breaker.close()
})

test('half-open: one probe at a time, at most one per interval; a failed probe reopens, an answered one closes', async (t) => {
  const { breaker, clock, refusal, metrics, lines } = setup({ threshold: 1, openMs: 10_000, probeIntervalMs: 1000 })
  breaker.acquire().failure('ECONNREFUSED')
  clock.now += 10_000
  const probe = breaker.acquire()
  t.equal(breaker.state, 'half_open')
  t.match(refusal(), { code: 'GW_UPSTREAM_UNAVAILABLE' }, 'a second call waits while the probe is in flight')
  probe.failure('ECONNREFUSED')
  t.equal(breaker.state, 'open', 'a failed probe opens it again')
  t.match(refusal(), { retryAfter: 10 })

  clock.now += 10_000
  breaker.acquire().cancel()
  t.ok(refusal() !== undefined, 'a cancelled probe frees the slot, but the next waits for the interval')
  clock.now += 1000
  const second = breaker.acquire()
  second.success()
  second.failure('late')
  t.equal(breaker.state, 'closed', 'an answered probe closes it; a permit settles once')
  t.equal(refusal(), undefined)

  const text = await metrics.registry.metrics()
  t.match(text, /gateway_upstream_breaker_state 0/)
  t.match(text, /gateway_upstream_breaker_transitions_total\{from="closed",to="open"\} 1/)
  t.match(text, /gateway_upstream_breaker_transitions_total\{from="open",to="half_open"\} 2/)
  t.match(text, /gateway_upstream_breaker_transitions_total\{from="half_open",to="open"\} 1/)
  t.match(text, /gateway_upstream_breaker_transitions_total\{from="half_open",to="closed"\} 1/)
  t.match(text, /gateway_upstream_breaker_rejections_total [1-9]/)
  const transitions = lines.map((l) => JSON.parse(l) as { msg: string, from: string, to: string, why: string })
  t.same(transitions.map((l) => `${l.from}>${l.to}`), ['closed>open', 'open>half_open', 'half_open>open', 'open>half_open', 'half_open>closed'])
  t.match(transitions[2], { msg: 'upstream circuit breaker opened', why: 'probe failed: ECONNREFUSED' })
  breaker.close()
})

test('the open period ends on a timer, so the state shows half-open without a call', async (t) => {
  const { breaker } = setup({ threshold: 1, openMs: 20 })
  breaker.acquire().failure('ECONNREFUSED')
  t.equal(breaker.state, 'open')
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.equal(breaker.state, 'half_open')
  breaker.close()
})
