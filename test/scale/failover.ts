// A Redis failover under a steady load through three gateway replicas (in-process apps over real HTTP on
// loopback): the load runs, a Redis master is killed, and it runs on until requests succeed again. The
// caller says how to kill the master; this measures how long requests failed and checks what must hold
// throughout: no consumer past its request rate or daily units, the upstream budget never exceeded, the
// token refreshed at most once, no write applied twice (the sandbox's `received` log).
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { FIXTURE_IDS, listeningReplicas, sandboxPost, startTestSandbox } from '../helper.js'
import { consumersFile, makeConsumer, uniquePrefix } from '../consumer-helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'

export const LIMITS = {
  /** Requests per minute of the `rate` consumer (the run is shorter than a minute). */
  rate: 15,
  /** Daily units of the `units` consumer; each of its requests asks for 3 cached objects. */
  units: 15,
  /** The upstream budget per hour, for all replicas together (the writes spend it). */
  upstream: 30
}
// The load: WORKERS loops, each sending one request at a time, for at most MAX_RUN_MS (a bound, not a
// timing assertion); the kill comes after BEFORE_KILL_MS and the load goes on AFTER_RECOVERY_MS past
// the last failure.
const WORKERS = 6
const BEFORE_KILL_MS = 2500
const AFTER_RECOVERY_MS = 3000
const MAX_RUN_MS = 40_000
const PAUSE_MS = 20

interface Sample {
  kind: 'rate' | 'units' | 'miss' | 'write'
  startedAt: number
  endedAt: number
  status: number
  code?: string
}

export interface FailoverReport {
  /** From the kill to the end of the last request that failed (5xx or a transport error); 0 when none did. */
  failingForMs: number
  /** Requests that failed (5xx or transport error), of all sent. */
  failed: number
  sent: number
  /** What failed requests said (problem codes), for the report. */
  codes: Record<string, number>
}

async function replicas (t: Test, url: string) {
  const sandbox = await startTestSandbox(t)
  const consumers = {
    rate: makeConsumer('rate', { scopes: ['read'], rate: `${LIMITS.rate}/minute` }),
    units: makeConsumer('units', { scopes: ['read'], daily_objects: LIMITS.units }),
    miss: makeConsumer('miss', { scopes: ['read'] }),
    write: makeConsumer('write', { scopes: ['read', 'write:vra'] })
  }
  const config = {
    CONSUMERS_FILE: consumersFile(t, Object.values(consumers)),
    REDIS_KEY_PREFIX: uniquePrefix('failover'),
    REDIS_URL: url,
    // Production's bound, so a dead master is noticed as fast as it would be in service.
    REDIS_COMMAND_TIMEOUT_MS: 500,
    // Limits must hold while Redis cannot be asked: refuse then (open would serve uncounted).
    LIMITS_ON_REDIS_ERROR: 'closed' as const,
    UPSTREAM_RATE: `${LIMITS.upstream}/hour`
  }
  const { apps, bases } = await listeningReplicas(t, 3, { upstream: sandbox, config })
  return { sandbox, apps, bases, consumers }
}

/** Sends the load until `stop()` says so; every request's outcome is recorded. */
function runLoad (sandbox: Sandbox, bases: string[], consumers: Awaited<ReturnType<typeof replicas>>['consumers'], stop: () => boolean) {
  const samples: Sample[] = []
  // A few objects the load misses once each, then reads from the cache.
  const missIds = sandbox.ids().slice(40, 46).map(String)
  let next = 0
  let writes = 0
  async function one (): Promise<void> {
    const n = next++
    const base = bases[n % bases.length] as string
    const kind = (['rate', 'units', 'miss', 'write'] as const)[n % 4] as Sample['kind']
    const auth = { authorization: `Bearer ${consumers[kind].key}` }
    const startedAt = Date.now()
    let request: Promise<Response>
    if (kind === 'rate') request = fetch(`${base}/v1/objects/${FIXTURE_IDS.A}`, { headers: auth })
    else if (kind === 'units') request = fetch(`${base}/v1/objects?ids=${FIXTURE_IDS.A},${FIXTURE_IDS.B},${FIXTURE_IDS.C}`, { headers: auth })
    else if (kind === 'miss') request = fetch(`${base}/v1/objects/${missIds[n % missIds.length] as string}`, { headers: auth })
    else {
      // Each write is sent once, with a key and a score of its own: two rows with one score would be a
      // write applied twice.
      const i = writes++
      request = fetch(`${base}/v1/vra/scores`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': `failover-${i}` },
        body: JSON.stringify({ id: FIXTURE_IDS.E, preal: (i + 1) / 100_000 })
      })
    }
    try {
      const res = await request
      const text = await res.text()
      const code = res.status >= 500 ? (JSON.parse(text) as { code?: string }).code : undefined
      samples.push({ kind, startedAt, endedAt: Date.now(), status: res.status, ...(code === undefined ? {} : { code }) })
    } catch (err) {
      samples.push({ kind, startedAt, endedAt: Date.now(), status: 0, code: (err as Error).message })
    }
  }
  const workers = Array.from({ length: WORKERS }, async () => {
    while (!stop()) {
      await one()
      await sleep(PAUSE_MS)
    }
  })
  return { samples, done: Promise.all(workers) }
}

// A spent upstream budget is a refusal the gateway means (the budget holds), not a failure.
const isFailure = (s: Sample): boolean => s.status === 0 || (s.status >= 500 && s.code !== 'GW_UPSTREAM_BUDGET')

/**
 * Runs the scenario on REDIS_URL `url`; `kill` takes the master down (and resolves when it is dead),
 * `expireAt` is when the token expires (just before the kill, so its refresh meets the failover).
 */
export async function failover (t: Test, url: string, kill: () => Promise<void>): Promise<FailoverReport> {
  const { sandbox, apps, bases, consumers } = await replicas(t, url)
  // Warm: the three objects the `rate` and `units` consumers read are cached, the token is shared.
  // A Redis setup just started may still refuse a first command (seen twice in CI on a fresh Cluster: the
  // limits found Redis unavailable, 503 GW_UNAVAILABLE under the closed policy, until the health probe
  // found it back a second later). The warm-up waits that out; the failover under load is what is tested.
  const warmUp = async () => await fetch(`${bases[0] as string}/v1/objects?ids=${FIXTURE_IDS.A},${FIXTURE_IDS.B},${FIXTURE_IDS.C}`, { headers: { authorization: `Bearer ${consumers.miss.key}` } })
  let warm = await warmUp()
  let warmBody = await warm.text()
  for (let tries = 1; warm.status === 503 && warmBody.includes('GW_UNAVAILABLE') && tries < 50; tries++) {
    await sleep(200)
    warm = await warmUp()
    warmBody = await warm.text()
    if (warm.status === 200) t.comment(`warm-up read: 200 after ${tries} refusals (Redis just started)`)
  }
  // The problem's code says which part refused, should the warm-up fail.
  t.equal(warm.status, 200, `warm-up read${warm.status === 200 ? '' : `: ${warmBody.slice(0, 300)}`}`)
  const rowsBefore = (await scoreRows(sandbox)).length
  const startedAt = Date.now()
  let killedAt = Number.POSITIVE_INFINITY
  const load = runLoad(sandbox, bases, consumers, () => {
    const now = Date.now()
    if (now - startedAt > MAX_RUN_MS) return true
    if (now < killedAt + AFTER_RECOVERY_MS) return false
    const lastFailure = Math.max(0, ...load.samples.filter(isFailure).map((s) => s.endedAt))
    return now > Math.max(killedAt, lastFailure) + AFTER_RECOVERY_MS
  })
  await sleep(BEFORE_KILL_MS)
  sandbox.expireToken('write')
  killedAt = Date.now()
  await kill()
  await load.done
  await checkInvariants(t, sandbox, apps, load.samples, rowsBefore)
  const failures = load.samples.filter(isFailure)
  const codes: Record<string, number> = {}
  for (const f of failures) codes[f.code ?? String(f.status)] = (codes[f.code ?? String(f.status)] ?? 0) + 1
  const after = load.samples.filter((s) => s.startedAt > killedAt + Math.max(0, ...failures.map((f) => f.endedAt - killedAt)))
  t.ok(after.length > 0 && after.every((s) => !isFailure(s)), `requests succeed again after the failover (${after.length} after the last failure)`)
  return {
    failingForMs: failures.length === 0 ? 0 : Math.max(...failures.map((f) => f.endedAt)) - killedAt,
    failed: failures.length,
    sent: load.samples.length,
    codes
  }
}

async function scoreRows (sandbox: Sandbox): Promise<Array<{ preal: number | null }>> {
  const res = await sandboxPost(sandbox, 'vrascoreslist', { objects: FIXTURE_IDS.E }, sandbox.tokens.read)
  const rows = JSON.parse(res.text) as unknown
  if (!Array.isArray(rows)) throw new Error(`vrascoreslist answered ${res.status}: ${res.text.slice(0, 300)}`)
  return rows as Array<{ preal: number | null }>
}

async function checkInvariants (t: Test, sandbox: Sandbox, apps: FastifyInstance[], samples: Sample[], rowsBefore: number): Promise<void> {
  const ok = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind && s.status >= 200 && s.status < 300).length
  const sent = (kind: Sample['kind']) => samples.filter((s) => s.kind === kind).length
  t.ok(sent('rate') > LIMITS.rate, `the rate consumer asked for more than its limit (${sent('rate')} requests)`)
  t.ok(ok('rate') <= LIMITS.rate, `request rate never exceeded: ${ok('rate')} served of ${LIMITS.rate}/minute`)
  t.ok(sent('units') * 3 > LIMITS.units, `the units consumer asked for more than its daily units (${sent('units') * 3})`)
  t.ok(ok('units') * 3 <= LIMITS.units, `daily units never exceeded: ${ok('units') * 3} served of ${LIMITS.units}`)
  // auth-token/ is outside the budget; vrascoreslist/ is this test's own read of the rows.
  const upstream = [...sandbox.calls.entries()].filter(([endpoint]) => endpoint !== 'auth-token' && endpoint !== 'vrascoreslist').reduce((sum, [, n]) => sum + n, 0)
  t.ok(upstream <= LIMITS.upstream, `upstream budget never exceeded: ${upstream} calls of ${LIMITS.upstream}/hour (${JSON.stringify(Object.fromEntries(sandbox.calls))})`)
  t.ok((sandbox.calls.get('auth-token') ?? 0) <= 1, `the token refreshed at most once (${sandbox.calls.get('auth-token') ?? 0})`)
  // The rows the load added upstream (the sandbox's own rows for the object were there before); each
  // write carried a score of its own, so a score twice is a write applied twice.
  const added = (await scoreRows(sandbox)).slice(rowsBefore)
  const scores = added.map((r) => r.preal)
  t.equal(new Set(scores).size, scores.length, `no write applied twice (${scores.length} rows added, ${ok('write')} writes acknowledged, ${sent('write')} sent)`)
  t.ok(ok('write') <= scores.length, 'every acknowledged write was applied')
  // The replicas still answer their health check through the new master.
  for (const app of apps) t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)
}
