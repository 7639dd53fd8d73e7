// The replica's lifecycle and its dependencies' health, kept apart on purpose. /readyz says whether this
// replica can take traffic (started and not shutting down): a cache keeps serving while Redis or the
// upstream is down, so their outages must not take every replica out of the load balancer. /healthz
// (liveness) reports the dependencies as a background check last saw them, and no probe ever calls
// the upstream or Redis itself. The plugin also tracks requests in flight, so that a shutdown can
// answer the ones still running at its deadline instead of cutting their sockets.
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Type } from '@sinclair/typebox'
import { UnavailableError, withRetryAfter } from '../errors.js'
import { presentsMetricsToken, routeLabel } from './metrics.js'
import { routeOf } from '../lib/route.js'

declare module 'fastify' {
  interface FastifyInstance {
    health: ReturnType<typeof createHealth>
  }
  interface FastifyRequest {
    /** Set once one of the request's upstream writes was sent (audit/plugin.ts): it may be in effect. */
    isWriteSent: boolean
    /** Set when the client hung up before the response was complete (the access line says so). */
    isClientGone: boolean
  }
}

/**
 * `detail` is text the check wrote itself, shown to anyone. `cause` is the message of an error the check
 * threw (runCheck): it may name internal hosts and addresses, so it is logged and shown only to an
 * operator, while everyone else gets a stable `detail` with the error's code.
 */
export interface CheckResult { ok: boolean, detail?: string, cause?: string }
type Check = () => Promise<CheckResult>

/** starting → ready → draining (SIGTERM: /readyz 503, still serving) → closing (new requests get 503). */
export type LifecycleState = 'starting' | 'ready' | 'draining' | 'closing'

export interface DependencyState {
  status: 'up' | 'down' | 'unknown'
  detail?: string
  /** The raw message of the error the check threw (see CheckResult); never on an anonymous /healthz. */
  cause?: string
  /** When the check last ran (ISO 8601). */
  checked_at?: string
  /** Since when the status has been what it is (ISO 8601). */
  since?: string
}

export interface HealthOptions {
  /** Told about every check result, e.g. to set a gauge and log transitions. */
  onResult?: (name: string, state: DependencyState, previous: DependencyState['status']) => void
}

const DEFAULT_CHECK_TIMEOUT_MS = 2000
// A Node or undici error code (ENOTFOUND, ECONNREFUSED, UND_ERR_CONNECT_TIMEOUT): names the kind of
// failure without its hosts or addresses.
const ERROR_CODE = /^[A-Z][A-Z0-9_]{1,47}$/

/** What anyone may read about a check that threw: a stable text, with the error's code when it has one. */
function thrownDetail (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && ERROR_CODE.test(code) ? `check failed (${code}); the reason is in the log` : 'check failed; the reason is in the log'
}

function thrownResult (err: unknown): CheckResult {
  return { ok: false, detail: thrownDetail(err), cause: err instanceof Error ? err.message : String(err) }
}

async function runCheck (check: Check): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<CheckResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${DEFAULT_CHECK_TIMEOUT_MS} ms` }), DEFAULT_CHECK_TIMEOUT_MS)
  })
  try {
    return await Promise.race([check().catch(thrownResult), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export function createHealth (opts: HealthOptions = {}) {
  const checks = new Map<string, Check>()
  const states = new Map<string, DependencyState>()
  // Requests in flight, oldest first, as a linked list rather than a Map: a Map's set and delete on every
  // request keep reallocating its backing table (see lib/recency.ts), which under load outlived the young
  // generation and fed major GCs.
  let oldest: InFlight | undefined
  let newest: InFlight | undefined
  let inFlightCount = 0
  const unlink = (node: InFlight): void => {
    if (node.prev === undefined) oldest = node.next
    else node.prev.next = node.next
    if (node.next === undefined) newest = node.prev
    else node.next.prev = node.prev
    inFlightCount--
  }
  let state: LifecycleState = 'starting'
  let isChecking = false
  // How a response its route ends itself once under way (a bulk stream) ends when cut, and how the log
  // says so; only such responses register one, so this holds no entry for most requests.
  const cutHandlers = new WeakMap<FastifyRequest, { end: (err: Error) => void, ending: string }>()

  return {
    /** Registers a dependency check; it runs in the background only (runChecks), never per probe. */
    addCheck (name: string, check: Check): void {
      checks.set(name, check)
      states.set(name, { status: 'unknown' })
    },
    get state (): LifecycleState { return state },
    get isReady (): boolean { return state === 'ready' },
    markReady (): void { if (state === 'starting') state = 'ready' },
    /** /readyz turns 503 while requests are still served. */
    drain (): void { if (state !== 'closing') state = 'draining' },
    /** New requests get 503 (the listener is closing). */
    markClosing (): void { state = 'closing' },

    /**
     * Each dependency as last checked. An error's raw text (`cause`) only when `isOperator`, and then in
     * place of the stable detail; never as a field of its own.
     */
    dependencies (isOperator = false): Record<string, DependencyState> {
      return Object.fromEntries([...states].map(([name, { cause, ...shown }]) => {
        return [name, isOperator && cause !== undefined ? { ...shown, detail: cause } : shown]
      }))
    },

    /** One round of every check, in parallel; a round still running makes the next one a no-op. */
    async runChecks (): Promise<void> {
      if (isChecking) return
      isChecking = true
      try {
        await Promise.all([...checks].map(async ([name, check]) => {
          const result = await runCheck(check)
          const previous = states.get(name) ?? { status: 'unknown' }
          const now = new Date().toISOString()
          const status = result.ok ? 'up' : 'down'
          const next: DependencyState = { status, checked_at: now, since: status === previous.status ? previous.since ?? now : now }
          if (result.detail !== undefined) next.detail = result.detail
          if (result.cause !== undefined) next.cause = result.cause
          states.set(name, next)
          opts.onResult?.(name, next, previous.status)
        }))
      } finally {
        isChecking = false
      }
    },

    track (request: FastifyRequest, reply: FastifyReply): void {
      const node: InFlight = { request, reply, prev: newest, next: undefined }
      if (newest === undefined) oldest = node
      else newest.next = node
      newest = node
      inFlightCount++
      // 'close' comes (once) when the response is done or the connection is gone, whichever is first.
      // A response already under way whose connection went (a stream cut, a body half written) is
      // finished for the onResponse hooks here; one the handler had not yet sent, by clientGoneOnSend.
      reply.raw.once('close', () => {
        unlink(node)
        if (reply.raw.headersSent) endForHooks(reply)
      })
    },
    get inFlightCount (): number { return inFlightCount },
    /**
     * `end` ends the request's response, already under way, with `err` when a shutdown cuts it (an NDJSON
     * stream writes its error line and ends: the connection then stays open for the caller's grace; a JSON
     * bulk stream closes its connection). `ending` says how, in the cut's log line.
     */
    whenCut (request: FastifyRequest, end: (err: Error) => void, ending: string): void {
      cutHandlers.set(request, { end, ending })
    },

    /**
     * Answers every request still running with a 503 problem (rendered by the route's own error handler)
     * and logs each; a response already under way cannot change its status, so it is ended by its own
     * handler (whenCut) or else its connection is closed, and that is logged too. A request whose
     * upstream write was sent is left to its route: the write may be in effect, and a 503 inviting a
     * retry could apply it twice, so the caller abandons the upstream calls next and the route answers it
     * as a lost reply. Returns how many requests were cut.
     */
    answerInFlight (reason: string): number {
      let cut = 0
      for (let node = oldest; node !== undefined; node = node.next) {
        const { request, reply } = node
        if (reply.raw.writableEnded) continue
        cut++
        const fields = { route: routeLabel(request), method: request.method, elapsed_ms: Math.round(reply.elapsedTime) }
        // Headers on the wire, or a hijacked reply (sent, yet not ended): only the connection can go.
        if (reply.raw.headersSent || reply.sent) {
          const handler = cutHandlers.get(request)
          if (handler !== undefined) {
            request.log.warn({ ...fields, status: reply.statusCode }, `request cut at ${reason}: its response had started, ${handler.ending}`)
            handler.end(new UnavailableError('The gateway shut down before this stream finished; request the ids after the last line again (another replica will answer).'))
            continue
          }
          request.log.warn({ ...fields, status: reply.statusCode }, `request cut at ${reason}: its response had started, closing the connection`)
          request.raw.socket?.destroy()
          continue
        }
        if (request.isWriteSent) {
          request.log.warn(fields, `request cut at ${reason}: its write was sent upstream, answered as a lost reply`)
          reply.header('connection', 'close')
          continue
        }
        request.log.warn(fields, `request cut at ${reason}: answered 503`)
        reply.header('connection', 'close')
        reply.send(withRetryAfter(new UnavailableError('The gateway shut down before this request finished; retry (another replica will answer).'), 1))
      }
      return cut
    }
  }
}

interface InFlight { request: FastifyRequest, reply: FastifyReply, prev: InFlight | undefined, next: InFlight | undefined }

const DependencySchema = Type.Object({
  status: Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown')]),
  detail: Type.Optional(Type.String()),
  checked_at: Type.Optional(Type.String()),
  since: Type.Optional(Type.String())
})
// The code a stream's premature close carries: a route that returns its reply while a stream runs (SSE,
// NDJSON) awaits the response's end, and Fastify treats this one code as the client leaving, not as the
// route failing (any other would be sent to the error handler, logged as an error, and answered again).
const CLIENT_GONE = Object.assign(new Error('the client closed the connection before the response was complete'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })

/**
 * Fastify runs the onResponse hooks (the access line, usage, metrics, the refund of a 5xx's units) when
 * the response emits 'finish' or 'error', and one whose client hung up emits neither: the request, which
 * may have spent units, a share and upstream calls, would go unrecorded. So it gets the 'error' Fastify
 * listens for. Once only: Node detaches the socket from a response that finished (so `socket` is null
 * then; `writableFinished` is true also for one whose bytes a dead socket dropped), and Fastify removes
 * its listener on the first of the two events.
 */
function endForHooks (reply: FastifyReply): void {
  const socket = reply.raw.socket
  if (socket === null || !socket.destroyed || reply.raw.listenerCount('error') === 0) return
  reply.request.isClientGone = true
  reply.raw.emit('error', CLIENT_GONE)
}

/**
 * The app's last onSend step (app.ts registers it after its others; the route-level steps, those of
 * @fastify/compress, a write's Idempotency-Key and Fastify's HEAD route, run after it): a response sent
 * after its client hung up is ended for the hooks once Fastify has written what it could (with its
 * final status).
 */
export function clientGoneOnSend (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
  const socket = request.raw.socket as Socket | null
  if (socket !== null && !socket.destroyed) return done(null, payload)
  setImmediate(endForHooks, reply)
  // A stream piped into the dead socket ends in a premature close that Fastify answers as a 500, the
  // units of the records fetched then given back: the route's own stream is not read at all, and
  // @fastify/compress (its step runs after this one) is told not to make one of a Buffer. A Buffer goes
  // on as it is: later steps still read it (a write's outcome is kept under its Idempotency-Key from it,
  // and replayed to the retry). Fastify's HEAD step, also after this one, throws on a null body.
  request.headers['x-no-compression'] = '1'
  if (!(payload instanceof Readable)) return done(null, payload)
  payload.destroy()
  done(null, request.method === 'HEAD' ? NO_BODY : null)
}

const NO_BODY = Buffer.alloc(0)

const StateSchema = Type.Union([Type.Literal('starting'), Type.Literal('ready'), Type.Literal('draining'), Type.Literal('closing')])
const ReadySchema = Type.Object({ ready: Type.Boolean(), state: StateSchema })

export const healthPlugin = fp(async (app) => {
  app.decorateRequest('isWriteSent', false)
  app.decorateRequest('isClientGone', false)
  app.decorate('health', createHealth({
    onResult: (name, state, previous) => {
      // Registered after this plugin; present in every app buildApp assembles.
      if (app.hasDecorator('metrics')) app.metrics.dependencyUp.set({ dependency: name }, state.status === 'up' ? 1 : 0)
      if (state.status === previous) return
      if (state.status === 'down') app.log.warn({ dependency: name, detail: state.cause ?? state.detail }, `dependency down: ${name}`)
      else if (previous === 'down') app.log.info({ dependency: name }, `dependency up again: ${name}`)
    }
  }))

  // The first round runs one interval after boot, not at once: a replica that just started has just
  // connected to Redis, and an extra upstream call per boot helps nobody.
  const intervalMs = app.config.HEALTH_CHECK_INTERVAL_MS
  let timer: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    app.health.markReady()
    // runChecks catches every check's failure itself.
    timer = setInterval(() => { app.health.runChecks().catch(() => {}) }, intervalMs)
    timer.unref()
  })
  // Closing for any reason (a signal, a test) turns /readyz to 503 and refuses new work with a problem,
  // while in-flight requests finish.
  app.addHook('preClose', async () => {
    clearInterval(timer)
    app.health.markClosing()
  })

  app.addHook('onRequest', (request, reply, done) => {
    const { state } = app.health
    if (state === 'ready') {
      app.health.track(request, reply)
      return done()
    }
    // Draining and closing: keep-alive clients (a load balancer's pooled connections) move to another
    // replica after this response.
    reply.header('connection', 'close')
    if (state === 'draining' || routeOf(request).config.public === true) {
      app.health.track(request, reply)
      return done()
    }
    done(withRetryAfter(new UnavailableError('The gateway is shutting down; retry (another replica will answer).'), 1))
  })

  // Public, for liveness probes; an operator presenting METRICS_TOKEN (when set) also sees the raw text of
  // a failed check's error, which anyone else gets only as a stable detail (it names internal hosts).
  app.get('/healthz', {
    config: { public: true },
    schema: {
      hide: true,
      response: {
        200: Type.Object({ status: Type.Literal('ok'), state: StateSchema, checks: Type.Record(Type.String(), DependencySchema) })
      }
    }
  }, async (request) => ({ status: 'ok' as const, state: app.health.state, checks: app.health.dependencies(presentsMetricsToken(request)) }))

  app.get('/readyz', {
    config: { public: true },
    schema: { hide: true, response: { 200: ReadySchema, 503: ReadySchema } }
  }, async (_request, reply) => {
    const { isReady, state } = app.health
    return reply.code(isReady ? 200 : 503).send({ ready: isReady, state })
  })
}, { name: 'health', fastify: '5.x' })
