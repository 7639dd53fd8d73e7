// wrk as the closed-loop load generator: C, one thread on the load core, and a microsecond latency
// histogram. A generated Lua script sets method, headers and body, and prints its summary as JSON.
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ClosedLoad, LoadGenerator, LoadResult } from './load.js'

const MARK = 'BENCH_JSON '
const WRK_TIMEOUT = '10s'

export function hasWrk (): boolean {
  return spawnSync('wrk', ['--version']).error === undefined
}

/** A double-quoted Lua string: printable ASCII as is, every other byte as a decimal escape. */
function luaString (text: string): string {
  let out = '"'
  for (const byte of Buffer.from(text, 'utf8')) {
    const isPlain = byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c
    out += isPlain ? String.fromCharCode(byte) : `\\${String(byte).padStart(3, '0')}`
  }
  return out + '"'
}

function script (load: ClosedLoad): string {
  const { request } = load
  const headers = Object.entries(request.headers).map(([k, v]) => `wrk.headers[${luaString(k)}] = ${luaString(v)}`)
  return [
    `wrk.method = "${request.method}"`,
    `wrk.path = ${luaString(request.path)}`,
    ...headers,
    request.body === undefined ? '' : `wrk.body = ${luaString(request.body)}`,
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format('${MARK}{"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"bytes":%d,"p50_us":%d,"p99_us":%d}\\n',`,
    '    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status, summary.bytes,',
    '    latency:percentile(50), latency:percentile(99)))',
    'end',
    ''
  ].join('\n')
}

interface WrkSummary { requests: number, duration_us: number, errors: number, non2xx: number, bytes: number, p50_us: number, p99_us: number }

export function createWrkGenerator (tmpDir: string): LoadGenerator {
  let n = 0
  return {
    name: 'wrk',
    async run (load: ClosedLoad): Promise<LoadResult> {
      const file = join(tmpDir, `wrk-${++n}.lua`)
      writeFileSync(file, script(load))
      const args = ['-t1', `-c${load.connections}`, `-d${load.durationS}s`, '--timeout', WRK_TIMEOUT, '-s', file, load.origin + load.request.path]
      const out = await new Promise<string>((resolve, reject) => {
        const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
        let text = ''
        child.stdout.on('data', (c: Buffer) => { text += c.toString('utf8') })
        child.stderr.on('data', (c: Buffer) => { text += c.toString('utf8') })
        child.on('error', reject)
        child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${String(code)}: ${text}`))))
      })
      const line = out.split('\n').find((l) => l.startsWith(MARK))
      if (line === undefined) throw new Error(`wrk printed no summary: ${out}`)
      const s = JSON.parse(line.slice(MARK.length)) as WrkSummary
      const durationS = s.duration_us / 1e6
      return {
        requests: s.requests,
        durationS,
        rps: s.requests / durationS,
        p50Ms: s.p50_us / 1000,
        p99Ms: s.p99_us / 1000,
        errors: s.errors,
        non2xx: s.non2xx,
        bytes: s.bytes
      }
    }
  }
}
