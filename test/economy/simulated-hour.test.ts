// A simulated hour at UPSTREAM_RATE=100/hour, run in seconds on an injected clock: 20 consumers
// (hour-workload.ts) against the sandbox, a tick every simulated 10 s. It reports what the consumers
// got (share answered 2xx, the Age of what was served) and what it cost upstream (calls, by endpoint),
// and holds the gateway to two goals: at least 99 % of consumer requests answered 2xx, and at most 100
// upstream calls in the hour.
//
// Memory mode (no Redis): the app's clock (buildApp deps.now) then drives everything time-based that
// decides an answer: cache freshness and ages, L1 expiry, the service's predictions, the upstream
// budget's refill and the consumers' limit windows. (The Redis budget would refill on the Redis server's
// clock, in wall time.) The clock only moves between ticks; within a tick the requests due go out
// together, so object reads of one tick can share one batched objects/ call. That favours batching a
// little: requests spread over 10 real seconds would not all fall into one batching window.
// After each tick the test waits until the upstream is idle (background refreshes included) before the
// clock moves on, as a real hour would give those calls time to finish.
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { parseLossless } from '../../src/lib/json.js'
import type { Sandbox } from '../../src/sandbox/index.js'
import { buildTestApp, sandboxPost, startTestSandbox } from '../helper.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { CONSUMERS, CUSTOM_LIST, createHourWorkload, type Member, type SimRequest } from './hour-workload.js'

const SEED = 20261130
const TICK_S = 10
const HOUR_S = 3600
const SLICE_S = 600
// A UTC hour boundary, so the hourly limit windows cover exactly the simulated hour.
const START_MS = Date.UTC(2026, 0, 12, 9, 0, 0)
const UPSTREAM_RATE = '100/hour'
const GOAL_2XX_SHARE = 0.99
const GOAL_UPSTREAM_CALLS = 100
// The polled detection lists: facade name → upstream list id.
const POLLED_LISTS: Readonly<Record<string, number>> = { follow_up: 1, good: 2, eyeball: 4 }
const BATCH_WINDOW_MS = 10
// The default maximum staleness; an hour never reaches it, the assertion below guards the rule.
const MAX_STALE_S = 86_400

// Both goals were marked `todo` while the gateway missed them: the 2xx goal at 80.1 % (100 % since
// budget-aware staleness), the calls goal at 199, then 176 (the bucket starts full, so on its own it lets
// the first hour spend up to 200); it holds since the budget's pace (upstream/budget.ts).

async function listMembers (sandbox: Sandbox, listId: number): Promise<Member[]> {
  const rows = parseLossless((await sandboxPost(sandbox, 'objectlist', { objectlistid: String(listId) })).text) as Array<{ id: bigint, ra: number, dec: number }>
  return rows.map((r) => ({ id: String(r.id), ra: Number(r.ra), dec: Number(r.dec) }))
}

/** Waits until no upstream call is queued, running or about to be batched, and the call count holds. */
async function settle (app: FastifyInstance, sandbox: Sandbox): Promise<void> {
  let calls = -1
  for (;;) {
    await sleep(BATCH_WINDOW_MS + 5)
    const pool = app.metrics.live.pool?.()
    const busy = (pool === undefined ? 0 : pool.running + pool.pending + pool.queued) + app.upstream.objects.busy
    if (busy === 0 && sandbox.totalCalls() === calls) return
    calls = sandbox.totalCalls()
  }
}

/** Nearest-rank percentile of sorted numbers. */
function percentile (sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))] as number
}

/**
 * The prediction hit rate from /metrics: predicted records a consumer then read (gateway_predicted_read_total)
 * over records fetched ahead of any request (gateway_predicted_total), all sources; 'n/a' without them.
 */
function predictionHitRate (metricsText: string): string {
  const total = (name: string) => metricsText.split('\n')
    .filter((line) => line.startsWith(name + ' ') || line.startsWith(name + '{'))
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/).pop()), 0)
  const predicted = total('gateway_predicted_total')
  if (predicted === 0) return 'n/a'
  const read = total('gateway_predicted_read_total')
  return `${(read / predicted * 100).toFixed(1)} % (${read} of ${predicted})`
}

test('a simulated hour at 100 upstream calls an hour', async (t) => {
  const sandbox = await startTestSandbox(t)
  const lists: Record<string, Member[]> = {}
  for (const [name, id] of Object.entries(POLLED_LISTS)) lists[name] = await listMembers(sandbox, id)
  const consumers = Array.from({ length: CONSUMERS }, (_, i) => makeConsumer(`sim${String(i).padStart(2, '0')}`, i === CONSUMERS - 1
    ? { scopes: ['read', 'write:custom-lists'], lists: [CUSTOM_LIST] }
    : { scopes: ['read'] }))
  let clock = START_MS
  const { app } = await buildTestApp(t, {
    upstream: sandbox,
    useRedis: false,
    // The health checks' ping of the API root (no token, no budget) would add a call on a slow machine.
    config: { CONSUMERS_FILE: consumersFile(t, consumers), UPSTREAM_RATE, UPSTREAM_BATCH_WINDOW_MS: BATCH_WINDOW_MS, LOG_LEVEL: 'warn', HEALTH_CHECK_INTERVAL_MS: 3_600_000, CACHE_MAX_STALE_S: MAX_STALE_S },
    deps: { now: () => clock }
  })
  const workload = createHourWorkload({ seed: SEED, tickS: TICK_S, lists })
  sandbox.resetCalls()
  t.comment(`seed ${SEED}; ${HOUR_S / TICK_S} ticks of ${TICK_S} s; UPSTREAM_RATE=${UPSTREAM_RATE}; memory mode (no Redis), injected clock`)

  const statuses = new Map<string, number>()
  const cacheStates = new Map<string, number>()
  const byKind = new Map<string, { sent: number, ok: number }>()
  const ages: number[] = []
  const agesByKind = new Map<string, number[]>()
  let sent = 0
  let ok = 0
  const send = async (request: SimRequest) => {
    const res = await app.inject({ method: request.method, url: request.url, headers: { authorization: `Bearer ${consumers[request.consumer]?.key ?? ''}` } })
    const isOk = res.statusCode >= 200 && res.statusCode < 300
    sent++
    if (isOk) ok++
    const kind = byKind.get(request.kind) ?? { sent: 0, ok: 0 }
    kind.sent++
    if (isOk) kind.ok++
    byKind.set(request.kind, kind)
    const code = isOk ? '' : ` ${String((res.json() as { code?: string }).code)}`
    statuses.set(`${res.statusCode}${code}`, (statuses.get(`${res.statusCode}${code}`) ?? 0) + 1)
    const xCache = res.headers['x-cache']
    if (typeof xCache === 'string') cacheStates.set(xCache, (cacheStates.get(xCache) ?? 0) + 1)
    const age = res.headers.age
    if (isOk && typeof age === 'string') {
      ages.push(Number(age))
      agesByKind.set(request.kind, [...(agesByKind.get(request.kind) ?? []), Number(age)])
    }
    workload.answered({ request, status: res.statusCode, body: res.body })
  }

  // Upstream calls per 10 simulated minutes: the cold start, then the steady state.
  const callsPerSlice: number[] = []
  const ticksPerSlice = SLICE_S / TICK_S
  for (let tick = 0; tick < HOUR_S / TICK_S; tick++) {
    clock = START_MS + tick * TICK_S * 1000
    if (tick > 0 && tick % ticksPerSlice === 0) callsPerSlice.push(sandbox.totalCalls() - callsPerSlice.reduce((a, b) => a + b, 0))
    const due = workload.requests(tick)
    if (due.length === 0) continue
    await Promise.all(due.map(send))
    await settle(app, sandbox)
  }

  callsPerSlice.push(sandbox.totalCalls() - callsPerSlice.reduce((a, b) => a + b, 0))
  ages.sort((a, b) => a - b)
  const share = ok / sent
  const upstreamCalls = sandbox.totalCalls()
  const metricsText = (await app.inject({ url: '/metrics' })).body
  const hitRate = predictionHitRate(metricsText)
  const fmt = (m: Map<string, unknown>) => [...m].map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ')
  t.comment(`consumer requests: ${sent}, answered 2xx: ${ok} (${(share * 100).toFixed(1)} %)`)
  t.comment(`by kind: ${fmt(byKind)}`)
  t.comment(`statuses: ${fmt(statuses)}`)
  t.comment(`X-Cache: ${fmt(cacheStates)}`)
  t.comment(`age of what was served (s): median ${percentile(ages, 50)}, 95th percentile ${percentile(ages, 95)}, max ${ages.at(-1) ?? 'n/a'} (${ages.length} answers with Age)`)
  t.comment(`age by kind (s, median/95th): ${[...agesByKind].map(([k, a]) => { a.sort((x, y) => x - y); return `${k} ${percentile(a, 50)}/${percentile(a, 95)}` }).join(', ')}`)
  t.comment(`upstream calls: ${upstreamCalls} (${fmt(sandbox.calls)}); per ${SLICE_S / 60} minutes: ${callsPerSlice.join(', ')}`)
  t.comment(`prediction hit rate: ${hitRate}`)

  t.ok(share >= GOAL_2XX_SHARE, `consumer requests answered 2xx: ${(share * 100).toFixed(1)} % (goal ≥ ${GOAL_2XX_SHARE * 100} %)`)
  t.ok(upstreamCalls <= GOAL_UPSTREAM_CALLS, `upstream calls in the hour: ${upstreamCalls} (goal ≤ ${GOAL_UPSTREAM_CALLS})`)
  t.ok(ages.every((age) => age <= MAX_STALE_S), `nothing served older than CACHE_MAX_STALE_S (${MAX_STALE_S} s): the oldest was ${ages.at(-1) ?? 'n/a'} s`)
  t.notOk([...statuses.keys()].some((s) => s.startsWith('500')), 'no consumer request ended in an internal error')
  const writeCalls = (sandbox.calls.get('objectgroups') ?? 0) + (sandbox.calls.get('objectgroupsdelete') ?? 0)
  t.equal(writeCalls, byKind.get('write')?.sent, 'every write went upstream, one call each, whatever the pace')
})
