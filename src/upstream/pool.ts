// The connection pool to the upstream: an undici Pool of at most `connections` keep-alive connections,
// where each exchange has a deadline that covers its wait for a connection, and waits at most `waitMs`
// for one (so calls that hang cannot hold up every other call until their own deadline). Each exchange
// also reports whether it was sent: undici calls onRequestStart when it puts the request on a connected
// socket, just before writing it, which an interceptor passes on per call. A call that failed before
// that (refused connection, DNS failure, connect timeout, no free connection) never reached the upstream.
//
// The wait for a connection is ours, not undici's: an exchange is handed to undici only once it holds one
// of `connections` slots, so undici's own queue stays empty. A request aborted in undici's queue stays
// there until a connection takes it, and that connection is then destroyed: calls refused after `waitMs`
// used to pile up there while the connections hung, holding their memory, and once the hang ended each
// cost a reconnect ahead of every new call. A waiter that gives up here just leaves the queue.
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

/**
 * `size` slots, each for one exchange handed to undici; an exchange that finds none waits in line, first
 * come first served, until one is released or its signal aborts (then it leaves the line at once).
 */
class Slots {
  private free: number
  private readonly line = new Set<() => void>()

  constructor (size: number) {
    this.free = size
  }

  /** Exchanges waiting for a slot. */
  get waiting (): number {
    return this.line.size
  }

  /** Takes a free slot if there is one and nobody is waiting for it. */
  take (): boolean {
    if (this.free === 0) return false
    this.free--
    return true
  }

  /** Resolves once a slot is handed over (held from then on); rejects with the reason if `signal` aborts first. */
  wait (signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.line.delete(grant)
        reject(signal.reason)
      }
      const grant = () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.line.add(grant)
    })
  }

  /** A released slot goes straight to the longest waiter, if any. */
  release (): void {
    const first = this.line.values().next()
    if (first.done === true) {
      this.free++
      return
    }
    this.line.delete(first.value)
    first.value()
  }
}

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
  const slots = new Slots(opts.connections)
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
   * One request, bounded by `deadline`; `done` clears its timers and frees its slot once the body is read.
   * After `waitMs` unsent (waiting for a slot, or for its connection to be made), PoolWaitError. A request
   * undici holds that is aborted before a connection takes it is not rejected until then (undici drops it
   * unsent), so its slot is released only when undici settles it, and that wait is raced here.
   */
  async function exchange (request: RequestOptions, deadline: number, waitMs: number, attempt: Attempt): Promise<{ res: Dispatcher.ResponseData, done: () => void }> {
    const controller = new AbortController()
    const { signal } = controller
    sentHooks.set(signal, () => {
      if (signal.aborted) return
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
    let isOver = false
    const end = () => { isOver = true; clearTimeout(waitTimer); clearTimeout(deadlineTimer); pending.delete(controller) }
    try {
      if (!slots.take()) await Promise.race([slots.wait(signal), noConnection])
    } catch (err) {
      end()
      throw err
    }
    // Aborted (shut down) as the slot was handed over: undici would hold the request until a connection took it.
    if (signal.aborted) {
      slots.release()
      end()
      throw signal.reason
    }
    let holdsSlot = true
    const release = () => {
      if (!holdsSlot) return
      holdsSlot = false
      slots.release()
    }
    const requested = dispatcher.request({ ...request, signal })
    requested.then((res) => {
      // Answered after the caller gave up on it: nobody reads the body.
      if (!isOver) return
      res.body.destroy()
      release()
    }, release)
    try {
      const res = await Promise.race([requested, noConnection])
      clearTimeout(waitTimer)
      return { res, done: () => { end(); release() } }
    } catch (err) {
      // The slot is released once undici settles the request (at once, unless it was never sent).
      end()
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
    /**
     * `queued`: exchanges waiting for a connection now (each at most `waitMs`; undici's own queue, normally
     * empty, included); `pending`: handed to undici, on a connection not yet made or not yet written to.
     */
    stats: (): PoolCounts => {
      const { connected, free, pending, queued, running } = pool.stats
      return { connected, free, pending: pending - queued, queued: queued + slots.waiting, running }
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
