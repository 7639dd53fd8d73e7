// CPU time and peak memory of a process, from /proc (Linux). CPU is read before and after a measured
// run, so the gateway's cost per request excludes its boot and warm-up; peak RSS (VmHWM) is the high
// water mark over the process's life, and every scenario gets a fresh process.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

const DEFAULT_CLOCK_TICKS = 100

function clockTicks (): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(ticks) && ticks > 0 ? ticks : DEFAULT_CLOCK_TICKS
  } catch {
    return DEFAULT_CLOCK_TICKS
  }
}

const TICKS_PER_S = clockTicks()

/** User + system CPU time of `pid` in ms, or undefined when /proc cannot be read (not Linux, gone). */
export function cpuMs (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime and stime are fields 14 and 15 of the whole line, i.e. 11 and 12 after the name.
    const utime = Number(fields[11])
    const stime = Number(fields[12])
    return ((utime + stime) * 1000) / TICKS_PER_S
  } catch {
    return undefined
  }
}

function statusField (pid: number, name: string): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)
    return match?.[1] === undefined ? undefined : Number(match[1]) / 1024
  } catch {
    return undefined
  }
}

/** Peak resident set size of `pid` in MiB over its life (VmHWM). */
export function peakRssMb (pid: number): number | undefined {
  return statusField(pid, 'VmHWM')
}

/** Current resident set size in MiB (VmRSS). */
export function rssMb (pid: number): number | undefined {
  return statusField(pid, 'VmRSS')
}

/** Whether CPU readings are available on this machine. */
export function hasProcStats (): boolean {
  return cpuMs(process.pid) !== undefined
}

function cpuTimes (): { idle: number, total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const values = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal: idle time is idle + iowait.
    const idle = (values[3] ?? 0) + (values[4] ?? 0)
    return { idle, total: values.slice(0, 8).reduce((a, b) => a + b, 0) }
  } catch {
    return undefined
  }
}

/**
 * Share of all cores busy over the next `ms` (0–1), from /proc/stat: measured while the bench runs
 * nothing, it says how much other work the machine has, which the 1-minute load average (slow to decay
 * after a previous run) does not.
 */
export async function machineBusy (ms = 1000): Promise<number | undefined> {
  const a = cpuTimes()
  await new Promise((resolve) => setTimeout(resolve, ms))
  const b = cpuTimes()
  if (a === undefined || b === undefined || b.total === a.total) return undefined
  return Math.round((1 - (b.idle - a.idle) / (b.total - a.total)) * 100) / 100
}
