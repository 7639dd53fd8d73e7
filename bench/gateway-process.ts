// The gateway under test, alone in its process: buildApp(config) from the real app, listening on a
// loopback port. Settings come from the harness as env-like strings, validated by loadConfig exactly
// as src/server.ts does (so a bad value fails the same way). On request it records a CPU profile of
// the measured runs only (the V8 profiler that node --cpu-prof uses, minus boot and warm-up).
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import type { Histogram } from 'prom-client'
import { constants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { announce, onClose, onCommand, settingsFrom } from './child-ipc.js'

// µs between samples: finer than the 1 ms default, for requests that take a fraction of a millisecond.
const SAMPLING_INTERVAL_US = 250

const env = settingsFrom<Record<string, string>>('BENCH_GATEWAY_ENV')
const app = await buildApp(loadConfig(env))
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : 0
const session = new Session()

// A CPU profile (--profile) or allocation sampling (--heap-profile): every object the measured runs
// allocated, whether a GC has collected it since or not (the inspector's sampling heap profiler keeps
// only live objects otherwise), one sample every 4 KiB allocated on average, in DevTools' .heapprofile
// format. profile-stop stops what profile-start started.
let profiling: 'cpu' | 'heap' = 'cpu'
onCommand('profile-start', async (message) => {
  profiling = message.kind === 'heap' ? 'heap' : 'cpu'
  session.connect()
  if (profiling === 'heap') {
    await session.post('HeapProfiler.enable')
    // Node 20's typings lack the two include flags that its V8 (11.3) accepts.
    await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as { samplingInterval: number })
  } else {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US })
    await session.post('Profiler.start')
  }
  return {}
})
onCommand('profile-stop', async (message) => {
  const { profile } = profiling === 'heap' ? await session.post('HeapProfiler.stopSampling') : await session.post('Profiler.stop')
  const file = String(message.file)
  writeFileSync(file, JSON.stringify(profile))
  session.disconnect()
  return { file }
})
// The event loop's delay while load runs (hit-cost.ts): a stall shows up as a long max and tail.
// A timer that ticks every millisecond also records the longest gaps between its ticks and the CPU
// this process spent in each: a gap spent on the CPU is a stall of ours (a long task, a GC pause), one
// spent off it is the machine's scheduler.
let delay: IntervalHistogram | undefined
let ticker: NodeJS.Timeout | undefined
let gaps: Array<{ wallMs: number, cpuMs: number }> = []
let gcPauses: number[] = []
const gcObserver = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcPauses.push(e.duration) })
onCommand('delay-start', async () => {
  delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  gaps = []
  gcPauses = []
  gcObserver.observe({ entryTypes: ['gc'] })
  let wall = performance.now()
  let cpu = process.cpuUsage()
  ticker = setInterval(() => {
    const nowWall = performance.now()
    if (nowWall - wall > 20) {
      const used = process.cpuUsage(cpu)
      gaps.push({ wallMs: Math.round(nowWall - wall), cpuMs: Math.round((used.user + used.system) / 1000) })
    }
    wall = nowWall
    cpu = process.cpuUsage()
  }, 1)
  return {}
})
onCommand('delay-stop', async () => {
  const h = delay
  if (h === undefined) return {}
  h.disable()
  clearInterval(ticker)
  gcObserver.disconnect()
  const gc = { count: gcPauses.length, totalMs: Math.round(gcPauses.reduce((a, b) => a + b, 0)), maxMs: Math.round(Math.max(0, ...gcPauses) * 10) / 10 }
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100
  const longest = gaps.sort((a, b) => b.wallMs - a.wallMs).slice(0, 8)
  return { p50Ms: ms(h.percentile(50)), p99Ms: ms(h.percentile(99)), p999Ms: ms(h.percentile(99.9)), maxMs: ms(h.max), count: h.count, longest, gc }
})
// Every collection over the process's life, by kind: the report's GC counts per scenario. A Mark-Compact
// marks the whole old generation (on the same core as the event loop when the gateway is pinned), so how
// often it runs says much of what a hit or a miss costs beyond its own code.
const collections = { major: 0, minor: 0, pauseMs: 0 }
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind
    if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) collections.major++
    else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) collections.minor++
    collections.pauseMs += e.duration
  }
}).observe({ entryTypes: ['gc'] })
onCommand('memory', async () => ({ ...process.memoryUsage(), gcMajor: collections.major, gcMinor: collections.minor, gcPauseMs: Math.round(collections.pauseMs) }))
onCommand('cpu', async () => ({ ...process.cpuUsage() }))
// Where a miss's time goes, from the gateway's own metrics (sums in seconds, and counts): how long the ids
// consumers asked for waited for their objects/ call to leave, and the objects/ exchanges themselves.
onCommand('miss-phases', async () => {
  const sumCount = async (metric: Histogram, labels: Record<string, string> = {}) => {
    const { name, values } = await metric.get()
    const of = (suffix: string) => values.find((v) => v.metricName === `${name}${suffix}` && Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0
    return { sum: of('_sum'), count: of('_count') }
  }
  return { wait: await sumCount(app.metrics.objectsWait), exchange: await sumCount(app.metrics.upstreamDuration, { endpoint: 'objects' }) }
})
onClose(async () => { await app.close() })
announce({ port, origin: `http://127.0.0.1:${port}` })
