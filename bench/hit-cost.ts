// What one cache hit costs, in numbers that do not depend on how busy the machine is: instructions per
// hit (the gateway under valgrind's callgrind, counters zeroed after warm-up and dumped after N hits),
// Redis commands per hit (a redis-server of its own, INFO commandstats before and after), and, under
// closed-loop load (wrk or autocannon), the event loop's delay histogram and the process's memory.
//   npx tsx bench/hit-cost.ts [--callgrind] [--hits N] [--warm N] [--limits large|default] [--load S] [--path P] [--root DIR]
//     [--node-flags=FLAGS]
// The gateway runs with the image's heap flags and malloc arenas, as in `npm run bench`; --node-flags="" gives
// it V8's defaults (how the figures before 2026-12-01 were measured).
// --keep FILE saves the callgrind dump (callgrind_annotate FILE). With --callgrind, instructions_per_hit_without_compiler
// leaves out V8's compilers and instructions_per_hit_without_compiler_or_gc also its garbage collector (see
// below): the latter is the figure to compare between changes; use --warm 20000 for it.
// --limits default spreads the hits over consumers with the default limits (600/minute, 100,000 units
// a day), 400 hits each, so that none is refused; large is the bench consumer (no effective limits).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { Pool } from 'undici'
import { stringify } from 'yaml'
import { generateKey, hashKey } from '../src/consumers/keys.js'
import { spawnChild, useCompiled, type Child } from './children.js'
import { compileForRun } from './compile.js'
import { createAutocannonGenerator } from './load-autocannon.js'
import { createWrkGenerator, hasWrk } from './load-wrk.js'
import { gatewayArenasEnv, gatewayNodeFlags } from './options.js'
import { OBJECT_A } from './scenarios-hit.js'
import { UNLIMITED_RATE, type GatewayInfo, type SandboxInfo } from './setup.js'
import { startRedisServer } from '../test/fixtures/redis-server.js'

const { values } = parseArgs({
  options: {
    callgrind: { type: 'boolean', default: false },
    hits: { type: 'string', default: '2000' },
    limits: { type: 'string', default: 'large' },
    load: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    path: { type: 'string', default: `/v1/objects/${OBJECT_A}` },
    'log-level': { type: 'string', default: 'info' },
    /** With --callgrind: also copy the dump here, for callgrind_annotate. */
    keep: { type: 'string' },
    profile: { type: 'string' },
    /** Node flags for the gateway (default: the Dockerfile's NODE_OPTIONS, as npm run bench). */
    'node-flags': { type: 'string' },
    /** Another checkout's root whose src/ (and bench/) to measure, e.g. the base of a change (before/after). */
    root: { type: 'string' },
    warm: { type: 'string' }
  }
})
const HITS = Number(values.hits)
const HITS_PER_CONSUMER = 400
const isDefault = values.limits === 'default'
const consumers = Array.from({ length: isDefault ? Math.ceil(HITS / HITS_PER_CONSUMER) : 1 }, (_, i) => ({ id: `c${i}`, key: generateKey() }))

const root = fileURLToPath(new URL('..', import.meta.url))
const tmp = mkdtempSync(join(tmpdir(), 'atlas-hit-cost-'))
const children: Child[] = []
// A tap-like teardown for the throw-away redis-server.
const teardowns: Array<() => Promise<void> | void> = []

async function main (): Promise<void> {
  useCompiled(compileForRun(values.root ?? root, join(root, 'node_modules', '.cache', 'atlas-hit-cost', String(process.pid))))
  const redis = await startRedisServer({ teardown: (fn: () => Promise<void> | void) => teardowns.push(fn) } as never)
  const file = join(tmp, 'consumers.yaml')
  writeFileSync(file, stringify({
    consumers: consumers.map((c) => ({
      id: c.id,
      key_sha256: [hashKey(c.key)],
      scopes: ['read'],
      ...(isDefault ? {} : { rate: UNLIMITED_RATE, daily_objects: 1e12, max_batch: 1000000, upstream_share: 1e9 })
    }))
  }))
  const sandbox = await spawnChild<SandboxInfo>({ script: './sandbox-process.ts', env: { BENCH_SANDBOX: JSON.stringify({ options: { throttleRate: UNLIMITED_RATE }, idCount: 10 }) } }, 1)
  children.push(sandbox as unknown as Child)
  const out = join(tmp, 'callgrind.out')
  const env = {
    LOG_LEVEL: values['log-level'],
    ATLAS_BASE_URL: sandbox.info.baseUrl,
    ATLAS_TOKEN: sandbox.info.tokens.write,
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: 'hc:',
    CONSUMERS_FILE: file,
    UPSTREAM_RATE: UNLIMITED_RATE
  }
  const nodeFlags = gatewayNodeFlags(values['node-flags'])
  const gateway = await spawnChild<GatewayInfo>({
    script: './gateway-process.ts',
    nodeFlags,
    env: { BENCH_GATEWAY_ENV: JSON.stringify(env), ...gatewayArenasEnv() },
    ...(values.callgrind ? { wrapper: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`, '--dump-instr=no', '--instr-atstart=no'], readyTimeoutMs: 600_000 } : {})
  }, 1)
  children.push(gateway as unknown as Child)
  const pool = new Pool(gateway.info.origin, { connections: 8, pipelining: 1 })
  const read = async (key: string): Promise<void> => {
    const res = await pool.request({ method: 'GET', path: values.path, headers: { authorization: `Bearer ${key}` } })
    await res.body.arrayBuffer()
    if (res.statusCode !== 200) throw new Error(`${values.path} answered ${res.statusCode}`)
  }
  // Warm-up: the fill, then enough hits for every consumer's leases and the JIT.
  for (const c of consumers) await read(c.key)
  // With the default limits each consumer gets 100 hits of warm-up and 400 measured: 500 of its 600 a minute.
  const warm = isDefault ? consumers.length * 100 : Number(values.warm ?? 2000)
  for (let i = 0; i < warm; i++) await read(consumers[i % consumers.length]?.key ?? '')

  const stats = new Redis(redis.url)
  const byCommand = new Map<string, number>()
  const commands = async (): Promise<number> => {
    const info = await stats.info('commandstats')
    let total = 0
    for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
      if (m[1] === 'info') continue
      total += Number(m[2])
      byCommand.set(m[1] ?? '', Number(m[2]) - (byCommand.get(m[1] ?? '') ?? 0))
    }
    return total
  }
  // Boot and warm-up run uninstrumented (far faster under valgrind); counting covers the measured hits.
  if (values.callgrind) {
    spawnSync('callgrind_control', ['-i', 'on', String(gateway.pid)], { stdio: 'ignore' })
    spawnSync('callgrind_control', ['-z', String(gateway.pid)], { stdio: 'ignore' })
  }
  const cpuBefore = await gateway.ask<{ user: number, system: number }>({ type: 'cpu' })
  const before = await commands()
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < HITS) {
      const i = next++
      await read(consumers[Math.floor(i / HITS_PER_CONSUMER) % consumers.length]?.key ?? '')
    }
  }))
  const redisCalls = (await commands()) - before - 1
  const perCommand = Object.fromEntries([...byCommand].filter(([, n]) => n > 0))
  const cpuAfter = await gateway.ask<{ user: number, system: number }>({ type: 'cpu' })
  const report: Record<string, unknown> = { hits: HITS, limits: values.limits, consumers: consumers.length, node_flags: nodeFlags.join(' '), redis_commands_per_hit: Math.round(redisCalls / HITS * 1000) / 1000, redis_commands: perCommand }
  if (!values.callgrind) report.cpu_us_per_hit = Math.round((cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / HITS)
  if (values.callgrind) {
    spawnSync('callgrind_control', ['-d', String(gateway.pid)], { stdio: 'ignore' })
    const dumps = readdirSync(tmp).filter((f) => f.startsWith('callgrind.out.'))
    const last = dumps.sort().at(-1)
    const text = last === undefined ? '' : readFileSync(join(tmp, last), 'utf8')
    if (values.keep !== undefined) writeFileSync(values.keep, text)
    const total = /^(?:summary|totals):\s*(\d+)/m.exec(text)?.[1]
    report.instructions_per_hit = total === undefined ? 'no dump' : Math.round(Number(total) / HITS)
    // Under valgrind the program runs ~50× slower, so V8 keeps compiling (tiering is partly time-driven)
    // throughout the counted hits: ~50,000 instructions a hit that `perf` on a real run does not see
    // (0.6 % there). The figure without V8's compilers is the one to compare between changes.
    if (total !== undefined && last !== undefined) {
      const annotated = spawnSync('callgrind_annotate', ['--threshold=100', join(tmp, last)], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }).stdout ?? ''
      let compiling = 0
      for (const m of annotated.matchAll(/^\s*([\d,]+) \([^)]*\)\s+\S*(?:v8::internal::(?:compiler|maglev|baseline)::|v8::internal::Compiler::)/gm)) compiling += Number(m[1]?.replaceAll(',', ''))
      report.instructions_per_hit_without_compiler = Math.round((Number(total) - compiling) / HITS)
      // Whether a major GC's marking and sweeping fall inside the counted hits moved the figure above by
      // ~50,000 a hit between runs of the same code (2026-12-01: 223k, 272k, 223k, 269k). Without the
      // collector's own functions, five runs of that code on a quiet machine gave 220.4k-221.2k; with
      // other work on both cores, 286k: under valgrind the gateway runs ~50x slower, and slower still on
      // a busy machine, so its timers (log and usage flushes, lease ends) fire more often per hit. Compare
      // changes in runs made side by side on a quiet machine. What a hit allocates, which the collector
      // then pays for, shows in `npm run bench -- --heap-profile S1` instead.
      let collecting = 0
      for (const m of annotated.matchAll(/^\s*([\d,]+) \([^)]*\)\s+\S*v8::internal::\S*(?:Mark|Sweep|Scaveng|Evacuat|RememberedSet|SlotSet|MemoryChunk|IteratePointers|SizeFromMap|GCTracer|Compactor)/gm)) collecting += Number(m[1]?.replaceAll(',', ''))
      report.instructions_per_hit_without_compiler_or_gc = Math.round((Number(total) - compiling - collecting) / HITS)
    }
  } else if (!isDefault) {
    // Closed-loop load for the event loop's delay and the memory the process holds.
    const generator = hasWrk() ? createWrkGenerator(tmp) : createAutocannonGenerator()
    await gateway.ask({ type: 'delay-start' })
    if (values.profile !== undefined) await gateway.ask({ type: 'profile-start' })
    const load = await generator.run({ origin: gateway.info.origin, request: { method: 'GET', path: values.path, headers: { authorization: `Bearer ${consumers[0]?.key ?? ''}` } }, connections: Number(values.connections), durationS: Number(values.load) })
    if (values.profile !== undefined) await gateway.ask({ type: 'profile-stop', file: values.profile })
    const delay = await gateway.ask<Record<string, number | unknown>>({ type: 'delay-stop' })
    const memory = await gateway.ask<Record<string, number>>({ type: 'memory' })
    const mib = (n: number | undefined): number => Math.round((n ?? 0) / 1048576)
    report.load = { rps: Math.round(load.rps), p50Ms: load.p50Ms, p99Ms: load.p99Ms, non2xx: load.non2xx, errors: load.errors }
    report.event_loop_delay = { p50Ms: delay.p50Ms, p99Ms: delay.p99Ms, p999Ms: delay.p999Ms, maxMs: delay.maxMs, longestGaps: delay.longest, gc: delay.gc }
    report.memory_mib = { rss: mib(memory.rss), heapUsed: mib(memory.heapUsed), heapTotal: mib(memory.heapTotal), external: mib(memory.external), arrayBuffers: mib(memory.arrayBuffers) }
  }
  await stats.quit()
  await pool.close()
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
}

try {
  await main()
} finally {
  for (const c of children.reverse()) await c.stop()
  for (const t of teardowns.reverse()) await t()
  rmSync(tmp, { recursive: true, force: true })
  rmSync(join(root, 'node_modules', '.cache', 'atlas-hit-cost', String(process.pid)), { recursive: true, force: true })
}
