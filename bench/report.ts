// The report: one row per scenario (medians, with min–max over the repetitions as the noise), the
// ratios of issue 8 against their targets, and the scenario details; as Markdown and as JSON.
import { spawnSync } from 'node:child_process'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { med, range, type ScenarioResult } from './measure.js'
import type { BenchOptions } from './options.js'

// Issue 14's S5 target, 300 MB, in the MiB the RSS is measured in.
const S5_TARGET_MIB = 300e6 / 2 ** 20

/** The default in-process cache budget (CACHE_MAX_BYTES), part of the RSS target. */
const L1_BUDGET_MIB = 64
const GATEWAY_BASE_RSS_MIB = 150
/** The S5 target is stated for 50,000 ids; quick mode streams fewer. */
const FULL_NDJSON_IDS = 50000

export interface Ratio {
  name: string
  value?: number
  unit: string
  target: string
  /** undefined: informational, or not measured. */
  isPass?: boolean
  note?: string
}

export interface Machine {
  date: string
  cpu: string
  cores: number
  memoryGiB: number
  node: string
  kernel: string
  loader: string
  pinning: string
  command: string
  /** 1-minute load average when the run started and ended: other work on the machine skews every number. */
  loadAverage: { start: number, end?: number }
  /** Share of all cores busy with other work just before and just after the run (/proc/stat, 1 s each). */
  otherWork: { before?: number, after?: number }
  /** The code measured: HEAD, and whether src/ had uncommitted changes (children run the work tree). */
  code: string
}

export interface Report { machine: Machine, mode: string, scenarios: ScenarioResult[], ratios: Ratio[], notes: string[] }

export function describeMachine (
  opts: BenchOptions, loader: string, isPinned: boolean, argv: string[], loadAtStart: number, otherWork: Machine['otherWork'], code: string
): Machine {
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kernel: release(),
    loader,
    pinning: isPinned ? 'server under test on core 0, load generator + harness + upstream sandbox on core 1 (taskset); Redis unpinned' : 'none',
    command: `npm run bench${argv.length > 0 ? ' -- ' + argv.join(' ') : ''}`,
    loadAverage: { start: loadAtStart, end: currentLoad() },
    otherWork,
    code
  }
}

function find (scenarios: ScenarioResult[], id: string): ScenarioResult | undefined {
  const s = scenarios.find((x) => x.id === id)
  return s === undefined || s.skipped !== undefined || s.runs.length + Object.keys(s.extra).length === 0 ? undefined : s
}

function ratio (name: string, value: number | undefined, unit: string, target: string, test?: (v: number) => boolean, note?: string): Ratio {
  const r: Ratio = { name, unit, target }
  if (value !== undefined && Number.isFinite(value)) {
    r.value = value
    if (test !== undefined) r.isPass = test(value)
  }
  if (note !== undefined) r.note = note
  return r
}

function quotient (a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b
}

function difference (a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a - b
}

export function computeRatios (scenarios: ScenarioResult[], opts: BenchOptions): Ratio[] {
  const get = (id: string) => find(scenarios, id)
  const rps = (id: string) => { const s = get(id); return s === undefined ? undefined : med(s, 'rps') }
  const p = (id: string, f: 'p50Ms' | 'p99Ms') => { const s = get(id); return s === undefined ? undefined : med(s, f) }
  const rssOf = (ids: string[]) => {
    const values = ids.flatMap((id) => { const v = get(id)?.peakRssMb; return v === undefined ? [] : [v] })
    return values.length === 0 ? undefined : Math.max(...values)
  }
  const rssLimit = GATEWAY_BASE_RSS_MIB + L1_BUDGET_MIB
  const ratios = [
    // Issue 14's targets: S1/B1 ≥ 0.60 (goal 0.80), S2/B2 ≥ 0.60, S1's p99 within twice B1's in the same
    // run, and at most 2 ms added to a miss's p50 at 500 misses/s (the default --miss-rate).
    ratio('S1 / B1 req/s', quotient(rps('S1'), rps('B1')), '×', '≥ 0.60 (goal 0.80)', (v) => v >= 0.6),
    ratio('S2 / B2 req/s', quotient(rps('S2'), rps('B2')), '×', '≥ 0.60', (v) => v >= 0.6),
    ratio(`S1 p99 / B1 p99 at ${opts.connections} connections`, quotient(p('S1', 'p99Ms'), p('B1', 'p99Ms')), '×', '≤ 2 ×', (v) => v <= 2),
    ratio(`S3 added latency over B3-slow at ${opts.missRate}/s, p50`, difference(p('S3', 'p50Ms'), p('B3-slow', 'p50Ms')), 'ms', '≤ 2 ms', (v) => v <= 2),
    ratio('S3 added latency over B3-slow, p99 (information)', difference(p('S3', 'p99Ms'), p('B3-slow', 'p99Ms')), 'ms', 'report'),
    ratio(`S3-w0 added latency at ${opts.missRate}/s, p50 (batching window off)`, difference(p('S3-w0', 'p50Ms'), p('B3-slow', 'p50Ms')), 'ms', '≤ 2 ms', (v) => v <= 2),
    ratio('S3-w0 added latency, p99 (information)', difference(p('S3-w0', 'p99Ms'), p('B3-slow', 'p99Ms')), 'ms', 'report'),
    opts.ndjsonIds >= FULL_NDJSON_IDS
      // The target is in MB (10^6 bytes), the measurement in MiB: 300 MB is 286.1 MiB.
      ? ratio('S5 peak RSS', get('S5')?.peakRssMb, 'MiB', '≤ 300 MB (286.1 MiB)', (v) => v <= S5_TARGET_MIB)
      : ratio(`S5 peak RSS (${opts.ndjsonIds.toLocaleString('en-US')} ids: not judged)`, get('S5')?.peakRssMb, 'MiB', '≤ 300 MB (286.1 MiB) at 50,000 ids'),
    ratio('gateway peak RSS under S1–S4', rssOf(['S1', 'S2', 'S3', 'S3-w0', 'S4']), 'MiB', `≤ ${rssLimit} MiB (150 + L1 ${L1_BUDGET_MIB} MiB)`, (v) => v <= rssLimit),
    ratio('S1 / B4 req/s (information)', quotient(rps('S1'), rps('B4')), '×', 'report'),
    ratio('S1-gzip / S1 req/s (information: gzip from the memo)', quotient(rps('S1-gzip'), rps('S1')), '×', 'report'),
    ratio('S1-br / S1 req/s (information: brotli from the memo)', quotient(rps('S1-br'), rps('S1')), '×', 'report')
  ]
  const s3 = get('S3')
  if (s3 !== undefined) {
    const cpu = med(s3, 'cpuMsPerReq')
    ratios.push(ratio('S3 gateway CPU per miss (information)', cpu, 'ms', 'report'))
  }
  return ratios
}

const fmt = (v: number | undefined, digits = 2): string => (v === undefined ? '–' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits))

function noise (s: ScenarioResult, field: 'rps' | 'p99Ms'): string {
  if (s.runs.length < 2) return '–'
  const r = range(s.runs.map((x) => x[field]))
  return r === undefined ? '–' : `${fmt(r[0], field === 'rps' ? 0 : 2)}–${fmt(r[1], field === 'rps' ? 0 : 2)}`
}

export function scenarioTable (scenarios: ScenarioResult[]): string {
  const rows = scenarios.map((s) => {
    if (s.skipped !== undefined) return `| ${s.id} | ${s.title} | skipped: ${s.skipped} | | | | | | |`
    const load = s.rate === undefined ? `c=${s.connections ?? '–'}` : `${s.rate}/s open`
    const broken = s.runs.some((r) => r.non2xx > 0 || r.errors > 0) ? ' ⚠ errors' : ''
    return `| ${s.id} | ${s.title}${broken} | ${load} | ${fmt(med(s, 'rps'), 0)} | ${fmt(med(s, 'p50Ms'))} | ${fmt(med(s, 'p99Ms'))} | ${fmt(med(s, 'cpuMsPerReq'), 3)} | ${fmt(s.peakRssMb, 0)} | ${noise(s, 'rps')} / ${noise(s, 'p99Ms')} |`
  })
  return [
    '| id | scenario | load | req/s | p50 ms | p99 ms | CPU ms/req | peak RSS MiB | noise: req/s / p99 ms (min–max) |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows
  ].join('\n')
}

export function ratioTable (ratios: Ratio[]): string {
  const rows = ratios.map((r) => {
    const value = r.value === undefined ? 'not measured' : `${fmt(r.value)} ${r.unit}`
    const verdict = r.isPass === undefined ? (r.value === undefined ? '–' : 'info') : r.isPass ? 'pass' : '**FAIL**'
    return `| ${r.name} | ${value} | ${r.target} | ${verdict} |`
  })
  return ['| ratio | measured | target | result |', '| --- | ---: | --- | --- |', ...rows].join('\n')
}

function details (scenarios: ScenarioResult[]): string {
  const lines: string[] = []
  for (const s of scenarios) {
    const extra = Object.entries(s.extra).map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v, 1) : v}`)
    const parts = [`\`${s.detail}\``, ...extra, ...s.notes]
    if (s.runs.some((r) => r.non2xx > 0 || r.errors > 0)) parts.push(`errors: ${s.runs.map((r) => `${r.non2xx} non-2xx, ${r.errors} socket`).join('; ')}`)
    lines.push(`- **${s.id}**: ${parts.join('; ')}`)
  }
  return lines.join('\n')
}

/** HEAD's short hash, marked when src/ differs from it (read-only git calls), taken when the run starts. */
export function describeCode (): string {
  const git = (args: string[]): string => {
    const r = spawnSync('git', args, { encoding: 'utf8' })
    return r.status === 0 ? r.stdout.trim() : ''
  }
  const head = git(['rev-parse', '--short', 'HEAD'])
  if (head === '') return 'unknown'
  return git(['status', '--porcelain', '--', 'src']) === '' ? head : `${head} + uncommitted changes in src/`
}

/** The 1-minute load average, rounded. */
export function currentLoad (): number {
  return Math.round((loadavg()[0] ?? 0) * 100) / 100
}

// Above this share of all cores busy with other work, the report flags its numbers as noisy.
const BUSY_SHARE = 0.1

function busy (m: Machine): boolean {
  return Math.max(m.otherWork.before ?? 0, m.otherWork.after ?? 0) > BUSY_SHARE
}

const pct = (share: number | undefined): string => (share === undefined ? '–' : `${Math.round(share * 100)} %`)

export function renderMarkdown (report: Report): string {
  const m = report.machine
  return [
    `# atlas-gateway benchmark, ${m.date.slice(0, 10)}`,
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}. Load: ${m.loader}. Pinning: ${m.pinning}.`,
    `Mode: ${report.mode}. Command: \`${m.command}\`. Code: ${m.code}.`,
    `Other work on the machine (share of all cores busy while the bench ran nothing): ${pct(m.otherWork.before)} before the run, ` +
      `${pct(m.otherWork.after)} after it${busy(m) ? ': **the machine was shared, so numbers are pessimistic and noisy**' : ''}. ` +
      `Load average (1 min) ${m.loadAverage.start} before, ${m.loadAverage.end ?? '–'} at the end.`,
    '',
    '## Ratios',
    '',
    ratioTable(report.ratios),
    '',
    '## Scenarios',
    '',
    scenarioTable(report.scenarios),
    '',
    'CPU ms/req is the server process\'s user+system time over the measured runs divided by the requests it answered; peak RSS is its VmHWM (a fresh process per scenario).',
    '',
    '## Details',
    '',
    details(report.scenarios),
    ...(report.notes.length === 0 ? [] : ['', '## Notes', '', ...report.notes.map((n) => `- ${n}`)]),
    ''
  ].join('\n')
}
