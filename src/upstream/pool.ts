// The connection pool to the upstream: an undici Pool of at most `connections` keep-alive connections,
// where each exchange has a deadline that covers its wait for a connection, and waits at most `waitMs`
// for one (so calls that hang cannot hold up every other call until their own deadline). Each exchange
// also reports whether it was sent: undici calls onRequestStart when it puts the request on a connected
// socket, just before writing it, which an interceptor passes on per call. A call that failed before
// that (refused connection, DNS failure, connect timeout, no free connection) never reached the upstream.
import { Pool, type Dispatcher } from 'undici'
import type { PoolCounts } from '../plugins/metrics.js'
import { PoolWaitError } from './error-map.js'

export interface PoolOptions {
  connections: number
  connectTimeoutMs: number
  /** Headers and body timeouts of one exchange (the deadline below is what callers set). */
  timeoutMs: number
}

/**
 * `isSent` turns true once the exchange was put on a connected socket (its bytes may reach the upstream),
 * and `onSent` is called then.
 */
export interface Attempt { isSent: boolean, onSent?: () => void }

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'signal'>

const KEEP_ALIVE_MS = 30_000

/** Passes every callback on, and reports when undici puts the request on a connected socket. */
class SentReporter implements Dispatcher.DispatchHandler {
  constructor (private readonly handler: Dispatcher.DispatchHandler, private readonly onSent: () => void) {}
  onRequestStart (controller: Dispatcher.DispatchController, context: unknown): void {
    this.onSent()
    this.handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestUpgrade']>>): void {
    this.handler.onRequestUpgrade?.(...args)
  }

  onResponseStart (...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>): void {
    this.handler.onResponseStart?.(...args)
  }

  onResponseData (...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseData']>>): void {
    this.handler.onResponseData?.(...args)
  }

  onResponseEnd (...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseEnd']>>): void {
    this.handler.onResponseEnd?.(...args)
  }

  onResponseError (...args: Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseError']>>): void {
    this.handler.onResponseError?.(...args)
  }
}

export function createUpstreamPool (origin: string, opts: PoolOptions) {
  const pool = new Pool(origin, {
    connections: opts.connections,
    connect: { timeout: opts.connectTimeoutMs },
    keepAliveTimeout: KEEP_ALIVE_MS,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs
  })
  const sentHooks = new WeakMap<AbortSignal, () => void>()
  // Exchanges not yet settled, so that a shutdown past its deadline can end each as what it is (abandon).
  const pending = new Map<AbortController, Attempt>()
  const dispatcher = pool.compose((dispatch) => (dispatchOpts, handler) => {
    // `signal` is a request option the dispatch types leave out; undici passes it through.
    const { signal } = dispatchOpts as { signal?: unknown }
    const onSent = signal instanceof AbortSignal ? sentHooks.get(signal) : undefined
    return dispatch(dispatchOpts, onSent === undefined ? handler : new SentReporter(handler, onSent))
  })

  /**
   * One request, bounded by `deadline`; `done` clears its timers once the body is read. A request still
   * waiting for a connection is not rejected by its abort signal until a connection takes it (undici
   * aborts it then, unsent), so that wait is raced here: after `waitMs` unsent, PoolWaitError.
   */
  async function exchange (request: RequestOptions, deadline: number, waitMs: number, attempt: Attempt): Promise<{ res: Dispatcher.ResponseData, done: () => void }> {
    const controller = new AbortController()
    sentHooks.set(controller.signal, () => {
      if (controller.signal.aborted) return
      attempt.isSent = true
      attempt.onSent?.()
    })
    const leftMs = Math.max(1, deadline - Date.now())
    const connectionWaitMs = Math.min(waitMs, leftMs)
    let waitTimer: NodeJS.Timeout | undefined
    const noConnection = new Promise<never>((_resolve, reject) => {
      waitTimer = setTimeout(() => {
        if (attempt.isSent) return
        const err = new PoolWaitError(`no free upstream connection within ${connectionWaitMs} ms`)
        controller.abort(err)
        reject(err)
      }, connectionWaitMs)
    })
    const deadlineTimer = setTimeout(() => controller.abort(new DOMException('the upstream call deadline passed', 'TimeoutError')), leftMs)
    pending.set(controller, attempt)
    const done = () => { clearTimeout(waitTimer); clearTimeout(deadlineTimer); pending.delete(controller) }
    const requested = dispatcher.request({ ...request, signal: controller.signal })
    // Settles when a connection takes the aborted request, long after the race below is decided.
    requested.catch(() => {})
    try {
      const res = await Promise.race([requested, noConnection])
      clearTimeout(waitTimer)
      return { res, done }
    } catch (err) {
      done()
      throw err
    }
  }

  /** A GET of `path` that any HTTP answer satisfies, for a health check; throws when none comes. */
  async function ping (path: string, timeoutMs: number): Promise<boolean> {
    const { res, done } = await exchange({ method: 'GET', path }, Date.now() + timeoutMs, timeoutMs, { isSent: false })
    try {
      await res.body.dump()
    } finally {
      done()
    }
    return res.statusCode > 0
  }

  return {
    exchange,
    ping,
    stats: (): PoolCounts => {
      const { connected, free, pending, queued, running } = pool.stats
      return { connected, free, pending, queued, running }
    },
    close: () => pool.close(),
    /**
     * Abandons exchanges still pending instead of waiting for them, and refuses new ones. One already
     * sent ends as its deadline passing would (a timeout: its reply is lost, and a write may have been
     * applied, so it is answered as a lost reply); one not sent yet ends as an abort, which says the
     * upstream never saw it.
     */
    destroy: async () => {
      for (const [controller, attempt] of pending) {
        controller.abort(attempt.isSent
          ? new DOMException('the gateway shut down before the upstream answered', 'TimeoutError')
          : new DOMException('the gateway shut down before the call was sent', 'AbortError'))
      }
      pending.clear()
      await pool.destroy()
    }
  }
}
