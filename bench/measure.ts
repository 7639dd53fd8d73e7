// One scenario's measurement: warm up, then repeat the measured run, reading the server's CPU time
// around each run and its peak RSS at the end. Results keep every repetition; the report takes medians.
import { cpuMs, peakRssMb } from './proc-stats.js'
import type { ClosedLoad, LoadGenerator, LoadRequest, LoadResult } from './load.js'
import { runOpenLoop, type OpenLoad } from './open-loop.js'

export interface RunStats extends LoadResult {
  /** Server CPU (user + system) per completed request, ms; undefined without /proc. */
  cpuMsPerReq?: number
}

export interface ScenarioResult {
  id: string
  title: string
  /** What was requested, e.g. `GET /v1/objects/{id}` with its settings. */
  detail: string
  loader?: string
  connections?: number
  rate?: number
  runs: RunStats[]
  peakRssMb?: number
  /** Scenario-specific numbers (ids/s, time to first byte, upstream calls, …). */
  extra: Record<string, number | string>
  skipped?: string
  notes: string[]
}

export function emptyResult (id: string, title: string, detail: string): ScenarioResult {
  return { id, title, detail, runs: [], extra: {}, notes: [] }
}

/** Keeps the highest peak over the processes a scenario used (one per repetition for S3). */
function notePeak (result: ScenarioResult, pid: number | undefined): void {
  const peak = pid === undefined ? undefined : peakRssMb(pid)
  if (peak !== undefined) result.peakRssMb = Math.max(result.peakRssMb ?? 0, peak)
}

async function withCpu (pid: number | undefined, run: () => Promise<LoadResult>): Promise<RunStats> {
  const before = pid === undefined ? undefined : cpuMs(pid)
  const result = await run()
  const after = pid === undefined ? undefined : cpuMs(pid)
  const cpuMsPerReq = before === undefined || after === undefined || result.requests === 0
    ? undefined
    : (after - before) / result.requests
  return { ...result, ...(cpuMsPerReq === undefined ? {} : { cpuMsPerReq }) }
}

/** Called around the measured repetitions (after the warm-up), e.g. to profile only those. */
export interface RunHooks { before: () => Promise<void>, after: () => Promise<void> }

export interface ClosedPlan {
  generator: LoadGenerator
  load: Omit<ClosedLoad, 'durationS'>
  warmupS: number
  durationS: number
  repetitions: number
  /** The process whose CPU and RSS are the server's. */
  pid?: number
  hooks?: RunHooks
}

export async function measureClosed (result: ScenarioResult, plan: ClosedPlan): Promise<ScenarioResult> {
  result.loader = plan.generator.name
  result.connections = plan.load.connections
  if (plan.warmupS > 0) await plan.generator.run({ ...plan.load, durationS: plan.warmupS })
  await plan.hooks?.before()
  for (let i = 0; i < plan.repetitions; i++) {
    result.runs.push(await withCpu(plan.pid, () => plan.generator.run({ ...plan.load, durationS: plan.durationS })))
  }
  await plan.hooks?.after()
  notePeak(result, plan.pid)
  return result
}

export interface OpenPlan {
  load: Omit<OpenLoad, 'durationS' | 'request'>
  /** Request i of repetition `rep` (rep -1 is the warm-up), so that each run can use fresh ids. */
  request: (rep: number, i: number) => LoadRequest
  warmupS: number
  durationS: number
  repetitions: number
  pid?: number
  hooks?: RunHooks
}

export async function measureOpen (result: ScenarioResult, plan: OpenPlan): Promise<ScenarioResult> {
  result.loader = 'open-loop (undici)'
  result.rate = plan.load.rate
  if (plan.warmupS > 0) await runOpenLoop({ ...plan.load, durationS: plan.warmupS, request: (i) => plan.request(-1, i) })
  await plan.hooks?.before()
  for (let rep = 0; rep < plan.repetitions; rep++) {
    result.runs.push(await withCpu(plan.pid, () => runOpenLoop({ ...plan.load, durationS: plan.durationS, request: (i) => plan.request(rep, i) })))
  }
  await plan.hooks?.after()
  notePeak(result, plan.pid)
  return result
}

export function median (values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

export function range (values: readonly number[]): [number, number] | undefined {
  if (values.length === 0) return undefined
  return [Math.min(...values), Math.max(...values)]
}

/** Median of one field over the runs. */
export function med (result: ScenarioResult, field: keyof RunStats): number | undefined {
  return median(result.runs.flatMap((r) => (r[field] === undefined ? [] : [r[field]])))
}
