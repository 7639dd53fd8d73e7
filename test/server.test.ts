// src/server.ts as a real process: boot, hints, SIGHUP reload, and graceful shutdown on SIGTERM with a
// request in flight. Ordering comes from observable events (the upstream saw the call, a log line was
// written), never from sleeps.
import { test } from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { startTestSandbox } from './helper.js'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const POLL_MS = 20
// Settings the caller's environment might carry that would change what the process under test does.
const CLEARED = /^(ATLAS_|REDIS_|CONSUMERS_FILE$|METRICS_TOKEN$|PORT$|HOST$|SANDBOX_|LOG_LEVEL$|SHUTDOWN_TIMEOUT_MS$)/

interface LogLine { msg?: string, [field: string]: unknown }

interface ServerProcess {
  lines: LogLine[]
  stderr: () => string
  /** Resolves with the first log line (past or future) that matches. */
  waitFor: (match: (line: LogLine) => boolean) => Promise<LogLine>
  exited: Promise<number | null>
  signal: (name: NodeJS.Signals) => void
}

function startServer (t: Test, env: Record<string, string>): ServerProcess {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !CLEARED.test(k)))
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: ROOT,
    env: { ...base, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: LogLine[] = []
  const waiters: Array<{ match: (l: LogLine) => boolean, resolve: (l: LogLine) => void }> = []
  let pending = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk
    const parts = pending.split('\n')
    pending = parts.pop() ?? ''
    for (const part of parts) {
      if (part.trim() === '') continue
      let line: LogLine
      try { line = JSON.parse(part) as LogLine } catch { line = { msg: part } }
      lines.push(line)
      for (const w of waiters.filter((x) => x.match(line))) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return {
    lines,
    stderr: () => stderr,
    exited,
    signal: (name) => { child.kill(name) },
    waitFor: async (match) => {
      const seen = lines.find(match)
      if (seen !== undefined) return seen
      return new Promise<LogLine>((resolve, reject) => {
        waiters.push({ match, resolve })
        exited.then((code) => reject(new Error(`server exited (${code}) first; stderr: ${stderr}`)), () => {})
      })
    }
  }
}

const byMsg = (text: string | RegExp) => (l: LogLine) => typeof l.msg === 'string' && (typeof text === 'string' ? l.msg === text : text.test(l.msg))

async function listeningAddress (server: ServerProcess): Promise<string> {
  const line = await server.waitFor(byMsg('atlas-gateway listening'))
  return String(line.address)
}

async function demoKey (server: ServerProcess): Promise<string> {
  const line = await server.waitFor(byMsg(/^demo consumer key: [0-9a-f]{40}/))
  return String(line.msg).slice('demo consumer key: '.length, 'demo consumer key: '.length + 40)
}

/** A GET on a connection of its own, so that it is a new connection to the server. */
async function freshGet (url: string, headers: Record<string, string> = {}) {
  const dispatcher = new Agent({ pipelining: 0 })
  try {
    const res = await request(url, { headers, dispatcher })
    return { status: res.statusCode, body: await res.body.text() }
  } finally {
    await dispatcher.close()
  }
}

async function until (condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, POLL_MS))
}

test('SIGTERM: the in-flight request completes, new connections are refused, exit code 0', async (t) => {
  const sandbox = await startTestSandbox(t)
  const server = startServer(t, {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    SHUTDOWN_TIMEOUT_MS: '20000'
  })
  const address = await listeningAddress(server)
  const key = await demoKey(server)
  const id = String(sandbox.ids()[0])

  // The upstream holds the object read until released by its delay; the test waits until the upstream
  // has the call, so SIGTERM certainly arrives while the gateway request is in flight.
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1500 })
  const slow = freshGet(`${address}/v1/objects/${id}`, { authorization: `Bearer ${key}` })
  await until(() => (sandbox.calls.get('objects') ?? 0) >= 1)

  server.signal('SIGTERM')
  await server.waitFor(byMsg(/^shutting down/))
  // Depending on how far the close has got: the listener is gone (refused), the kernel had queued the
  // connection when the listener closed (reset; undici reports UND_ERR_SOCKET when the peer closes), or
  // Fastify is closing (503). Never served.
  const late = await freshGet(`${address}/healthz`).then((r) => String(r.status), (err: { code?: string }) => err.code ?? 'error')
  t.ok(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', '503'].includes(late), `a new request after SIGTERM is refused (${late})`)

  const done = await slow
  t.equal(done.status, 200, 'the in-flight request completes')
  t.match(done.body, id)
  t.equal(await server.exited, 0, 'exit code 0')
  t.ok(server.lines.some(byMsg('shut down')))
  const access = server.lines.filter(byMsg('request completed'))
  t.ok(access.some((l) => l.route === '/v1/objects/:id' && l.status === 200), 'the in-flight request was logged')
})

test('embedded defaults: boots with the sandbox, prints how to call it, reloads on SIGHUP, exits 0', async (t) => {
  const server = startServer(t, {})
  const address = await listeningAddress(server)
  t.match(address, /^http:\/\/127\.0\.0\.1:\d+$/)
  await server.waitFor(byMsg(/embedded sandbox upstream started/))
  const hint = await server.waitFor(byMsg(/^try it: curl/))
  t.match(hint.msg, `${address}/docs`, 'the hint names the docs page')
  await demoKey(server)
  t.equal((await freshGet(`${address}/healthz`)).status, 200)

  server.signal('SIGHUP')
  const reload = await server.waitFor(byMsg(/^SIGHUP:/))
  t.match(reload.msg, /reloaded|nothing to reload/)
  t.equal((await freshGet(`${address}/healthz`)).status, 200, 'SIGHUP does not stop the server')

  server.signal('SIGTERM')
  t.equal(await server.exited, 0)
})

test('a bad embedded-sandbox knob stops the boot with a message naming it', async (t) => {
  const server = startServer(t, { SANDBOX_LATENCY_MS: 'slow' })
  t.equal(await server.exited, 1)
  t.match(server.stderr(), /SANDBOX_LATENCY_MS/)
})

test('a bad setting stops the boot with a message naming it', async (t) => {
  const server = startServer(t, { PORT: 'eighty' })
  t.equal(await server.exited, 1)
  t.match(server.stderr(), /PORT/)
})
