// The only file with side effects: reads process.env once, builds the app, listens, and shuts down
// gracefully. With no ATLAS_BASE_URL it starts the sandbox upstream in-process (the embedded default).
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { loadConfig, shutdownDeadlineMs, type Config } from './config.js'
import { buildApp } from './app.js'
import { sandboxOptionsFromEnv, startSandbox, type Sandbox, type SandboxOptions } from './sandbox/index.js'

// After the requests left at SHUTDOWN_TIMEOUT_MS were answered 503, their connections get this long to
// deliver that answer before every connection still open is closed.
const DEFAULT_CUT_GRACE_MS = 1000
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost'])

/** A HOST only this machine can reach: a loopback name or address (all of 127.0.0.0/8). */
function isLoopback (host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/**
 * The embedded sandbox's knobs, from the same SANDBOX_* variables `npm run sandbox` reads, so a demo or
 * a test can make the embedded upstream slow or flaky (the host and port stay loopback/ephemeral, so
 * SANDBOX_HOST and SANDBOX_PORT are not read). Read only when the sandbox starts: with ATLAS_BASE_URL
 * set, a SANDBOX_* variable left in the environment is not the gateway's concern.
 */
function embeddedSandboxOptions (env: Record<string, string | undefined>): SandboxOptions {
  return { ...sandboxOptionsFromEnv({ ...env, SANDBOX_HOST: undefined, SANDBOX_PORT: undefined }), host: '127.0.0.1', port: 0 }
}

/** A URL a person can paste: a wildcard listen address becomes localhost. */
function humanUrl (address: string): string {
  return address.replace('//0.0.0.0', '//localhost').replace('//[::]', '//localhost')
}

/** SIGHUP re-reads the consumers file; a failed reload keeps the previous consumers (it never throws). */
async function reloadConsumers (app: FastifyInstance): Promise<void> {
  const result = await app.consumers.reload()
  if (result.ok) app.log.info({ signal: 'SIGHUP' }, 'SIGHUP: consumers file reloaded')
  else app.log.error({ signal: 'SIGHUP', error: result.error }, 'SIGHUP: consumers file reload failed; the previous consumers stay')
}

async function main (): Promise<void> {
  let config: Config
  let sandboxOptions: SandboxOptions | undefined
  try {
    config = loadConfig(process.env)
    if (config.ATLAS_BASE_URL === '') sandboxOptions = embeddedSandboxOptions(process.env)
  } catch (err) {
    process.stderr.write(`atlas-gateway: invalid setting: ${(err as Error).message}\n`)
    process.exit(1)
  }

  let sandbox: Sandbox | undefined
  if (sandboxOptions !== undefined) {
    sandbox = await startSandbox(sandboxOptions)
    const writer = sandbox.users.write
    config = {
      ...config,
      ATLAS_BASE_URL: sandbox.baseUrl,
      ATLAS_TOKEN: sandbox.tokens.write,
      ATLAS_USERNAME: writer?.username ?? '',
      ATLAS_PASSWORD: writer?.password ?? ''
    }
  }

  const app = await buildApp(config)
  const drainMs = config.SHUTDOWN_DRAIN_MS
  const shutdownMs = config.SHUTDOWN_TIMEOUT_MS
  // SIGHUP means "reload" here, not "close" (close-with-grace handles it by default).
  closeWithGrace({
    delay: shutdownDeadlineMs(config),
    skip: ['SIGHUP'],
    logger: { error: (msg: unknown) => app.log.error({ detail: String(msg) }, 'shutdown did not finish') }
  }, async ({ signal, err }) => {
    // Only SIGTERM (an orchestrator stopping the replica) drains: nothing balances load onto a process
    // stopped with Ctrl-C (SIGINT), and a crash should not keep serving.
    const drain = signal === 'SIGTERM' ? drainMs : 0
    // /readyz answers 503 from now on, so load balancers stop sending new requests.
    app.health.drain()
    if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
    else if (drain > 0) app.log.info({ signal, drain_ms: drain, timeout_ms: shutdownMs }, 'shutting down: draining (/readyz 503, still serving)')
    else app.log.info({ signal, timeout_ms: shutdownMs }, 'shutting down: not ready, finishing in-flight requests')
    if (drain > 0) {
      await sleep(drain)
      app.log.info({ in_flight: app.health.inFlightCount, timeout_ms: shutdownMs }, 'drain over: closing the listener, finishing in-flight requests')
    }
    // app.close() stops accepting (requests that still arrive on kept-alive sockets get a 503 problem,
    // plugins/health.ts) and waits for in-flight requests before its onClose hooks close Redis and
    // abandon pending upstream calls. Requests still running at SHUTDOWN_TIMEOUT_MS are answered 503
    // instead of having their sockets cut, except writes already sent upstream: those may be in effect,
    // so their pending calls are abandoned right after, and each route answers its write as a lost reply
    // (504, kept under its Idempotency-Key) while Redis is still open.
    let grace: NodeJS.Timeout | undefined
    const cut = setTimeout(() => {
      const count = app.health.answerInFlight('SHUTDOWN_TIMEOUT_MS')
      app.upstream.client.destroy().catch((err: unknown) => { app.log.warn({ err }, 'abandoning upstream calls failed') })
      app.log.warn({ timeout_ms: shutdownMs, requests: count }, 'SHUTDOWN_TIMEOUT_MS reached: requests still running were answered (503, or a lost reply for a write already sent)')
      grace = setTimeout(() => { app.server.closeAllConnections() }, DEFAULT_CUT_GRACE_MS)
    }, shutdownMs)
    try {
      await app.close()
    } finally {
      clearTimeout(cut)
      clearTimeout(grace)
    }
    await sandbox?.close()
    app.log.info('shut down')
    // The log destination is asynchronous (logger.ts): write out what it holds before the process ends.
    const log = app.log as typeof app.log & { flush?: (cb: (err?: Error) => void) => void }
    await new Promise<void>((resolve) => { if (log.flush === undefined) resolve(); else log.flush(() => { resolve() }) })
  })
  // reloadConsumers logs its own failures; nothing is left to handle here.
  process.on('SIGHUP', () => { reloadConsumers(app).catch(() => {}) })

  let address: string
  try {
    address = await app.listen({ port: config.PORT, host: config.HOST })
  } catch (err) {
    app.log.fatal({ err }, 'cannot listen')
    await app.close()
    await sandbox?.close()
    process.exit(1)
  }
  if (sandbox !== undefined) {
    app.log.info({ upstream: sandbox.baseUrl }, 'embedded sandbox upstream started (set ATLAS_BASE_URL to use the real server)')
  }
  if (isLoopback(config.HOST)) {
    app.log.info({ host: config.HOST }, `listening on loopback only: other machines and containers cannot connect (set HOST=0.0.0.0 to serve them${config.CONSUMERS_FILE === '' ? '; the demo consumer has every scope' : ''})`)
  } else if (config.METRICS_TOKEN === '') {
    // Open by default (a scraper on the same network needs nothing), but an operator should know.
    app.log.warn({ host: config.HOST, setting: 'METRICS_TOKEN', exposed: ['/metrics', '/status'] },
      `METRICS_TOKEN is empty and HOST=${config.HOST} is not loopback: /metrics and /status are open to anyone who can reach this port, ` +
      'showing consumer ids, names and usage, the upstream budget and the token\'s state. Set METRICS_TOKEN to guard them.')
  }
  const url = humanUrl(address)
  app.log.info({ address, docs: `${url}/docs` }, 'atlas-gateway listening')
  app.log.info(`try it: curl -H "Authorization: Bearer <consumer key>" ${url}/v1/lists   (API docs: ${url}/docs)`)
}

try {
  await main()
} catch (err) {
  // A boot failure (e.g. an unreadable consumers file): say why in one line instead of a stack trace.
  process.stderr.write(`atlas-gateway: cannot start: ${(err as Error).message}\n`)
  process.exit(1)
}
