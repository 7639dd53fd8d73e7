// The only way to reach ATLAS: an undici Pool with keep-alive, form-encoded POSTs with the trailing
// slash (as the official client sends them), Accept: application/json, per-call deadline, response size
// cap, the global budget, 429 pauses, token recovery, the circuit breaker and read retries.
//
// The budget pays only for calls that reach the upstream: a token is taken just before a call and given
// back when the call failed before any byte was sent (refused connection, DNS failure, no free
// connection within UPSTREAM_POOL_WAIT_MS); pool.ts tells the two apart.
import { StringDecoder } from 'node:string_decoder'
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamAuthError, UpstreamUnavailableError, withRetryAfter } from '../errors.js'
import type { Metrics } from '../plugins/metrics.js'
import { createBreaker, type Permit } from './breaker.js'
import { createBudgetGate, type UpstreamBudget } from './budget.js'
import { parseLossless } from '../lib/json.js'
import { AUTH_DETAILS, WRITE_ENDPOINTS, fields, replyFields, type Fields, type UpstreamEndpoint } from './endpoints.js'
import {
  LoginRefusedError, PoolWaitError, ResponseTooLargeError, budgetError, describeError, isRetryableTransport, isServerError,
  isTimeout, mapBadReply, mapTransportError, poolBusyError, retryAfterSeconds
} from './error-map.js'
import { createUpstreamPool, type Attempt } from './pool.js'
import { scrubSecrets } from './scrub.js'
import type { TokenManager } from './token.js'

export interface UpstreamReply {
  status: number
  contentType: string
  /** The body as text; JSON bodies must be parsed losslessly (lib/json.ts), never with JSON.parse. */
  text: string
  retryAfter?: string
}

export interface CallContext {
  /**
   * Called before every upstream call, retries included, ahead of the global budget: charges the
   * consumer's upstream share, and throws (429 GW_QUOTA_EXHAUSTED) to stop the call when it is spent.
   * Resolves whether it charged anything (not when the shared count was skipped: Redis down, open policy).
   */
  beforeCall?: () => Promise<boolean>
  /** Called when a call whose beforeCall charged was never sent (refused connection, budget spent…). */
  onUnsent?: () => Promise<void>
  /** Called once for every request actually sent upstream (for the access log). */
  onCall?: () => void
  /**
   * Called (unbound) as each request is put on a connection, before any reply: from then on the upstream
   * may act on it. A write's audit record and the shutdown need to know that while the call still runs.
   */
  onSent?: () => void
  /** Called with the status of every reply received, a refused token's or a throttle's included. */
  onReply?: (status: number) => void
}

export interface ClientOptions {
  baseUrl: string
  paths: Record<UpstreamEndpoint, string>
  timeoutMs: number
  connectTimeoutMs: number
  maxResponseBytes: number
  /** Retries of a read on a network error or a 5xx: 0 or 1. */
  retries: number
  /** A read is retried only while at least this many budget tokens are left. */
  retryMinBudget?: number
  connections: number
  /** Longest wait for a free connection before the call fails fast, unsent. */
  poolWaitMs?: number
  breaker?: { threshold: number, openMs: number, probeIntervalMs: number }
  budget: UpstreamBudget
  /**
   * The longest wait an upstream Retry-After may impose (UPSTREAM_RATE's period): the upstream's throttle
   * never asks for more than its rate's period, and the budget refills whole within it. Coming back too
   * early costs one refused call (a throttled request does not count against the upstream's rate), which
   * pauses again; obeying a bogus header would stop every call, or every login, for its whole length.
   */
  maxWaitS: number
  tokens: TokenManager
  metrics: Metrics
  log: FastifyBaseLogger
}

export type UpstreamClient = ReturnType<typeof createUpstreamClient>

const DEFAULT_RETRY_MIN_BUDGET = 10
const DEFAULT_POOL_WAIT_MS = 5000
const DEFAULT_BREAKER = { threshold: 5, openMs: 30_000, probeIntervalMs: 5000 }
// A retry waits RETRY_BASE_MS, give or take half of it (jitter, so that replicas do not retry in step).
const RETRY_BASE_MS = 200
// A Retry-After longer than the longest pause rules the retry out.
const RETRY_MAX_PAUSE_MS = RETRY_BASE_MS * 1.5
const MAX_AUTH_REPLAYS = 2
// Less time than this left (or a quarter of the timeout, if smaller): a call is not sent. A send that
// cannot be answered in time would only turn a clean refusal into a timeout (for a write, an unknown outcome).
const MIN_SEND_MS = 100
// A login must end before the token lock it runs under expires (token.ts, 15 s), so that no other
// replica starts a second one meanwhile.
const LOGIN_TIMEOUT_MS = 10_000
const PING_TIMEOUT_MS = 2000

/**
 * The `status` of gateway_upstream_calls_total for a call that got no usable reply: `not_sent`, it never
 * left the gateway (no connection); `timeout`, sent and not answered (wholly) within its deadline or
 * undici's headers and body timeouts, as mapTransportError answers it (504); `network`, the connection
 * failed after the send; `too_large`, our own limit on the body.
 */
function failedStatus (err: unknown, attempt: Attempt): string {
  if (err instanceof ResponseTooLargeError) return 'too_large'
  if (!attempt.isSent) return 'not_sent'
  return isTimeout(err) ? 'timeout' : 'network'
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The `detail` text of a `{"detail": …}` reply, or undefined. */
function detailOf (reply: UpstreamReply): string | undefined {
  if (!reply.contentType.includes('json') || !reply.text.includes(replyFields.detail)) return undefined
  try {
    const body = parseLossless(reply.text)
    const detail = body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[replyFields.detail] : undefined
    return typeof detail === 'string' ? detail : undefined
  } catch {
    return undefined
  }
}

export function createUpstreamClient (opts: ClientOptions) {
  const base = new URL(opts.baseUrl)
  const pool = createUpstreamPool(base.origin, { connections: opts.connections, connectTimeoutMs: opts.connectTimeoutMs, timeoutMs: opts.timeoutMs })
  const { exchange } = pool
  const { metrics, log } = opts
  const retryMinBudget = opts.retryMinBudget ?? DEFAULT_RETRY_MIN_BUDGET
  const poolWaitMs = opts.poolWaitMs ?? DEFAULT_POOL_WAIT_MS
  const breaker = createBreaker({ ...(opts.breaker ?? DEFAULT_BREAKER), metrics, log })
  const budget = createBudgetGate(opts.budget, metrics, log)
  metrics.live.pool = () => pool.stats()
  metrics.live.loginBackoff = () => {
    const s = opts.tokens.refreshState()
    return { reason: s.state === 'backoff' ? s.reason : undefined, retryAfterS: s.retryAfterS }
  }

  /**
   * What the call the upstream throttled answers, as every later request is answered: the later of the
   * pause and the next token (a refused take costs nothing; one that got through, the pause being too
   * short to see, gives its token back). The pause alone said 60 s with the bucket spent for an hour.
   */
  async function waitAfterPause (pauseS: number): Promise<number> {
    const take = await opts.budget.take()
    if (!take.ok) return Math.max(pauseS, take.retryAfterS)
    await opts.budget.refund()
    return pauseS
  }

  const minSendMs = Math.min(MIN_SEND_MS, opts.timeoutMs / 4)
  let isDestroyed = false
  /** Nothing was sent: the gateway is shutting down (destroy below). */
  const shuttingDown = (endpoint: UpstreamEndpoint) => withRetryAfter(new UpstreamUnavailableError(
    `The gateway is shutting down; ${endpoint}/ was not sent. Retry after the indicated time (another replica will answer).`
  ), 1)

  /** Nothing was sent: the call's deadline left no time for it. Says nothing of the upstream. */
  const deadlineBeforeSend = (endpoint: UpstreamEndpoint) => withRetryAfter(new UpstreamUnavailableError(
    `The upstream call's deadline left no time to send ${endpoint}/ (a token refresh took it); nothing was sent. Retry after the indicated time.`
  ), 1)

  /**
   * A token read (which may log in, or wait for another replica's login), given up once the call's
   * deadline leaves no time to send: the login itself goes on for the callers that still have time.
   */
  async function tokenWithin (read: Promise<string>, endpoint: UpstreamEndpoint, deadline: number): Promise<string> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(deadlineBeforeSend(endpoint)) }, Math.max(0, deadline - minSendMs - Date.now()))
    })
    try {
      return await Promise.race([read, late])
    } finally {
      clearTimeout(timer)
    }
  }

  /** One HTTP exchange; no budget, no retries. */
  async function send (endpoint: UpstreamEndpoint, fields: Fields, token: string | undefined, deadline: number, attempt: Attempt): Promise<UpstreamReply> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded'
    }
    if (token !== undefined) headers.authorization = `Token ${token}`
    const started = performance.now()
    const endTimer = () => metrics.upstreamDuration.observe({ endpoint }, (performance.now() - started) / 1000)
    let done = () => {}
    try {
      const exchanged = await exchange({
        method: 'POST',
        path: base.pathname + opts.paths[endpoint],
        headers,
        body: new URLSearchParams(fields).toString()
      }, deadline, poolWaitMs, attempt)
      const { res } = exchanged
      done = exchanged.done
      // Decoded as it arrives (a character split across chunks is held over): an `objects/` reply of
      // 1,000 records is ~11 MB, and the text is all that is kept, not also a copy of its bytes.
      const decoder = new StringDecoder('utf8')
      const pieces: string[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > opts.maxResponseBytes) {
          res.body.destroy()
          throw new ResponseTooLargeError(`upstream body over ${opts.maxResponseBytes} bytes`)
        }
        pieces.push(decoder.write(chunk as Buffer))
      }
      pieces.push(decoder.end())
      endTimer()
      metrics.upstreamCalls.inc({ endpoint, status: String(res.statusCode) })
      const header = (name: string) => {
        const v = res.headers[name]
        return Array.isArray(v) ? v[0] : v
      }
      const text = pieces.join('')
      return {
        status: res.statusCode,
        contentType: header('content-type') ?? '',
        // Scrubbed of our token and password before anything can log or forward it; auth-token/'s reply
        // is the token itself, read only by login() below.
        text: endpoint === 'auth-token' ? text : scrubSecrets(text, opts.tokens.secrets()),
        retryAfter: header('retry-after')
      }
    } catch (err) {
      endTimer()
      metrics.upstreamCalls.inc({ endpoint, status: failedStatus(err, attempt) })
      throw err
    } finally {
      done()
    }
  }

  /**
   * The exchange with the breaker's leave: its outcome settles the permit. A call that found no free
   * connection says nothing about the upstream; it fails fast with 503 GW_UPSTREAM_UNAVAILABLE.
   */
  async function sendWithPermit (permit: Permit, endpoint: UpstreamEndpoint, fields: Fields, token: string | undefined, deadline: number, attempt: Attempt): Promise<UpstreamReply> {
    let reply: UpstreamReply
    try {
      reply = await send(endpoint, fields, token, deadline, attempt)
    } catch (err) {
      if (err instanceof PoolWaitError) {
        permit.cancel()
        metrics.upstreamPoolWaitTimeouts.inc()
        const { running, pending, queued } = pool.stats()
        log.warn({ endpoint, waitMs: poolWaitMs, pool: { running, pending, queued } }, 'no free upstream connection; call not sent')
        throw poolBusyError(endpoint, poolWaitMs, err)
      }
      // An oversized body is our limit, not the upstream failing.
      if (err instanceof ResponseTooLargeError) permit.success()
      else permit.failure(describeError(err))
      throw err
    }
    if (isServerError(reply.status)) permit.failure(`status ${reply.status}`)
    else permit.success()
    return reply
  }

  /**
   * Calls `endpoint` with `fields`. Resolves with 2xx and 4xx JSON replies (the caller reads them);
   * throws GW_ errors for everything else. A read is retried once on a network error or a 5xx while
   * the breaker is closed and the budget has headroom; writes are replayed only after a 401, which means
   * the upstream did not process them.
   */
  async function call (endpoint: UpstreamEndpoint, fields: Fields, ctx: CallContext = {}): Promise<UpstreamReply> {
    const isWrite = WRITE_ENDPOINTS.has(endpoint)
    const deadline = Date.now() + opts.timeoutMs
    let retries = 0
    let authReplays = 0
    // The shared token is read while the call is charged: one Redis round trip fewer before it leaves.
    // A failed read is thrown below, once the charges are given back.
    const tokenRead = opts.tokens.current()
    tokenRead.catch(() => {})
    let token: string | undefined
    // A replay after the upstream refused the gateway's own token is not charged to the consumer again.
    let isAuthReplay = false
    const mayRetry = (remaining: number) => !isWrite && retries < Math.min(opts.retries, 1) && remaining >= retryMinBudget &&
      breaker.state === 'closed' && Date.now() < deadline
    const pauseBeforeRetry = () => sleep(Math.min(Math.max(0, deadline - Date.now()), RETRY_BASE_MS * (0.5 + Math.random())))
    for (;;) {
      // Before any charge: a call after destroy() is refused here, not by the pool once it was charged.
      if (isDestroyed) throw shuttingDown(endpoint)
      // Half-open, the one probe must go to the login a refused or expired token needs (the token read
      // starts it), not to this call: a call holding the probe would refuse its own login until a
      // probe-free moment that never comes. Closed, the read still overlaps the charges.
      if (breaker.state !== 'closed') token ??= await tokenWithin(tokenRead, endpoint, deadline)
      const permit = breaker.acquire()
      let remaining: number | undefined
      let isCharged = false
      try {
        if (!isAuthReplay && ctx.beforeCall !== undefined) isCharged = await ctx.beforeCall()
        remaining = await budget.take()
        token ??= await tokenWithin(tokenRead, endpoint, deadline)
        // Replays and retries included: a send with no time to be answered is not made.
        if (deadline - Date.now() < minSendMs) throw deadlineBeforeSend(endpoint)
      } catch (err) {
        permit.cancel()
        if (remaining !== undefined) await budget.refund(endpoint)
        if (isCharged) await ctx.onUnsent?.()
        throw err
      }
      isAuthReplay = false
      const attempt: Attempt = { isSent: false }
      if (ctx.onSent !== undefined) attempt.onSent = ctx.onSent
      let reply: UpstreamReply
      try {
        reply = await sendWithPermit(permit, endpoint, fields, token, deadline, attempt)
      } catch (err) {
        if (attempt.isSent) {
          ctx.onCall?.()
        } else {
          // Nothing reached the upstream: neither the global budget nor the consumer's share pays.
          await budget.refund(endpoint)
          if (isCharged) await ctx.onUnsent?.()
        }
        if (isRetryableTransport(err) && mayRetry(remaining)) {
          retries++
          log.warn({ endpoint, err: { message: (err as Error).message, code: describeError(err) } }, 'upstream call failed; retrying once')
          await pauseBeforeRetry()
          continue
        }
        throw (err as { code?: unknown }).code === 'GW_UPSTREAM_UNAVAILABLE' ? err : mapTransportError(err, endpoint)
      }
      ctx.onCall?.()
      ctx.onReply?.(reply.status)

      if (reply.status === 401) {
        const detail = detailOf(reply)
        if (authReplays >= MAX_AUTH_REPLAYS) {
          throw Object.assign(new UpstreamAuthError('The upstream rejected the gateway token after a refresh; the operator must check the ATLAS credentials.'), { cause: { detail } })
        }
        authReplays++
        isAuthReplay = true
        token = await tokenWithin(detail === AUTH_DETAILS.expired || authReplays > 1
          ? opts.tokens.refresh(token)
          : opts.tokens.recoverInvalid(token), endpoint, deadline)
        continue
      }
      if (reply.status === 429) {
        const pauseS = Math.min(retryAfterSeconds(reply.retryAfter, opts.maxWaitS) ?? 60, opts.maxWaitS)
        await opts.budget.pause(pauseS)
        metrics.upstreamPauseSeconds.set(pauseS)
        log.warn({ endpoint, pauseS }, 'upstream throttled the gateway; pausing every upstream call')
        throw budgetError(await waitAfterPause(pauseS), 'paused')
      }
      const upstreamWaitS = retryAfterSeconds(reply.retryAfter, opts.maxWaitS)
      // A retry sooner than the upstream said to come back would only be refused again.
      const isToldToWait = upstreamWaitS !== undefined && upstreamWaitS * 1000 > RETRY_MAX_PAUSE_MS
      if (isServerError(reply.status) && !isToldToWait && mayRetry(remaining)) {
        retries++
        log.warn({ endpoint, status: reply.status }, 'upstream answered with a server error; retrying once')
        await pauseBeforeRetry()
        continue
      }
      const isJson = reply.contentType.includes('application/json')
      if (reply.status >= 500 || (!isJson && reply.status !== 204) || reply.status < 200 || (reply.status >= 300 && reply.status < 400)) {
        throw mapBadReply(endpoint, reply.status, reply.contentType, reply.text, upstreamWaitS)
      }
      return reply
    }
  }

  /**
   * auth-token/: anonymous, outside the user budget (the upstream throttles it separately), through the
   * breaker. Throws LoginRefusedError with the status and Retry-After when no token comes back.
   */
  async function login (username: string, password: string): Promise<string> {
    const permit = breaker.acquire()
    const deadline = Date.now() + Math.min(opts.timeoutMs, LOGIN_TIMEOUT_MS)
    let reply: UpstreamReply
    try {
      reply = await sendWithPermit(permit, 'auth-token', fields.login(username, password), undefined, deadline, { isSent: false })
    } catch (err) {
      throw (err as { code?: unknown }).code === 'GW_UPSTREAM_UNAVAILABLE' ? err : mapTransportError(err, 'auth-token')
    }
    if (reply.status !== 200) throw new LoginRefusedError(reply.status, retryAfterSeconds(reply.retryAfter, opts.maxWaitS))
    const body = reply.contentType.includes('json') ? parseLossless(reply.text) : undefined
    const token = body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[replyFields.authToken] : undefined
    if (typeof token !== 'string' || !/^[0-9a-f]{40}$/.test(token)) throw new LoginRefusedError(200, undefined)
    return token
  }

  /** For the health check: any HTTP answer from the API root means reachable; costs no budget (no token sent). */
  const ping = () => pool.ping(base.pathname, PING_TIMEOUT_MS)

  return {
    call,
    login,
    ping,
    /** Whole budget tokens left as the last call saw them (Infinity before the first): for headroom checks. */
    get budgetRemaining (): number { return budget.lastRemaining },
    /** The budget's pace as the last call saw it (Infinity before the first; budget.ts). */
    get budgetPace (): number { return budget.lastPace },
    /** Changes with every budget figure the client sees (a reader times the refill since). */
    get budgetSeen (): number { return budget.seen },
    /** Tokens this replica has taken so far (its spend rate derives from it). */
    get budgetTakes (): number { return budget.takes },
    /** The circuit breaker's state, for health and tests. */
    get breakerState () { return breaker.state },
    close: async () => { breaker.close(); await pool.close() },
    // destroy: abandons calls still pending (a shutdown past its deadline) instead of waiting for them;
    // a call already sent fails as a timeout (a write then answers as a lost reply, routes/v1/writes.ts).
    // Later calls are refused unsent.
    destroy: async () => { isDestroyed = true; breaker.close(); await pool.destroy() }
  }
}
