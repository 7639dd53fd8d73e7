// `npm run bench [-- --quick]`: runs the baselines and gateway scenarios of issue 8 on loopback, each
// server in its own pinned process, and writes bench/results/<date>[-quick].md and .json (the Markdown
// is printed too). A scenario that fails is reported as such; the others still run.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { emptyResult, med, type ScenarioResult } from './measure.js'
import { parseOptions } from './options.js'
import { machineBusy } from './proc-stats.js'
import { heapTable, readHeapProfile, summariseHeap } from './heap-summary.js'
import { profileTable, readProfile, summariseByFile, summariseInclusive, summariseProfile } from './profile-summary.js'
import { computeRatios, currentLoad, describeCode, describeMachine, ratioTable, renderMarkdown, type Report } from './report.js'
import { runB3Slow, runS3, runS5, startSlowSandbox } from './scenarios-miss.js'
import { runB3, runB4, runBaseline, runS1, runS1Encoded, runS2, runS4, runS6, runS7, type HitContext } from './scenarios-hit.js'
import { createBenchEnv, LOAD_CPU, profileDir, type BenchEnv } from './setup.js'

const ALL = ['S1', 'S1-GZIP', 'S1-BR', 'B1', 'B4', 'S2', 'B2', 'B3', 'S4', 'S6', 'S7', 'B3-SLOW', 'S3', 'S3-W0', 'S5']
// A ratio needs its baseline in the same run; B1, B2 and B4 serve the bytes S1 answered.
const NEEDS: Record<string, string[]> = {
  S1: ['B1', 'B4'], 'S1-GZIP': ['S1', 'B1'], 'S1-BR': ['S1', 'B1'], S2: ['B2', 'S1'], B1: ['S1'], B2: ['S1'], B4: ['S1'], S3: ['B3-SLOW'], 'S3-W0': ['B3-SLOW']
}

function selected (only: string[], isExact: boolean): Set<string> {
  if (only.length === 0) return new Set(ALL)
  const set = new Set(only)
  if (isExact) return set
  for (const id of only) for (const dep of NEEDS[id] ?? []) set.add(dep)
  return set
}

function progress (s: ScenarioResult): void {
  if (s.skipped !== undefined) {
    process.stderr.write(`[${s.id}] skipped: ${s.skipped}\n`)
    return
  }
  const f = (v: number | undefined, d = 2): string => (v === undefined ? '–' : v.toFixed(d))
  const extra = Object.entries(s.extra).map(([k, v]) => `${k}=${v}`).join(' ')
  process.stderr.write(`[${s.id}] ${f(med(s, 'rps'), 0)} req/s  p50 ${f(med(s, 'p50Ms'))} ms  p99 ${f(med(s, 'p99Ms'))} ms  ` +
    `cpu ${f(med(s, 'cpuMsPerReq'), 3)} ms/req  rss ${f(s.peakRssMb, 0)} MiB ${extra}\n`)
}

async function step (results: ScenarioResult[], want: Set<string>, id: string, title: string, run: () => Promise<ScenarioResult>): Promise<void> {
  if (!want.has(id.toUpperCase())) return
  process.stderr.write(`[${id}] ${title}…\n`)
  let result: ScenarioResult
  try {
    result = await run()
  } catch (err) {
    result = emptyResult(id, title, '')
    result.skipped = `failed: ${(err as Error).message.slice(0, 300)}`
  }
  results.push(result)
  progress(result)
}

async function runAll (env: BenchEnv, want: Set<string>): Promise<ScenarioResult[]> {
  const results: ScenarioResult[] = []
  const hitIds = ['S1', 'S1-GZIP', 'S1-BR', 'B1', 'B4', 'S2', 'B2', 'S4', 'S6', 'S7']
  if (hitIds.some((id) => want.has(id))) {
    const fast = await env.startSandbox({}, 1000, LOAD_CPU)
    const ctx: HitContext = { env, upstream: fast.info }
    try {
      await step(results, want, 'S1', 'object read, L1 hit', () => runS1(ctx))
      await step(results, want, 'S1-gzip', 'object read, L1 hit, gzip', () => runS1Encoded(ctx, 'gzip'))
      await step(results, want, 'S1-br', 'object read, L1 hit, brotli', () => runS1Encoded(ctx, 'br'))
      await step(results, want, 'B1', 'bare Fastify from memory', () => runBaseline(ctx, 'memory'))
      await step(results, want, 'B4', 'nginx proxy_cache hit', () => runB4(ctx))
      await step(results, want, 'S2', 'object read, L2 hit', () => runS2(ctx))
      await step(results, want, 'B2', 'bare Fastify from Redis', () => runBaseline(ctx, 'redis'))
      await step(results, want, 'S4', '1,000 cached ids by POST', () => runS4(ctx))
      await step(results, want, 'S6', 'filtered list read', () => runS6(ctx))
      await step(results, want, 'S7', 'compat object read', () => runS7(ctx))
    } finally {
      await fast.stop()
    }
  }
  await step(results, want, 'B3', 'sandbox alone', () => runB3(env))
  if (['B3-SLOW', 'S3', 'S3-W0'].some((id) => want.has(id))) {
    const slow = await startSlowSandbox(env)
    try {
      await step(results, want, 'B3-slow', 'slow sandbox alone', () => runB3Slow(env, slow))
      await step(results, want, 'S3', 'misses through the gateway', () => runS3(env, slow, 'S3'))
      await step(results, want, 'S3-w0', 'misses, batching window off', () => runS3(env, slow, 'S3-w0'))
    } finally {
      await slow.stop()
    }
  }
  await step(results, want, 'S5', 'NDJSON batch', () => runS5(env))
  return results
}

/** The profiles of one kind a scenario's gateways wrote (none when it did not run). */
function profileFiles (env: BenchEnv, id: string, ext: string): string[] {
  const dir = profileDir(env.opts, env.runId, id)
  try {
    return readdirSync(dir).filter((f) => f.endsWith(ext)).map((f) => join(dir, f))
  } catch {
    return []
  }
}

function profileSections (env: BenchEnv, profiled: string[]): string[] {
  const out: string[] = []
  for (const id of profiled) {
    for (const file of profileFiles(env, id, '.cpuprofile')) {
      const profile = readProfile(file)
      out.push(`### ${id}: ${file}`, '', 'Self time, top functions (share of busy time):', '', profileTable(summariseProfile(profile, 25)), '',
        'Self time by file or package:', '', profileTable(summariseByFile(profile, 12)), '',
        'Inclusive time of src/ functions (which step the time was spent for):', '', profileTable(summariseInclusive(profile, 20)), '')
    }
  }
  return out
}

/** --heap-profile: what a measured request allocated on the JS heap, per scenario (all its measured runs). */
function heapSections (env: BenchEnv, sampled: string[], results: ScenarioResult[]): string[] {
  const out: string[] = []
  for (const id of sampled) {
    const result = results.find((r) => r.id.toUpperCase() === id)
    const requests = (result?.runs ?? []).reduce((sum, r) => sum + r.requests, 0)
    for (const file of profileFiles(env, id, '.heapprofile')) {
      const { bytesPerRequest, sites } = summariseHeap(readHeapProfile(file), requests)
      out.push(`### ${id}: ${file}`, '', `${bytesPerRequest.toLocaleString('en-US')} bytes allocated on the JS heap a request (${requests.toLocaleString('en-US')} requests), by allocating function:`, '', heapTable(sites), '')
    }
  }
  return out
}

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  const opts = parseOptions(argv, process.env)
  const loadAtStart = currentLoad()
  const busyBefore = await machineBusy()
  // The children run the work tree as transpiled now (setup.ts), so this names what is measured.
  const code = describeCode()
  const env = await createBenchEnv(opts)
  const started = Date.now()
  const onSignal = (): void => { env.close().finally(() => process.exit(130)).catch(() => {}) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let results: ScenarioResult[]
  try {
    results = await runAll(env, selected(opts.only, opts.isExact))
  } finally {
    await env.close()
  }
  const busyAfter = await machineBusy()
  const mode = opts.isQuick
    ? `quick (${opts.repetitions} × ${opts.durationS} s after ${opts.warmupS} s warm-up)`
    : `full (${opts.repetitions} × ${opts.durationS} s after ${opts.warmupS} s warm-up; medians, noise = min–max over repetitions)`
  const report: Report = {
    machine: describeMachine(opts, env.generator.name, env.isPinned, argv, loadAtStart, {
      ...(busyBefore === undefined ? {} : { before: busyBefore }),
      ...(busyAfter === undefined ? {} : { after: busyAfter })
    }, code),
    mode: `${mode}; wall time ${Math.round((Date.now() - started) / 1000)} s`,
    scenarios: results,
    ratios: computeRatios(results, opts),
    notes: env.notes
  }
  const profiles = profileSections(env, opts.profile)
  const heaps = heapSections(env, opts.heapProfile.filter((id) => !opts.profile.includes(id)), results)
  const markdown = renderMarkdown(report) + (profiles.length === 0 ? '' : ['', '## CPU profiles (self time)', '', ...profiles].join('\n')) +
    (heaps.length === 0 ? '' : ['', '## JS heap allocations (sampled)', '', ...heaps].join('\n'))
  mkdirSync(opts.outDir, { recursive: true })
  const name = `${report.machine.date.slice(0, 10)}${opts.isQuick ? '-quick' : ''}`
  writeFileSync(join(opts.outDir, `${name}.md`), markdown)
  writeFileSync(join(opts.outDir, `${name}.json`), JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(markdown + '\n')
  process.stderr.write(`\n${ratioTable(report.ratios)}\n\nwrote ${join(opts.outDir, name)}.md and .json\n`)
}

await main()
