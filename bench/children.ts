// Child processes of the harness: the gateway, the baselines and the sandbox each run in their own
// Node process, so their CPU time and RSS can be read from /proc without the load generator's. A
// child reports `{type: 'ready', ...}` over IPC; `node --import tsx` (not the tsx CLI, which forks a
// second process) keeps the pid we read equal to the process doing the work; normally they run from
// a transpiled copy (compile.ts), so no loader is measured at all. With taskset, the
// process under test gets its own core and the load generator the other.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const READY_TIMEOUT_MS = 60000
const CLOSE_TIMEOUT_MS = 15000

export interface ChildInfo { pid: number, [key: string]: unknown }

export interface Child<T extends ChildInfo = ChildInfo> {
  info: T
  pid: number
  /** Asks the child to close (IPC), then kills it after a grace period. */
  stop: () => Promise<void>
  /** Sends a command and waits for the reply of the same `type` (IPC). */
  ask: <R>(message: { type: string, [key: string]: unknown }) => Promise<R>
}

export interface SpawnOptions {
  /** Script path relative to bench/. */
  script: string
  env: Record<string, string>
  /** Core to pin the child to (taskset), when pinning is available. */
  cpu?: number
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir', dir]. */
  nodeFlags?: string[]
  /** A command the node process runs under, e.g. ['valgrind', '--tool=callgrind'] (hit-cost.ts). */
  wrapper?: string[]
  /** How long the child may take to report ready (valgrind needs far longer than READY_TIMEOUT_MS). */
  readyTimeoutMs?: number
}

let isTasksetUsable: boolean | undefined

/** taskset exists and this machine has at least two cores to split between server and load. */
export function canPin (cores: number): boolean {
  isTasksetUsable ??= spawnSync('taskset', ['-c', '0', 'true']).status === 0
  return isTasksetUsable && cores >= 2
}

export function pinnedCommand (cmd: string, args: string[], cpu: number | undefined, cores: number): [string, string[]] {
  return cpu !== undefined && canPin(cores) ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]
}

function waitForExit (child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once('exit', () => { clearTimeout(timer); resolve(true) })
  })
}

let compiledDir: string | undefined

/** Runs children from this transpiled copy (compile.ts) instead of through tsx. */
export function useCompiled (dir: string): void {
  compiledDir = dir
}

function nodeArgs (script: string): string[] {
  if (compiledDir !== undefined) return [join(compiledDir, 'bench', script.replace(/\.ts$/, '.js'))]
  return ['--import', 'tsx', fileURLToPath(new URL(script, import.meta.url))]
}

export async function spawnChild<T extends ChildInfo> (opts: SpawnOptions, cores: number): Promise<Child<T>> {
  const wrapper = opts.wrapper ?? []
  const argv = [...wrapper, process.execPath, ...(opts.nodeFlags ?? []), ...nodeArgs(opts.script)]
  const [cmd, args] = pinnedCommand(argv[0] as string, argv.slice(1), opts.cpu, cores)
  const readyTimeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS
  // stdout is discarded: the gateway logs there (one access-log line per request, as deployed) and
  // reading it here would put that cost on the load generator's core.
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, ...opts.env } })
  const waiting = new Map<string, (value: unknown) => void>()
  const info = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${opts.script} did not report ready within ${readyTimeoutMs} ms`)), readyTimeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${opts.script} exited with ${String(code)} before it was ready`)) })
    child.on('message', (message: { type?: string }) => {
      if (message.type === 'ready') {
        clearTimeout(timer)
        resolve(message as unknown as T)
        return
      }
      const reply = message.type === undefined ? undefined : waiting.get(message.type)
      if (reply !== undefined && message.type !== undefined) {
        waiting.delete(message.type)
        reply(message)
      }
    })
  })
  child.removeAllListeners('exit')
  return {
    info,
    pid: info.pid,
    async stop () {
      if (child.connected) child.send({ type: 'close' })
      if (!await waitForExit(child, CLOSE_TIMEOUT_MS)) {
        child.kill('SIGKILL')
        await waitForExit(child, CLOSE_TIMEOUT_MS)
      }
    },
    ask <R>(message: { type: string, [key: string]: unknown }): Promise<R> {
      return new Promise<R>((resolve) => {
        waiting.set(message.type, resolve as (value: unknown) => void)
        child.send(message)
      })
    }
  }
}
