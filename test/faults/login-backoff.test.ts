// A failing token refresh (issue 12, item 2): failed logins back off exponentially (with jitter, capped),
// a 429 from auth-token/ is honoured, and the backoff is one for the whole deployment (kept in Redis next
// to the token lock). While refresh is locked out consumers get 503 GW_UPSTREAM_AUTH_BACKOFF with
// Retry-After, and no miss spends budget on a token known to be dead. Bounds, never durations.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { testKeyPrefix } from '../fixtures/redis-keys.js'
import { waitFor } from '../fixtures/wait.js'
import { metricValue, outcomeOf, tally, type Outcome } from './upstream-probes.js'

const coneMiss = (app: FastifyInstance, i: number) => app.inject({ url: `/v1/cone?ra=${(i % 350) + 1}&dec=${Math.floor(i / 350)}&radius=5`, headers: demoAuth(app) })

async function cone (app: FastifyInstance, i: number): Promise<Outcome> {
  return outcomeOf(await coneMiss(app, i))
}

/** A cone miss on replica `name`, with the problem's detail when the answer is not the backoff: names the refusing part should a run fail. */
async function coneOn (app: FastifyInstance, name: string, i: number): Promise<Outcome & { replica?: string, detail?: string }> {
  const res = await coneMiss(app, i)
  const outcome = outcomeOf(res)
  if (outcome.code === 'GW_UPSTREAM_AUTH_BACKOFF' || res.headers['content-type']?.toString().includes('json') !== true) return outcome
  return { ...outcome, replica: name, detail: String(res.json<{ detail?: unknown }>().detail) }
}

/**
 * The most login attempts a backoff allows within `elapsedMs`: attempt n+1 comes at least half of
 * min(cap, base·2^(n-1)) after attempt n (the jitter takes at most half of each step).
 */
function maxAttempts (elapsedMs: number, baseMs: number, capMs: number): number {
  let attempts = 1
  let at = 0
  for (let n = 1; ; n++) {
    at += Math.min(capMs, baseMs * 2 ** (n - 1)) / 2
    if (at > elapsedMs) return attempts
    attempts++
  }
}

test('a wrong password: 20 misses make one login attempt and get 503 GW_UPSTREAM_AUTH_BACKOFF with Retry-After', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { ATLAS_PASSWORD: 'wrong-password' } })
  sandbox.expireToken('write')
  sandbox.resetCalls()
  const outcomes: Outcome[] = []
  for (let i = 0; i < 20; i++) outcomes.push(await cone(app, i))
  const logins = sandbox.calls.get('auth-token') ?? 0
  t.comment(`20 misses → ${JSON.stringify(tally(outcomes))}; ${logins} login attempts, ${sandbox.calls.get('cone') ?? 0} cone/ calls`)
  t.equal(logins, 1, 'one login attempt per backoff step')
  t.ok(outcomes.every((o) => o.status === 503 && o.code === 'GW_UPSTREAM_AUTH_BACKOFF'), 'every miss: 503 GW_UPSTREAM_AUTH_BACKOFF')
  t.ok(outcomes.every((o) => Number(o.retryAfter) >= 1), 'with Retry-After')
  t.ok((sandbox.calls.get('cone') ?? 0) <= 1, 'the dead token is not sent again while refresh is locked out')
  t.match(app.upstream.tokens.refreshState(), { state: 'backoff', reason: 'credentials', failures: 1 })
  await app.health.runChecks()
  const health = (await app.inject({ url: '/healthz' })).json()
  t.match(health.checks.token_refresh, { status: 'down', detail: /backing off \(credentials\) after 1 failure/ }, '/healthz says why')
  t.equal(await metricValue(app, 'gateway_token_refreshes_total', 'result="failed"'), 1)
  t.ok(((await metricValue(app, 'gateway_token_refresh_backoff_seconds', 'reason="credentials"')) ?? 0) >= 1, 'the backoff gauge says how long, and why')
})

test('a 429 from auth-token/ is honoured: no login before its Retry-After', async (t) => {
  // A short backoff, so that only the upstream's Retry-After can explain the wait.
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_LOGIN_BACKOFF_MS: 50, UPSTREAM_LOGIN_BACKOFF_MAX_MS: 100 } })
  sandbox.inject({ kind: 'throttle', endpoint: 'auth-token', retryAfterS: 900 })
  sandbox.expireToken('write')
  sandbox.resetCalls()
  const firstMiss = await cone(app, 0)
  t.comment(`throttled login → ${JSON.stringify(firstMiss)}`)
  t.match(firstMiss, { status: 503, code: 'GW_UPSTREAM_AUTH_BACKOFF' })
  t.ok(Number(firstMiss.retryAfter) >= 890, 'Retry-After carries the upstream\'s')
  // Well past the gateway's own backoff (100 ms at most), still inside the upstream's 900 s.
  await new Promise((resolve) => setTimeout(resolve, 300))
  const outcomes: Outcome[] = []
  for (let i = 1; i <= 10; i++) outcomes.push(await cone(app, i))
  t.equal(sandbox.calls.get('auth-token'), 1, 'no second login inside the upstream\'s Retry-After')
  t.ok(outcomes.every((o) => o.code === 'GW_UPSTREAM_AUTH_BACKOFF' && Number(o.retryAfter) >= 880))
  t.match(app.upstream.tokens.refreshState(), { state: 'backoff', reason: 'throttled' })
})

test('two replicas share one backoff: one login attempt per step for the deployment', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const sandbox = await startTestSandbox(t, { anonThrottleRate: '100000/hour' })
  const prefix = testKeyPrefix('login')
  const config = { ATLAS_PASSWORD: 'wrong-password', REDIS_KEY_PREFIX: prefix, UPSTREAM_LOGIN_BACKOFF_MS: 400, UPSTREAM_LOGIN_BACKOFF_MAX_MS: 400 }
  const a = await buildTestApp(t, { upstream: sandbox, config })
  const b = await buildTestApp(t, { upstream: sandbox, config })
  sandbox.expireToken('write')
  sandbox.resetCalls()
  const started = performance.now()
  // 40 concurrent misses over both replicas, then more in rounds while steps pass.
  const on = (i: number) => i % 2 === 0 ? { app: a.app, name: 'a' } : { app: b.app, name: 'b' }
  const outcomes: Array<Outcome & { detail?: string }> = await Promise.all(Array.from({ length: 40 }, (_, i) => coneOn(on(i).app, on(i).name, i)))
  // One login, unless the burst itself outlasted a backoff step (jittered: 200 ms at the least), as a
  // loaded CI machine once made it: then one more per step, as below.
  const burstMs = performance.now() - started
  const burstLogins = sandbox.calls.get('auth-token') ?? 0
  t.ok(burstLogins >= 1 && burstLogins <= maxAttempts(burstMs, 400, 400), `40 concurrent misses on 2 replicas in ${Math.round(burstMs)} ms: ${burstLogins} login attempt(s), one per backoff step`)
  for (let round = 0; round < 10; round++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    outcomes.push(...await Promise.all(Array.from({ length: 6 }, (_, i) => coneOn(on(i).app, on(i).name, 100 + round * 6 + i))))
  }
  const elapsed = performance.now() - started
  const logins = sandbox.calls.get('auth-token') ?? 0
  const bound = maxAttempts(elapsed, 400, 400)
  t.comment(`2 replicas, ${outcomes.length} misses in ${Math.round(elapsed)} ms → ${JSON.stringify(tally(outcomes))}; ${logins} login attempts (backoff allows ${bound})`)
  t.ok(logins <= bound, 'login attempts ≤ backoff steps')
  // Seen once in CI (the Sentinel matrix): one replica answered all its 50 misses 429 GW_QUOTA_EXHAUSTED.
  const other = outcomes.find((o) => o.code !== 'GW_UPSTREAM_AUTH_BACKOFF')
  t.ok(other === undefined, `every miss got the backoff${other === undefined ? '' : `; the first that did not: ${JSON.stringify(other)}`}`)
})

test('the password fixed: the next backoff step logs in and misses are served; attempts stayed within the steps', async (t) => {
  const sandbox = await startTestSandbox(t, { anonThrottleRate: '100000/hour' })
  const passwordFile = join(t.testdir(), 'password')
  writeFileSync(passwordFile, 'wrong-password\n')
  const base = 100
  const cap = 800
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_PASSWORD: '', ATLAS_PASSWORD_FILE: passwordFile, UPSTREAM_LOGIN_BACKOFF_MS: base, UPSTREAM_LOGIN_BACKOFF_MAX_MS: cap } })
  sandbox.expireToken('write')
  sandbox.resetCalls()
  const started = performance.now()
  const outcomes: Outcome[] = []
  let i = 0
  while (performance.now() - started < 1500) {
    outcomes.push(await cone(app, i++))
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const logins = sandbox.calls.get('auth-token') ?? 0
  const bound = maxAttempts(performance.now() - started, base, cap)
  t.comment(`wrong password, ${outcomes.length} misses over 1.5 s → ${JSON.stringify(tally(outcomes))}; ${logins} login attempts (backoff allows ${bound})`)
  t.ok(logins <= bound, 'login attempts ≤ backoff steps')
  t.ok(logins >= 2, 'the backoff let later steps try again')

  writeFileSync(passwordFile, `${sandbox.users.write?.password ?? ''}\n`)
  let last: Outcome | undefined
  await waitFor('a miss to be served after the password is fixed', async () => {
    last = await cone(app, i++)
    return last.status === 200
  }, { intervalMs: 20 })
  t.match(app.upstream.tokens.refreshState(), { state: 'ok', failures: 0 })
  t.equal(await metricValue(app, 'gateway_token_refresh_backoff_seconds', 'reason="none"'), 0)
})

test('the token health check never logs in: after the backoff is over, checks without requests call no auth-token/', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { useRedis: false, config: { ATLAS_PASSWORD: 'wrong-password', UPSTREAM_LOGIN_BACKOFF_MS: 100, UPSTREAM_LOGIN_BACKOFF_MAX_MS: 200 } })
  sandbox.expireToken('write')
  t.equal((await cone(app, 0)).code, 'GW_UPSTREAM_AUTH_BACKOFF', 'the login failed: logins back off')
  await waitFor('the login backoff to be over', () => app.upstream.tokens.refreshState().state === 'failing', { intervalMs: 20 })
  sandbox.resetCalls()
  for (let i = 0; i < 3; i++) await app.health.runChecks()
  t.equal(sandbox.calls.get('auth-token') ?? 0, 0, 'no login without requests (the checks made only the reachability ping)')
  const health = (await app.inject({ url: '/healthz' })).json()
  t.match(health.checks.token, { status: 'down', detail: 'no usable upstream token' }, 'the refused token is still reported unusable')
})

test('during the backoff the configured token, stale since an unattended login, is not sent again', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { useRedis: false, config: { UPSTREAM_LOGIN_BACKOFF_MS: 600_000 } })
  sandbox.expireToken('write')
  t.equal((await cone(app, 0)).status, 200, 'the configured token expired: an unattended login replaced it')
  sandbox.expireToken('write')
  sandbox.inject({ endpoint: 'auth-token', kind: 'throttle', retryAfterS: 3600, times: 5 })
  t.equal((await cone(app, 1)).code, 'GW_UPSTREAM_AUTH_BACKOFF', 'the new token expired too and the login was throttled')
  sandbox.resetCalls()
  const during: Outcome[] = []
  for (let i = 2; i < 5; i++) during.push(await cone(app, i))
  t.ok(during.every((o) => o.code === 'GW_UPSTREAM_AUTH_BACKOFF'), 'misses get the backoff')
  t.same(Object.fromEntries(sandbox.calls), {}, 'no upstream call during the backoff: the unchanged configured token is not tried')
})

test('a token without login credentials: token_refresh stays up but says nothing can refresh the token; readiness is untouched', async (t) => {
  const sandbox = await startTestSandbox(t)
  const passwordFile = join(t.testdir(), 'password')
  writeFileSync(passwordFile, `${sandbox.users.write?.password ?? ''}\n`)
  const cases = [
    ['only ATLAS_TOKEN', { ATLAS_USERNAME: '', ATLAS_PASSWORD: '' }, /no login credentials/],
    ['ATLAS_USERNAME without a password', { ATLAS_PASSWORD: '' }, /no login credentials/],
    ['ATLAS_USERNAME and ATLAS_PASSWORD', {}, undefined],
    ['ATLAS_USERNAME and ATLAS_PASSWORD_FILE', { ATLAS_PASSWORD: '', ATLAS_PASSWORD_FILE: passwordFile }, undefined]
  ] as const
  for (const [name, config, detail] of cases) {
    const { app } = await buildTestApp(t, { upstream: sandbox, useRedis: false, config })
    await app.health.runChecks()
    const check = (await app.inject({ url: '/healthz' })).json().checks.token_refresh
    t.comment(`${name}: ${JSON.stringify(check)}`)
    t.equal(check.status, 'up', `${name}: up (a static token is a legitimate deployment)`)
    if (detail === undefined) t.equal(check.detail, undefined, `${name}: no detail`)
    else t.match(check.detail, detail, `${name}: the detail says the token cannot be refreshed`)
    t.equal((await app.inject({ url: '/readyz' })).statusCode, 200, `${name}: ready`)
  }
})
