// The run's shared pieces: a temporary directory, a consumer with limits far above any load (so quotas
// never interfere), the load generator, and starters for the processes each scenario needs. The
// process under test goes on SERVER_CPU; the harness, the load generator and the upstream sandbox
// share LOAD_CPU, as a remote client and a remote upstream would not share the gateway's core.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnSync } from 'node:child_process'
import { Redis } from 'ioredis'
import { stringify } from 'yaml'
import { generateKey, hashKey } from '../src/consumers/keys.js'
import { canPin, spawnChild, useCompiled, type Child, type ChildInfo } from './children.js'
import { compileForRun } from './compile.js'
import { createAutocannonGenerator } from './load-autocannon.js'
import { createWrkGenerator, hasWrk } from './load-wrk.js'
import type { LoadGenerator } from './load.js'
import type { RunHooks } from './measure.js'
import { gatewayArenasEnv, type BenchOptions } from './options.js'

export const SERVER_CPU = 0
export const LOAD_CPU = 1
/** Far above any rate the bench reaches: limits must never answer 429 during a run. */
export const UNLIMITED_RATE = '1000000000/hour'
export const WRK_HINT = 'wrk is not installed; using autocannon (install wrk for µs latency histograms: apt-get update && apt-get install -y wrk)'

export interface GatewayInfo extends ChildInfo { origin: string, port: number }
export interface SandboxInfo extends ChildInfo {
  baseUrl: string
  origin: string
  tokens: { read: string, write: string, staff: string }
  username: string
  password: string
  ids: string[]
}
export interface BaselineInfo extends ChildInfo { origin: string }

/** What the gateway process holds at the end of a run (the memory command of gateway-process.ts), in MiB. */
export async function recordMemory (result: { extra: Record<string, number | string> }, gateway: Child<GatewayInfo>): Promise<void> {
  const m = await gateway.ask<Record<string, number>>({ type: 'memory' })
  const mib = (n: number | undefined): number => Math.round((n ?? 0) / 1048576)
  result.extra.end_heap_used_mib = mib(m.heapUsed)
  result.extra.end_heap_total_mib = mib(m.heapTotal)
  result.extra.end_external_mib = mib(m.external)
  result.extra.end_rss_mib = mib(m.rss)
  // Over the process's life (boot and warm-up included): major (Mark-Compact) and minor (Scavenge) GCs
  // and their main-thread pauses; the marking that runs on V8's helper threads is not in the pauses.
  result.extra.gc_major = m.gcMajor ?? 0
  result.extra.gc_minor = m.gcMinor ?? 0
  result.extra.gc_pause_ms = m.gcPauseMs ?? 0
}

export interface BenchEnv {
  opts: BenchOptions
  cores: number
  isPinned: boolean
  tmpDir: string
  runId: string
  /** The bench consumer's key (all scopes, no effective limits). */
  key: string
  consumersFile: string
  generator: LoadGenerator
  notes: string[]
  startSandbox: (options: Record<string, unknown>, idCount: number, cpu: number) => Promise<Child<SandboxInfo>>
  startGateway: (scenario: string, upstream: SandboxInfo, overrides?: Record<string, string>) => Promise<Child<GatewayInfo>>
  /** Profiling hooks for a gateway when `--profile` names its scenario (S3 runs are `S3-0`, `S3-1`…). */
  profiler: (scenario: string, gateway: Child<GatewayInfo>) => RunHooks | undefined
  startBaseline: (mode: 'memory' | 'redis', body: Buffer, contentType: string) => Promise<Child<BaselineInfo>>
  /** Deletes every Redis key this run wrote. */
  cleanRedis: () => Promise<void>
  close: () => Promise<void>
}

/** Where the .cpuprofile files of a profiled scenario go. */
export function profileDir (opts: BenchOptions, runId: string, scenario: string): string {
  return join(opts.outDir, 'profiles', `${runId}-${scenario.toUpperCase()}`)
}

function writeBenchConsumer (dir: string): { key: string, file: string } {
  const key = generateKey()
  const entry = {
    id: 'bench',
    key_sha256: [hashKey(key)],
    scopes: ['read'],
    rate: UNLIMITED_RATE,
    daily_objects: 1e12,
    max_batch: 1000000,
    upstream_share: 1e9
  }
  const file = join(dir, 'consumers.yaml')
  writeFileSync(file, stringify({ consumers: [entry] }))
  return { key, file }
}

export async function createBenchEnv (opts: BenchOptions): Promise<BenchEnv> {
  const cores = availableParallelism()
  const isPinned = canPin(cores)
  const notes: string[] = []
  if (isPinned) {
    // Pin the harness itself (and so the in-process load generators and the upstream sandboxes it
    // starts) to the load core; each server under test is started on the other.
    spawnSync('taskset', ['-a', '-p', '-c', String(LOAD_CPU), String(process.pid)], { stdio: 'ignore' })
  } else {
    notes.push('taskset unavailable or a single core: server and load generator share cores, so req/s and CPU are pessimistic')
  }
  const tmpDir = mkdtempSync(join(tmpdir(), 'atlas-bench-'))
  const runId = Date.now().toString(36)
  const root = fileURLToPath(new URL('..', import.meta.url))
  const buildDir = join(root, 'node_modules', '.cache', 'atlas-bench', runId)
  try {
    useCompiled(compileForRun(root, buildDir))
  } catch (err) {
    notes.push(`transpiling for the child processes failed (${(err as Error).message}); they ran through tsx, which adds ~30 MB RSS each`)
  }
  const { key, file } = writeBenchConsumer(tmpDir)
  const useWrk = opts.loader === 'wrk' || (opts.loader === 'auto' && hasWrk())
  if (opts.loader === 'auto' && !useWrk) notes.push(WRK_HINT)
  const generator = useWrk ? createWrkGenerator(tmpDir) : createAutocannonGenerator()
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await redis.connect()
  const prefix = `agw-bench:${runId}:`
  const children = new Set<Child>()
  let bodies = 0

  async function track<T extends ChildInfo> (child: Promise<Child<T>>): Promise<Child<T>> {
    const c = await child
    children.add(c as unknown as Child)
    const stop = c.stop
    c.stop = async () => { children.delete(c as unknown as Child); await stop() }
    return c
  }

  async function cleanRedis (): Promise<void> {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  }

  return {
    opts,
    cores,
    isPinned,
    tmpDir,
    runId,
    key,
    consumersFile: file,
    generator,
    notes,
    startSandbox (options, idCount, cpu) {
      const settings = { options: { throttleRate: UNLIMITED_RATE, staffThrottleRate: UNLIMITED_RATE, anonThrottleRate: UNLIMITED_RATE, ...options }, idCount }
      return track(spawnChild<SandboxInfo>({ script: './sandbox-process.ts', cpu, env: { BENCH_SANDBOX: JSON.stringify(settings) } }, cores))
    },
    startGateway (scenario, upstream, overrides = {}) {
      const env: Record<string, string> = {
        LOG_LEVEL: opts.logLevel,
        ATLAS_BASE_URL: upstream.baseUrl,
        ATLAS_TOKEN: upstream.tokens.write,
        ATLAS_USERNAME: upstream.username,
        ATLAS_PASSWORD: upstream.password,
        REDIS_URL: opts.redisUrl,
        // A key space per scenario: every gateway starts with a cold cache and fresh counters.
        REDIS_KEY_PREFIX: `${prefix}${scenario}:`,
        CONSUMERS_FILE: file,
        UPSTREAM_RATE: UNLIMITED_RATE,
        ...overrides
      }
      // The image's malloc arenas too (an explicit MALLOC_ARENA_MAX in the bench's environment wins).
      return track(spawnChild<GatewayInfo>({ script: './gateway-process.ts', cpu: SERVER_CPU, nodeFlags: opts.gatewayNodeFlags, env: { BENCH_GATEWAY_ENV: JSON.stringify(env), ...gatewayArenasEnv() } }, cores))
    },
    profiler (scenario, gateway) {
      const base = scenario.toUpperCase().replace(/-\d+$/, '')
      // One inspector session per gateway: a CPU profile or a heap sample, the CPU profile if both.
      const isCpu = opts.profile.includes(base)
      if (!isCpu && !opts.heapProfile.includes(base)) return undefined
      const dir = profileDir(opts, runId, base)
      mkdirSync(dir, { recursive: true })
      const file = join(dir, `${scenario}-${gateway.pid}.${isCpu ? 'cpuprofile' : 'heapprofile'}`)
      return {
        before: async () => { await gateway.ask({ type: 'profile-start', kind: isCpu ? 'cpu' : 'heap' }) },
        after: async () => { await gateway.ask({ type: 'profile-stop', file }) }
      }
    },
    startBaseline (mode, body, contentType) {
      const bodyFile = join(tmpDir, `body-${++bodies}.bin`)
      writeFileSync(bodyFile, body)
      const settings = { mode, bodyFile, contentType, redisUrl: opts.redisUrl, redisKey: `${prefix}b2:${bodies}` }
      return track(spawnChild<BaselineInfo>({ script: './baseline-process.ts', cpu: SERVER_CPU, env: { BENCH_BASELINE: JSON.stringify(settings) } }, cores))
    },
    cleanRedis,
    async close () {
      await Promise.all([...children].map((c) => c.stop()))
      await cleanRedis()
      await redis.quit()
      rmSync(tmpDir, { recursive: true, force: true })
      rmSync(buildDir, { recursive: true, force: true })
    }
  }
}
