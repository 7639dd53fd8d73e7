// Summarises a V8 .cpuprofile (node --cpu-prof, or the inspector's Profiler): self time per function,
// highest first, as a share of the time the process was busy (idle excluded), so a run can say what
// holds a ratio back without opening a flame graph. Also runnable on its own:
//   npx tsx bench/profile-summary.ts <file.cpuprofile> [top]
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
  children?: number[]
}

interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface HotFunction { name: string, where: string, selfMs: number, percent: number }

const DEFAULT_TOP = 20
// Not work of the process: time waiting for events, and V8's bookkeeping of the sampler itself.
const NOT_WORK = new Set(['(idle)', '(program)'])

/** Where a frame lives, shortened to the part a reader recognises (src/…, node_modules/<pkg>/…, node:…). */
export function shortUrl (url: string): string {
  if (url === '') return '(native)'
  // The transpiled copy the children run from (compile.ts): show the source path it mirrors.
  const copy = /\/\.cache\/atlas-bench\/[^/]+\/(.*)$/.exec(url)
  if (copy?.[1] !== undefined) return copy[1]
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length)
  const src = url.search(/\/(src|bench)\//)
  return src >= 0 ? url.slice(src + 1) : url.replace(/^file:\/\//, '')
}

export function summariseProfile (profile: CpuProfile, top = DEFAULT_TOP): HotFunction[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  let total = 0
  for (const [id, us] of selfUs) {
    if (!NOT_WORK.has(byId.get(id)?.callFrame.functionName ?? '')) total += us
  }
  const byFunction = new Map<string, HotFunction>()
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame
    if (frame === undefined || NOT_WORK.has(frame.functionName)) continue
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
    const where = `${shortUrl(frame.url)}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`
    const key = `${name} ${where}`
    const entry = byFunction.get(key) ?? { name, where, selfMs: 0, percent: 0 }
    entry.selfMs += us / 1000
    byFunction.set(key, entry)
  }
  return [...byFunction.values()]
    .map((f) => ({ ...f, selfMs: Math.round(f.selfMs * 10) / 10, percent: total === 0 ? 0 : Math.round((f.selfMs * 1000 / total) * 1000) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top)
}

/** Self time grouped by package or source file: a coarser view that survives inlining. */
export function summariseByFile (profile: CpuProfile, top = DEFAULT_TOP): HotFunction[] {
  const rows = summariseProfile(profile, Number.MAX_SAFE_INTEGER)
  const byFile = new Map<string, HotFunction>()
  for (const r of rows) {
    const file = r.where.replace(/:\d+$/, '').replace(/^([^/]+(?:\/[^/]+)?)\/.*$/, (all, pkg: string) => (all.startsWith('src/') || all.startsWith('bench/') ? all : pkg))
    const entry = byFile.get(file) ?? { name: file, where: '', selfMs: 0, percent: 0 }
    entry.selfMs += r.selfMs
    entry.percent += r.percent
    byFile.set(file, entry)
  }
  return [...byFile.values()].map((e) => ({ ...e, selfMs: Math.round(e.selfMs), percent: Math.round(e.percent * 10) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs).slice(0, top)
}

/**
 * Inclusive time of the project's own functions (src/): the samples whose stack passes through each.
 * Self time spreads a hot path over library internals (ioredis, pino, http); this shows which of our
 * steps (auth, rate limit, cache read, rendering, sending) they were working for.
 */
export function summariseInclusive (profile: CpuProfile, top = DEFAULT_TOP): HotFunction[] {
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const inclusive = new Map<string, HotFunction>()
  let total = 0
  profile.samples.forEach((leaf, i) => {
    const us = profile.timeDeltas[i] ?? 0
    if (NOT_WORK.has(byId.get(leaf)?.callFrame.functionName ?? '')) return
    total += us
    const seen = new Set<string>()
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)?.callFrame
      if (frame === undefined || !/\/src\/|\/\.cache\/atlas-bench\/[^/]+\/src\//.test(frame.url)) continue
      const name = frame.functionName === '' ? '(anonymous)' : frame.functionName
      const where = shortUrl(frame.url)
      const key = `${name} ${where}`
      if (seen.has(key)) continue
      seen.add(key)
      const entry = inclusive.get(key) ?? { name, where, selfMs: 0, percent: 0 }
      entry.selfMs += us / 1000
      inclusive.set(key, entry)
    }
  })
  return [...inclusive.values()]
    .map((f) => ({ ...f, selfMs: Math.round(f.selfMs), percent: total === 0 ? 0 : Math.round((f.selfMs * 1000 / total) * 1000) / 10 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top)
}

export function readProfile (file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
}

export function profileTable (rows: HotFunction[]): string {
  return ['| self ms | % | function | where |', '| ---: | ---: | --- | --- |',
    ...rows.map((r) => `| ${r.selfMs} | ${r.percent} | \`${r.name}\` | ${r.where} |`)].join('\n')
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, top] = process.argv.slice(2)
  if (file === undefined) {
    process.stderr.write('usage: npx tsx bench/profile-summary.ts <file.cpuprofile> [top]\n')
    process.exit(2)
  }
  const profile = readProfile(file)
  const n = top === undefined ? DEFAULT_TOP : Number(top)
  process.stdout.write(profileTable(summariseProfile(profile, n)) + '\n\nBy file or package:\n\n' + profileTable(summariseByFile(profile, n)) +
    '\n\nInclusive, src/ functions:\n\n' + profileTable(summariseInclusive(profile, n)) + '\n')
}
