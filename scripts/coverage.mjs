// Line coverage of src/** from the last full `tap` run, with a floor (run by `npm test` as posttest).
//
// tap 21 collects V8 coverage for every process its tests start (.tap/coverage) but can only demand
// 100 % or nothing, and its report is wrong for files loaded through tsx: tsx's source maps carry
// `sourcesContent: [null]`, and v8-to-istanbul takes that null as the original text of the file, so
// every file counts as one covered line ("100 %"). This script builds the report with the c8 that
// tap itself uses, drops those null contents so the original .ts is read from disk, and counts
// every file under src/, including the ones no test loads (as 0 %).
//
//   node scripts/coverage.mjs            report and enforce the floor
//   COVERAGE_REPORT=text node scripts/coverage.mjs   also print the per-file table
import { createRequire } from 'node:module'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const FLOOR_LINES_PCT = 85

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
process.chdir(root) // c8 reports relative to the working directory
const tempDirectory = resolve(root, '.tap/coverage')
const reportsDirectory = resolve(root, '.tap/report')

if (!existsSync(tempDirectory) || readdirSync(tempDirectory).length === 0) {
  console.error('coverage: no coverage data in .tap/coverage (run `npm test` first)')
  process.exit(1)
}

// The c8 that @tapjs/run depends on, whatever the hoisting.
const requireFromTap = createRequire(fileURLToPath(import.meta.resolve('@tapjs/run')))
const { Report } = requireFromTap('c8')

const extra = (process.env.COVERAGE_REPORT ?? '').split(',').filter(Boolean)
const report = new Report({
  include: ['src/**'],
  exclude: [],
  extension: ['.ts'],
  all: true,
  src: [root],
  reporter: ['json-summary', 'text-summary', ...extra],
  reportsDirectory,
  tempDirectory,
  excludeNodeModules: true,
  skipFull: true,
})

const normalize = report._normalizeSourceMapCache.bind(report)
report._normalizeSourceMapCache = (cache) => {
  for (const entry of Object.values(cache ?? {})) {
    const map = entry?.data
    if (map && Array.isArray(map.sourcesContent) && map.sourcesContent.some((c) => typeof c !== 'string')) {
      delete map.sourcesContent
    }
  }
  return normalize(cache)
}

await report.run()

const summary = JSON.parse(readFileSync(resolve(reportsDirectory, 'coverage-summary.json'), 'utf8'))
const files = Object.entries(summary).filter(([k]) => k !== 'total')
const total = summary.total.lines
const srcFiles = listTs(resolve(root, 'src'))
const missing = srcFiles.filter((f) => summary[f] === undefined)

const worst = files
  .map(([f, s]) => ({ f: relative(root, f), uncovered: s.lines.total - s.lines.covered, pct: s.lines.pct }))
  .filter((x) => x.uncovered > 0)
  .sort((a, b) => b.uncovered - a.uncovered)
  .slice(0, 10)
console.log('coverage: the files with the most uncovered lines:')
for (const w of worst) console.log(`  ${String(w.uncovered).padStart(4)} lines uncovered  ${String(w.pct).padStart(6)} %  ${w.f}`)
if (missing.length > 0) console.log(`coverage: ${missing.length} src files missing from the report: ${missing.map((f) => relative(root, f)).join(', ')}`)

const pct = total.total === 0 ? 0 : (100 * total.covered) / total.total
const line = `coverage: lines ${pct.toFixed(2)} % (${total.covered}/${total.total}) over ${files.length} files in src/, floor ${FLOOR_LINES_PCT} %`
if (pct < FLOOR_LINES_PCT || missing.length > 0 || files.length === 0) {
  console.error(`${line}: FAILED`)
  process.exit(1)
}
console.log(`${line}: ok`)

function listTs (dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.ts'))
    .map((d) => resolve(d.parentPath ?? d.path, d.name))
    .sort()
}
