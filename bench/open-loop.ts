// An open-loop load generator for the miss scenarios: requests leave at a fixed rate whatever the
// answers' latency (a closed loop would slow down with the server and hide queueing), each with its
// own path so that every request is a distinct miss. Latency is measured per request in µs precision.
import { Pool } from 'undici'
import { summarise, type LoadRequest, type LoadResult } from './load.js'

const DEFAULT_CONNECTIONS = 512
const TICK_MS = 1

export interface OpenLoad {
  origin: string
  rate: number
  durationS: number
  /** The i-th request (i from 0). */
  request: (i: number) => LoadRequest
  connections?: number
}

export async function runOpenLoop (load: OpenLoad): Promise<LoadResult> {
  const pool = new Pool(load.origin, { connections: load.connections ?? DEFAULT_CONNECTIONS, pipelining: 1 })
  const latencies: number[] = []
  const pending = new Set<Promise<void>>()
  let errors = 0
  let non2xx = 0
  let bytes = 0
  let sent = 0
  const total = Math.round(load.rate * load.durationS)

  async function send (i: number): Promise<void> {
    const req = load.request(i)
    const t0 = performance.now()
    try {
      const res = await pool.request({ method: req.method, path: req.path, headers: req.headers, ...(req.body === undefined ? {} : { body: req.body }) })
      for await (const chunk of res.body) bytes += (chunk as Buffer).length
      latencies.push(performance.now() - t0)
      if (res.statusCode >= 400) non2xx++
    } catch {
      errors++
    }
  }

  const started = performance.now()
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      // Catch up on every request due by now: timers fire late under load, the schedule does not slip.
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * load.rate))
      while (sent < due) {
        const p = send(sent++)
        pending.add(p)
        p.finally(() => pending.delete(p)).catch(() => {})
      }
      if (sent < total) setTimeout(tick, TICK_MS)
      else resolve()
    }
    tick()
  })
  await Promise.all([...pending])
  const durationS = (performance.now() - started) / 1000
  await pool.close()
  return summarise(latencies, durationS, { errors, non2xx, bytes })
}
