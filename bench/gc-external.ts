// What starts V8's major collections (Mark-Compacts) in a process shaped like the gateway: a live heap
// of ~30 MB and, per unit of work, some short-lived JS garbage plus one 18.5 kB body (an S2 response's
// size) made in one of several ways. Each way runs in a child process with the image's heap flags for the
// same time; it prints the child's Mark-Compacts and Scavenges (from the `gc` performance entries) and
// how many units it got through.
//   npx tsx bench/gc-external.ts [--seconds 3] [--flags "--max-old-space-size=192 --max-semi-space-size=8"]
// Ways: buffer (Buffer.allocUnsafe: a backing store outside the V8 heap, as a Redis reply or a
// rendering is), pooled (the same bytes in 1 kB Buffers from Node's pool), view (a subarray of one
// buffer made at start: no new memory), string (an 18.5 kB string on the V8 heap).
// bench/README.md ("Garbage collection") has what it showed.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gatewayNodeFlags } from './options.js'

const WAYS = ['buffer', 'pooled', 'view', 'string'] as const
type Way = typeof WAYS[number]
const BODY_BYTES = 18_500

/** The child: one way, for `seconds`; prints a JSON line with its counts. */
async function child (way: Way, seconds: number): Promise<void> {
  const { PerformanceObserver, constants } = await import('node:perf_hooks')
  let major = 0
  let minor = 0
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++
    }
  }).observe({ entryTypes: ['gc'] })
  // ~30 MB that stays alive, as the gateway's modules, code and state do.
  const live: Array<{ a: number, b: string, c: number[] }> = []
  for (let i = 0; i < 300_000; i++) live.push({ a: i, b: 'x' + String(i), c: [i] })
  const slab = Buffer.allocUnsafe(1 << 20)
  let units = 0
  let sink = 0
  const until = Date.now() + seconds * 1000
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      for (let k = 0; k < 40; k++) {
        units++
        if (way === 'buffer') sink += Buffer.allocUnsafe(BODY_BYTES).length
        else if (way === 'pooled') for (let p = 0; p < 18; p++) sink += Buffer.allocUnsafe(1000).length
        else if (way === 'view') sink += slab.subarray(k * 100, k * 100 + BODY_BYTES).length
        else sink += ('y'.repeat(BODY_BYTES - 8) + String(units).padStart(8, '0')).length
        // ~2 kB of short-lived objects, as a request's own bookkeeping.
        const garbage = []
        for (let g = 0; g < 100; g++) garbage.push({ g })
        sink += garbage.length + (live.length & 1)
      }
      if (Date.now() < until) setImmediate(tick)
      else resolve()
    }
    tick()
  })
  // Let the observer see the last collections.
  await new Promise((resolve) => setTimeout(resolve, 50))
  process.stdout.write(JSON.stringify({ way, units, major, minor, sink: sink > 0 }) + '\n')
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, flags: { type: 'string' }, child: { type: 'string' } } })
  const seconds = Number(values.seconds)
  if (values.child !== undefined) return child(values.child as Way, seconds)
  const flags = gatewayNodeFlags(values.flags)
  const self = fileURLToPath(import.meta.url)
  console.log(`node ${process.version}, ${flags.join(' ')}, ${seconds} s each, ${BODY_BYTES}-byte bodies`)
  console.log('| way | units | Mark-Compacts | Scavenges | bodies per Mark-Compact |')
  console.log('| --- | ---: | ---: | ---: | ---: |')
  for (const way of WAYS) {
    const run = spawnSync(process.execPath, [...flags, '--import', 'tsx', self, '--child', way, '--seconds', String(seconds)], { encoding: 'utf8' })
    if (run.status !== 0) throw new Error(`${way}: ${run.stderr}`)
    const r = JSON.parse(run.stdout.trim().split('\n').pop() as string) as { units: number, major: number, minor: number }
    console.log(`| ${way} | ${r.units} | ${r.major} | ${r.minor} | ${r.major === 0 ? '–' : Math.round(r.units / r.major)} |`)
  }
}

await main()
