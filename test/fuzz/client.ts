// Sends one FuzzRequest over a fresh loopback TCP connection, byte for byte (node:net: no client-side
// validation of methods, targets or header values), and parses the answer as it arrives.
import { connect } from 'node:net'
import { OMIT, qAll, type FuzzRequest } from './model.js'

export interface Secrets {
  key: string
  read: string
  list: string
  bad: string
}

export interface FuzzResponse {
  /** 0 when no complete answer came (see `error`). */
  status: number
  headers: Record<string, string[]>
  body: string
  /** Set when the connection failed, closed early or timed out. */
  error?: string
  ms: number
}

/** Replaces the placeholders of model.ts with the real keys. */
export function substitute (text: string, s: Secrets): string {
  return text
    .replaceAll('{{KEY:pct}}', qAll(s.key))
    .replaceAll('{{KEY:upper}}', s.key.toUpperCase())
    .replaceAll('{{KEY}}', s.key)
    .replaceAll('{{READ}}', s.read)
    .replaceAll('{{LIST}}', s.list)
    .replaceAll('{{BAD}}', s.bad)
}

function bodyOf (req: FuzzRequest, s: Secrets): Buffer | undefined {
  if (req.bodyRepeat !== undefined) {
    const r = req.bodyRepeat
    return Buffer.from(substitute(r.prefix, s) + r.chunk.repeat(r.times) + substitute(r.suffix, s), 'utf8')
  }
  return req.body === undefined ? undefined : Buffer.from(substitute(req.body, s), 'utf8')
}

export function encodeRequest (req: FuzzRequest, s: Secrets, port: number): Buffer {
  const body = bodyOf(req, s)
  const names = new Set(req.headers.map(([k]) => k.toLowerCase()))
  const lines = [`${req.method} ${substitute(req.target, s)} HTTP/1.1`]
  if (!names.has('host')) lines.push(`Host: 127.0.0.1:${port}`)
  for (const [k, v] of req.headers) if (v !== OMIT) lines.push(`${k}: ${substitute(v, s)}`)
  if (body !== undefined && !names.has('content-length') && !names.has('transfer-encoding')) lines.push(`Content-Length: ${body.length}`)
  lines.push('Connection: close')
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'utf8')
  return body === undefined ? head : Buffer.concat([head, body])
}

interface Parsed { status: number, headers: Record<string, string[]>, body: string }

/** One complete response from the bytes so far, or undefined when more are needed. */
function parse (data: Buffer, isHead: boolean, isClosed: boolean): Parsed | undefined {
  let offset = 0
  for (;;) {
    const end = data.indexOf('\r\n\r\n', offset)
    if (end === -1) return undefined
    const [statusLine = '', ...headerLines] = data.subarray(offset, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(statusLine)?.[1] ?? 0)
    const headers: Record<string, string[]> = {}
    for (const line of headerLines) {
      const i = line.indexOf(':')
      const name = line.slice(0, i).trim().toLowerCase()
      const list = headers[name] ?? (headers[name] = [])
      list.push(line.slice(i + 1).trim())
    }
    const start = end + 4
    // Interim answers (100 Continue) come before the real one.
    if (status >= 100 && status < 200) {
      offset = start
      continue
    }
    if (isHead || status === 204 || status === 304) return { status, headers, body: '' }
    if ((headers['transfer-encoding']?.[0] ?? '').toLowerCase().includes('chunked')) {
      const chunks: Buffer[] = []
      let at = start
      for (;;) {
        const lineEnd = data.indexOf('\r\n', at)
        if (lineEnd === -1) return undefined
        const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16)
        if (Number.isNaN(size)) return { status, headers, body: Buffer.concat(chunks).toString('utf8') }
        if (size === 0) return { status, headers, body: Buffer.concat(chunks).toString('utf8') }
        if (data.length < lineEnd + 2 + size + 2) return undefined
        chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size))
        at = lineEnd + 2 + size + 2
      }
    }
    const length = headers['content-length']?.[0]
    if (length !== undefined) {
      const n = Number(length)
      return data.length - start >= n ? { status, headers, body: data.subarray(start, start + n).toString('utf8') } : undefined
    }
    return isClosed ? { status, headers, body: data.subarray(start).toString('utf8') } : undefined
  }
}

export function sendRequest (port: number, req: FuzzRequest, s: Secrets, timeoutMs: number): Promise<FuzzResponse> {
  const started = performance.now()
  const isHead = req.method === 'HEAD'
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let settled = false
    const socket = connect({ host: '127.0.0.1', port })
    const finish = (error?: string) => {
      if (settled) return
      const parsed = parse(Buffer.concat(chunks), isHead, true)
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const ms = performance.now() - started
      if (parsed !== undefined && parsed.status > 0) resolve({ ...parsed, ms })
      else resolve({ status: 0, headers: {}, body: Buffer.concat(chunks).toString('utf8'), error: error ?? 'connection closed without an answer', ms })
    }
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs)
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      const parsed = parse(Buffer.concat(chunks), isHead, false)
      if (parsed !== undefined) finish()
    })
    socket.on('end', () => finish())
    socket.on('close', () => finish())
    // A server may answer (413, 400) and close before it has read the whole body: keep what arrived.
    socket.on('error', (err) => finish(`socket error ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    // No half-close: Node's HTTP server drops a connection whose client has ended before it answered.
    socket.on('connect', () => {
      socket.write(encodeRequest(req, s, port))
    })
  })
}
