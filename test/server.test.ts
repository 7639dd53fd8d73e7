// src/server.ts as a real process: boot, hints, SIGHUP reload, and graceful shutdown on SIGTERM with a
// request in flight. Ordering comes from observable events (the upstream saw the call, a log line was
// written), never from sleeps.
import { test } from 'tap'
import { networkInterfaces } from 'node:os'
import { startTestSandbox } from './helper.js'
import { consumersFile, makeConsumer } from './consumer-helper.js'
import { byMsg, demoKey, freshGet, freshGetOrCode, listeningAddress, startServer } from './fixtures/server-process.js'
import { waitFor } from './fixtures/wait.js'

test('SIGTERM: the in-flight request completes, new connections are refused, exit code 0', async (t) => {
  const sandbox = await startTestSandbox(t)
  const server = startServer(t, {
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    // No drain: the listener closes at once (test/faults/shutdown.test.ts covers the drain).
    SHUTDOWN_DRAIN_MS: '0',
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
  await waitFor('the upstream call', () => (sandbox.calls.get('objects') ?? 0) >= 1)

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

test('embedded defaults: boots with the sandbox on loopback only, prints how to call it, reloads on SIGHUP, exits 0', async (t) => {
  // No HOST at all: the demo consumer has every scope and /metrics is open, so the default is loopback.
  const server = startServer(t, {}, { omit: ['HOST'] })
  const address = await listeningAddress(server)
  t.match(address, /^http:\/\/127\.0\.0\.1:\d+$/)
  // Fastify reports a wildcard bind as 127.0.0.1 too; what proves the bind is that another interface's
  // address refuses the connection.
  const other = Object.values(networkInterfaces()).flat().find((i) => i?.family === 'IPv4' && !i.internal)
  if (other === undefined) t.comment('no non-loopback IPv4 interface here: the bind itself is not checked')
  else {
    const outside = await freshGetOrCode(address.replace('127.0.0.1', other.address) + '/healthz')
    t.equal(outside, 'ECONNREFUSED', `not reachable on ${other.address}`)
  }
  const notice = await server.waitFor(byMsg(/^listening on loopback only/))
  t.match(notice, { host: '127.0.0.1' }, 'a log line says so and names HOST')
  t.match(notice.msg, /HOST=0\.0\.0\.0/)
  await server.waitFor(byMsg(/embedded sandbox upstream started/))
  const hint = await server.waitFor(byMsg(/^try it: curl/))
  t.match(hint.msg, `${address}/docs`, 'the hint names the docs page')
  t.notOk(server.lines.some(byMsg(/METRICS_TOKEN/)), 'on loopback, no warning about METRICS_TOKEN')
  await demoKey(server)
  t.equal((await freshGet(`${address}/healthz`)).status, 200)

  server.signal('SIGHUP')
  const reload = await server.waitFor(byMsg(/^SIGHUP:/))
  t.match(reload.msg, /reloaded|nothing to reload/)
  t.equal((await freshGet(`${address}/healthz`)).status, 200, 'SIGHUP does not stop the server')

  // Ctrl-C at a terminal: no drain (nothing balances load onto this process), exit 0.
  server.signal('SIGINT')
  t.equal(await server.exited, 0)
  t.notOk(server.lines.some(byMsg(/draining/)), 'SIGINT skips the drain')
})

test('a bad embedded-sandbox knob stops the boot with a message naming it', async (t) => {
  const server = startServer(t, { SANDBOX_LATENCY_MS: 'slow' })
  t.equal(await server.exited, 1)
  t.match(server.stderr(), /SANDBOX_LATENCY_MS/)
})

test('a bad embedded-sandbox knob is named by its variable, out-of-range values included', async (t) => {
  // Before: "cannot start: sandbox option errorRate must be between 0 and 1" and "invalid throttle rate".
  for (const [name, value] of [['SANDBOX_ERROR_RATE', '5'], ['SANDBOX_THROTTLE_RATE', 'lots']] as const) {
    const server = startServer(t, { [name]: value })
    t.equal(await server.exited, 1, `${name}=${value}`)
    t.match(server.stderr(), new RegExp(`^atlas-gateway: invalid setting: ${name}`), `${name}=${value} is named`)
  }
})

test('SANDBOX_* knobs are not read when ATLAS_BASE_URL names a real upstream', async (t) => {
  const sandbox = await startTestSandbox(t)
  // Before: "invalid setting: SANDBOX_SEED must be a number", though no sandbox was to start.
  const server = startServer(t, { ATLAS_BASE_URL: sandbox.baseUrl, ATLAS_TOKEN: sandbox.tokens.write, SANDBOX_SEED: 'abc', SANDBOX_ERROR_RATE: '5', SHUTDOWN_DRAIN_MS: '0' })
  const address = await listeningAddress(server)
  t.equal((await freshGet(`${address}/healthz`)).status, 200)
  server.signal('SIGINT')
  t.equal(await server.exited, 0)
})

test('a bad setting stops the boot with a message naming it', async (t) => {
  const server = startServer(t, { PORT: 'eighty' })
  t.equal(await server.exited, 1)
  t.match(server.stderr(), /PORT/)
})

test('listening beyond loopback with METRICS_TOKEN empty: a warning at boot names the setting and what is open', async (t) => {
  // The image's HOST. Boots, logs and stops at once (SIGINT); a consumers file of one read-only key
  // that nothing else knows, so that no demo consumer with every scope listens on every interface.
  const CONSUMERS_FILE = consumersFile(t, [makeConsumer('reader', { scopes: ['read'] })])
  const open = startServer(t, { HOST: '0.0.0.0', CONSUMERS_FILE })
  await listeningAddress(open)
  const warning = await open.waitFor(byMsg(/METRICS_TOKEN/))
  t.match(warning, { level: 40, host: '0.0.0.0', setting: 'METRICS_TOKEN' })
  t.match(warning.msg, /METRICS_TOKEN is empty/)
  t.match(warning.msg, /\/metrics and \/status/, 'names the routes')
  t.match(warning.msg, /consumer ids, names and usage/, 'and what they show')
  await open.waitFor(byMsg(/^try it: curl/))
  open.signal('SIGINT')
  t.equal(await open.exited, 0)

  const guarded = startServer(t, { HOST: '0.0.0.0', CONSUMERS_FILE, METRICS_TOKEN: 'boot-warning-token-0123456789' })
  await listeningAddress(guarded)
  await guarded.waitFor(byMsg(/^try it: curl/))
  t.notOk(guarded.lines.some(byMsg(/METRICS_TOKEN/)), 'with METRICS_TOKEN set, no warning')
  guarded.signal('SIGINT')
  t.equal(await guarded.exited, 0)
})
