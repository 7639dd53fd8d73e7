// Miss scenarios against a sandbox with realistic latency (50 ms ± 10 ms), open loop at a fixed rate
// with a distinct id per request so that every request misses: the sandbox alone (B3-slow), the
// gateway as configured by default (S3: the bench's unlimited UPSTREAM_RATE earns a call every few
// microseconds, so the id-batching window, capped at that, is 0) and with the window set to 0 and more
// upstream connections (S3-w0, the pipeline's own cost). Then S5, a 50,000-id NDJSON batch, cold and then cached.
import type { Child } from './children.js'
import { expectStatus, probe, timeStream } from './http-probe.js'
import type { LoadRequest } from './load.js'
import { emptyResult, measureOpen, type ScenarioResult } from './measure.js'
import { runOpenLoop } from './open-loop.js'
import { cpuMs, peakRssMb } from './proc-stats.js'
import { LOAD_CPU, recordMemory, type BenchEnv, type SandboxInfo } from './setup.js'

export const SLOW_LATENCY_MS = 50
export const SLOW_JITTER_MS = 10
// The default BODY_LIMIT_BYTES (1 MiB) is below a 50,000-id body (~1.1 MB); S5 raises it and says so.
const S5_BODY_LIMIT = String(4 * 1024 * 1024)
const S3_W0_CONNECTIONS = '128'
// Seconds of real misses before the measured runs' own warm-up, so that the gateway's hot paths are
// compiled (see prewarm).
const PREWARM_S = 10

interface Calls { objects: number, total: number }
interface SumCount { sum: number, count: number }
interface MissPhases { wait: SumCount, exchange: SumCount }

/** Mean in ms of what a metric observed between two snapshots (seconds summed), or undefined. */
function meanMs (a: SumCount, b: SumCount): number | undefined {
  const n = b.count - a.count
  return n > 0 ? Math.round(((b.sum - a.sum) / n) * 10000) / 10 : undefined
}

// Building a record costs the sandbox ~0.5 ms of CPU on the load core, which would count as gateway
// latency; so every id the miss runs use is built once before measuring, and the sandbox keeps them all
// (recordCache). Every request of a run is for an id the gateway has never seen, so it is a miss.
const PREBUILD_CHUNK = 1000

/** Disjoint ids: the gateway's prewarm, the measured runs' warm-up, and one slice per repetition. */
interface MissIds { prewarm: string[], warm: string[], measured: string[][] }

function missIdCounts (opts: BenchEnv['opts']): { prewarm: number, warm: number, measured: number, total: number } {
  const prewarm = Math.round(opts.missRate * PREWARM_S)
  const warm = Math.round(opts.missRate * opts.missWarmupS)
  const measured = Math.round(opts.missRate * opts.missDurationS)
  return { prewarm, warm, measured, total: prewarm + warm + measured * opts.repetitions }
}

function missIds (env: BenchEnv, ids: readonly string[]): MissIds {
  const n = missIdCounts(env.opts)
  if (n.total > ids.length) throw new Error(`the miss runs need ${n.total} distinct ids; the sandbox reported ${ids.length}`)
  const measured: string[][] = []
  for (let rep = 0, at = n.prewarm + n.warm; rep < env.opts.repetitions; rep++, at += n.measured) measured.push(ids.slice(at, at + n.measured))
  return { prewarm: ids.slice(0, n.prewarm), warm: ids.slice(n.prewarm, n.prewarm + n.warm), measured }
}

/** Request i of a run: the warm-up (rep -1) and each measured run draw from their own ids. */
function idOf (ids: MissIds, rep: number, i: number): string {
  const list = (rep < 0 ? ids.warm : ids.measured[rep]) ?? []
  return list[i % list.length] ?? ''
}

export async function startSlowSandbox (env: BenchEnv): Promise<Child<SandboxInfo>> {
  const count = missIdCounts(env.opts).total
  const sandbox = await env.startSandbox({ objects: count, recordCache: count, latencyMs: SLOW_LATENCY_MS, jitterMs: SLOW_JITTER_MS }, count, LOAD_CPU)
  for (let i = 0; i < sandbox.info.ids.length; i += PREBUILD_CHUNK) {
    const chunk = sandbox.info.ids.slice(i, i + PREBUILD_CHUNK)
    const reply = await probe(sandbox.info.origin, {
      method: 'POST',
      path: `${new URL(sandbox.info.baseUrl).pathname}objects/`,
      headers: { authorization: `Token ${sandbox.info.tokens.read}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `objects=${chunk.join(',')}`
    })
    expectStatus(reply, 200, 'prebuilding the slow sandbox\'s records')
  }
  return sandbox
}

/**
 * A fresh process has not compiled its hot paths yet: V8 optimises a function only once it has run
 * often, and a miss runs hundreds of functions (auth, limits, cache lookups, batching, the upstream
 * call, splitting the reply, the stores, rendering). Warmed by 3 s of misses on unknown ids (which end in
 * a 404 and skip the record paths), the gateway was still compiling through the measured runs: 649
 * TurboFan optimisations in its ~10 s of load, still 30-50 a second in its last seconds (--trace-opt),
 * and 20-30 % of its core in the compiler (perf). So it first serves PREWARM_S seconds of real misses,
 * at the measured rate, on ids of its own.
 */
async function prewarm (env: BenchEnv, origin: string, headers: Record<string, string>, ids: readonly string[]): Promise<void> {
  await runOpenLoop({
    origin,
    rate: env.opts.missRate,
    durationS: PREWARM_S,
    request: (i) => ({ method: 'GET', path: `/v1/objects/${ids[i % ids.length] ?? ''}`, headers })
  })
}

function openPlan (env: BenchEnv, origin: string, pid: number, repetitions: number, request: (rep: number, i: number) => LoadRequest) {
  const { opts } = env
  return { load: { origin, rate: opts.missRate }, request, warmupS: opts.missWarmupS, durationS: opts.missDurationS, repetitions, pid }
}

export async function runB3Slow (env: BenchEnv, slow: Child<SandboxInfo>): Promise<ScenarioResult> {
  const base = new URL(slow.info.baseUrl).pathname
  const result = emptyResult('B3-slow', `the sandbox alone, ${SLOW_LATENCY_MS} ms ± ${SLOW_JITTER_MS} ms`, `GET ${base}objects/?objects={distinct id}`)
  const ids = missIds(env, slow.info.ids)
  const headers = { authorization: `Token ${slow.info.tokens.read}`, accept: 'application/json' }
  const request = (rep: number, i: number): LoadRequest => ({ method: 'GET', path: `${base}objects/?objects=${idOf(ids, rep, i)}`, headers })
  await measureOpen(result, openPlan(env, slow.info.origin, slow.pid, env.opts.repetitions, request))
  result.notes.push('CPU and RSS columns are the sandbox\'s (it shares the load core)')
  return result
}

export async function runS3 (env: BenchEnv, slow: Child<SandboxInfo>, variant: 'S3' | 'S3-w0'): Promise<ScenarioResult> {
  const overrides: Record<string, string> = variant === 'S3-w0' ? { UPSTREAM_BATCH_WINDOW_MS: '0', UPSTREAM_CONNECTIONS: S3_W0_CONNECTIONS } : {}
  const title = variant === 'S3'
    ? 'object read, every request a miss to the slow sandbox (defaults; no batching window is worth waiting at an unlimited UPSTREAM_RATE)'
    : `as S3 with UPSTREAM_BATCH_WINDOW_MS=0, UPSTREAM_CONNECTIONS=${S3_W0_CONNECTIONS}`
  const result = emptyResult(variant, title, 'GET /v1/objects/{distinct id}')
  const ids = missIds(env, slow.info.ids)
  const headers = { authorization: `Bearer ${env.key}` }
  const request = (rep: number, i: number): LoadRequest => ({ method: 'GET', path: `/v1/objects/${idOf(ids, rep, i)}`, headers })
  let calls = 0
  // One gateway for the repetitions: each draws ids it has never seen, so every request is still a miss.
  const gateway = await env.startGateway(variant, slow.info, overrides)
  try {
    await prewarm(env, gateway.info.origin, headers, ids.prewarm)
    const profiler = env.profiler(variant, gateway)
    // The gateway's own account of the measured runs: ids' wait for their call, and the exchanges.
    let start: MissPhases | undefined
    let end: MissPhases | undefined
    const hooks = {
      before: async () => { await profiler?.before(); start = await gateway.ask<MissPhases>({ type: 'miss-phases' }) },
      after: async () => { end = await gateway.ask<MissPhases>({ type: 'miss-phases' }); await profiler?.after() }
    }
    const before = await slow.ask<Calls>({ type: 'calls' })
    await measureOpen(result, { ...openPlan(env, gateway.info.origin, gateway.pid, env.opts.repetitions, request), hooks })
    calls = (await slow.ask<Calls>({ type: 'calls' })).objects - before.objects
    if (start !== undefined && end !== undefined) {
      const wait = meanMs(start.wait, end.wait)
      const exchange = meanMs(start.exchange, end.exchange)
      if (wait !== undefined) result.extra.objects_wait_mean_ms = wait
      if (exchange !== undefined) result.extra.objects_exchange_mean_ms = exchange
    }
    await recordMemory(result, gateway)
  } finally {
    await gateway.stop()
  }
  const requests = ids.warm.length + ids.measured.reduce((n, list) => n + list.length, 0)
  result.extra.upstream_calls_per_1000_requests = Math.round((calls / Math.max(1, requests)) * 1000)
  if (Object.keys(overrides).length > 0) result.notes.push(`settings: ${Object.entries(overrides).map(([k, v]) => `${k}=${v}`).join(', ')}`)
  result.notes.push(`one gateway for all repetitions, warmed by ${PREWARM_S} s of real misses (its hot paths compiled) and ${env.opts.missWarmupS} s more; every measured id is one it has never seen`)
  return result
}

// Before S5 streams, single reads of other objects fill L1 (CACHE_MAX_BYTES, 64 MiB by default) as a
// replica that has served traffic for a while holds it: the peak is then measured on a full L1, not on an
// empty one that the stream alone would fill. 4,000 records of the bench sandbox are more than 64 MiB.
const S5_L1_FILL_IDS = 4000
const S5_L1_FILL_BATCH = 100

export async function runS5 (env: BenchEnv): Promise<ScenarioResult> {
  const n = env.opts.ndjsonIds
  const result = emptyResult('S5', `NDJSON batch of ${n.toLocaleString('en-US')} ids, cold then cached, L1 full of other objects`, 'POST /v1/objects/query (Accept: application/x-ndjson)')
  const sandbox = await env.startSandbox({ objects: n + S5_L1_FILL_IDS }, n + S5_L1_FILL_IDS, LOAD_CPU)
  try {
    const ids = sandbox.info.ids.slice(0, n)
    const hot = sandbox.info.ids.slice(n, n + S5_L1_FILL_IDS)
    const req: LoadRequest = {
      method: 'POST',
      path: '/v1/objects/query',
      headers: { authorization: `Bearer ${env.key}`, 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ ids })
    }
    const gateway = await env.startGateway('S5', sandbox.info, { BODY_LIMIT_BYTES: S5_BODY_LIMIT })
    try {
      const small = await probe(gateway.info.origin, { ...req, body: JSON.stringify({ ids: ids.slice(0, 10) }) })
      expectStatus(small, 200, 'S5 check')
      for (let i = 0; i < hot.length; i += S5_L1_FILL_BATCH) {
        const fill = await probe(gateway.info.origin, { method: 'GET', path: `/v1/objects?ids=${hot.slice(i, i + S5_L1_FILL_BATCH).join(',')}`, headers: { authorization: `Bearer ${env.key}` } })
        expectStatus(fill, 200, 'S5 L1 fill')
      }
      result.extra.l1_fill_ids = hot.length
      result.extra.l1_fill_rss_mib = round(peakRssMb(gateway.pid) ?? 0)
      const hooks = env.profiler('S5', gateway)
      await hooks?.before()
      for (const phase of ['cold', 'warm'] as const) {
        const cpu0 = cpuMs(gateway.pid)
        const t = await timeStream(gateway.info.origin, req)
        const cpu1 = cpuMs(gateway.pid)
        if (t.status !== 200) throw new Error(`S5 ${phase}: status ${t.status}`)
        if (t.lastLine.startsWith('{"error"')) result.notes.push(`${phase} stream ended with ${t.lastLine.slice(0, 200)}`)
        result.extra[`${phase}_ttfb_ms`] = round(t.ttfbMs)
        result.extra[`${phase}_total_ms`] = round(t.totalMs)
        result.extra[`${phase}_lines`] = t.lines
        result.extra[`${phase}_mb`] = round(t.bytes / 1048576)
        if (cpu0 !== undefined && cpu1 !== undefined) result.extra[`${phase}_cpu_ms`] = round(cpu1 - cpu0)
        // VmHWM so far: after the cold phase, the peak of loading; after the warm one, of both.
        const peak = peakRssMb(gateway.pid)
        if (peak !== undefined) result.extra[`${phase}_peak_rss_mib`] = round(peak)
      }
      await hooks?.after()
      await recordMemory(result, gateway)
      const peak = peakRssMb(gateway.pid)
      if (peak !== undefined) result.peakRssMb = peak
      result.notes.push(`BODY_LIMIT_BYTES=${S5_BODY_LIMIT}: the default 1 MiB refuses a ${n.toLocaleString('en-US')}-id body (${req.body?.length ?? 0} bytes)`)
    } finally {
      await gateway.stop()
    }
  } finally {
    await sandbox.stop()
  }
  return result
}

function round (x: number): number {
  return Math.round(x * 10) / 10
}
