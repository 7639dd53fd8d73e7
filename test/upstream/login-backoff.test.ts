// The login backoff on its own, with a test clock and jitter: the steps double up to the cap, the jitter
// takes at most half a step, a 429's Retry-After is a floor, failed logins are classified, and with Redis
// every replica sees one record and one failure count.
import { test, type Test } from 'tap'
import { classifyLoginError, createLoginBackoff, type GuardedRedis } from '../../src/upstream/login-backoff.js'
import { LoginRefusedError } from '../../src/upstream/error-map.js'
import { UpstreamError, UpstreamUnavailableError } from '../../src/errors.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const REDIS_URL = process.env.REDIS_URL ?? ''
const BASE = 1000
const MAX = 8000

test('waits double from the base up to the cap; the jitter takes at most half a step', async (t) => {
  const clock = { now: 0 }
  let jitter = 0
  const backoff = createLoginBackoff({ baseMs: BASE, maxMs: MAX }, undefined, () => clock.now, () => jitter)
  const waits: number[] = []
  for (let i = 0; i < 6; i++) waits.push((await backoff.recordFailure('credentials', 0)).untilMs - clock.now)
  t.same(waits, [1000, 2000, 4000, 8000, 8000, 8000], 'no jitter: the whole step')
  jitter = 1
  t.equal((await backoff.recordFailure('credentials', 0)).untilMs - clock.now, 4000, 'the most jitter: half the step')
  t.match(backoff.state(), { state: 'backoff', reason: 'credentials', failures: 7, retryAfterS: 4 })
  clock.now += 4000
  t.match(backoff.state(), { state: 'failing', reason: 'credentials', retryAfterS: 0 })
  t.equal(backoff.active(), undefined)
  await backoff.recordSuccess()
  t.same(backoff.state(), { state: 'ok', retryAfterS: 0, failures: 0 })
})

test('the upstream\'s Retry-After is a floor', async (t) => {
  const backoff = createLoginBackoff({ baseMs: BASE, maxMs: MAX }, undefined, () => 0, () => 0)
  const record = await backoff.recordFailure('throttled', 900)
  t.equal(record.untilMs, 900_000)
  const err = backoff.error(record) as Error & { code?: string, statusCode?: number, retryAfter?: number }
  t.match(err, { code: 'GW_UPSTREAM_AUTH_BACKOFF', statusCode: 503, retryAfter: 900 })
  t.match(err.message, /throttled/)
})

test('failed logins are classified; a login that never reached the upstream is not a step', async (t) => {
  t.same(classifyLoginError(new LoginRefusedError(400, undefined)), { reason: 'credentials', retryAfterS: 0 })
  t.same(classifyLoginError(new LoginRefusedError(429, 3600)), { reason: 'throttled', retryAfterS: 3600 })
  t.same(classifyLoginError(new LoginRefusedError(500, undefined)), { reason: 'unreachable', retryAfterS: 0 })
  t.same(classifyLoginError(new LoginRefusedError(200, undefined)), { reason: 'error', retryAfterS: 0 })
  t.same(classifyLoginError(new UpstreamError('connection refused')), { reason: 'unreachable', retryAfterS: 0 })
  t.same(classifyLoginError(new Error('not 40 hex characters')), { reason: 'error', retryAfterS: 0 })
  t.equal(classifyLoginError(new UpstreamUnavailableError('breaker open')), undefined)
})

async function shared (t: Test, prefix: string): Promise<{ run: GuardedRedis, prefix: string }> {
  const redis = await connectTestRedis(t, REDIS_URL)
  return { run: async (fn, fallback) => { try { return await fn(redis) } catch { return fallback } }, prefix }
}

test('with Redis, replicas share one record and one failure count', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const prefix = testKeyPrefix('backoff')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const a = createLoginBackoff({ baseMs: BASE, maxMs: MAX }, await shared(t, prefix), Date.now, () => 0)
  const b = createLoginBackoff({ baseMs: BASE, maxMs: MAX }, await shared(t, prefix), Date.now, () => 0)
  t.equal(await b.readShared(), undefined, 'nothing in force yet')
  const first = await a.recordFailure('credentials', 0)
  t.same(await b.readShared(), first, 'the other replica sees the same wait')
  t.match(b.state(), { state: 'backoff', failures: 1 })
  const second = await b.recordFailure('unreachable', 0)
  t.equal(second.failures, 2, 'the count is shared: the second failure doubles the wait')
  t.ok(second.untilMs - first.untilMs >= BASE)
  await a.recordSuccess()
  t.equal(await b.readShared(), undefined, 'a success anywhere clears it everywhere')
  t.match(b.state(), { state: 'ok', failures: 0 })
})
