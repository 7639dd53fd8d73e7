// Single requests outside the load runs: priming a cache, checking that a scenario answers what it
// should before it is measured, and timing a streamed answer (time to first byte, total time).
import { request } from 'undici'
import type { LoadRequest } from './load.js'

export interface ProbeReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

export async function probe (origin: string, req: LoadRequest): Promise<ProbeReply> {
  const res = await request(origin + req.path, {
    method: req.method,
    headers: req.headers,
    ...(req.body === undefined ? {} : { body: req.body })
  })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

export function header (reply: ProbeReply, name: string): string {
  const value = reply.headers[name]
  return Array.isArray(value) ? value.join(', ') : (value ?? '')
}

/** Fails the scenario (not the whole run) when the answer is not what the measurement assumes. */
export function expectStatus (reply: ProbeReply, status: number, what: string): void {
  if (reply.status !== status) {
    throw new Error(`${what}: expected ${status}, got ${reply.status}: ${reply.body.toString('utf8', 0, 300)}`)
  }
}

export interface StreamTiming {
  status: number
  ttfbMs: number
  totalMs: number
  bytes: number
  lines: number
  /** The last line, for spotting an `{"error":…}` that ended the stream early. */
  lastLine: string
}

/** Reads a streamed answer to the end, counting bytes and lines without keeping them. */
export async function timeStream (origin: string, req: LoadRequest): Promise<StreamTiming> {
  const t0 = performance.now()
  const res = await request(origin + req.path, {
    method: req.method,
    headers: req.headers,
    ...(req.body === undefined ? {} : { body: req.body }),
    // A cold 50,000-id stream may legitimately take minutes against a slow upstream.
    headersTimeout: 600000,
    bodyTimeout: 600000
  })
  let ttfbMs = -1
  let bytes = 0
  let lines = 0
  let tail = ''
  for await (const chunk of res.body) {
    const buf = chunk as Buffer
    if (ttfbMs < 0) ttfbMs = performance.now() - t0
    bytes += buf.length
    for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) lines++
    tail = (tail + buf.toString('utf8', Math.max(0, buf.length - 4096))).slice(-4096)
  }
  const totalMs = performance.now() - t0
  const parts = tail.trimEnd().split('\n')
  return { status: res.statusCode, ttfbMs: Math.max(0, ttfbMs), totalMs, bytes, lines, lastLine: parts[parts.length - 1] ?? '' }
}
