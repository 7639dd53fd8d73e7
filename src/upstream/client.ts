// The only way to reach ATLAS: an undici Pool with keep-alive, form-encoded POSTs with the trailing
// slash (as the official client sends them), Accept: application/json, per-call deadline, response size
// cap, the global budget, 429 pauses, token recovery and read retries.
import { Pool } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import { UpstreamAuthError } from '../errors.js'
import type { Metrics } from '../plugins/metrics.js'
import type { UpstreamBudget } from './budget.js'
import { parseLossless } from '../lib/json.js'
import { AUTH_DETAILS, WRITE_ENDPOINTS, fields, replyFields, type Fields, type UpstreamEndpoint } from './endpoints.js'
import {
  ResponseTooLargeError, budgetError, isRetryableStatus, isRetryableTransport, mapBadReply, mapTransportError
} from './error-map.js'
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
   */
  beforeCall?: () => Promise<void>
  /** Called once for every request actually sent upstream (for the access log). */
  onCall?: () => void
}

export interface ClientOptions {
  baseUrl: string
  paths: Record<UpstreamEndpoint, string>
  timeoutMs: number
  connectTimeoutMs: number
  maxResponseBytes: number
  retries: number
  connections: number
  budget: UpstreamBudget
  tokens: TokenManager
  metrics: Metrics
  log: FastifyBaseLogger
}

export type UpstreamClient = ReturnType<typeof createUpstreamClient>

const RETRY_BASE_MS = 100
const MAX_AUTH_REPLAYS = 2

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
  const pool = new Pool(base.origin, {
    connections: opts.connections,
    connect: { timeout: opts.connectTimeoutMs },
    keepAliveTimeout: 30_000,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs
  })
  const { metrics, log } = opts

  /** One HTTP exchange; no budget, no retries. */
  async function send (endpoint: UpstreamEndpoint, fields: Fields, token: string | undefined, deadline: number): Promise<UpstreamReply> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'content-type': 'application/x-www-form-urlencoded'
    }
    if (token !== undefined) headers.authorization = `Token ${token}`
    const started = performance.now()
    const endTimer = () => metrics.upstreamDuration.observe({ endpoint }, (performance.now() - started) / 1000)
    try {
      const res = await pool.request({
        method: 'POST',
        path: base.pathname + opts.paths[endpoint],
        headers,
        body: new URLSearchParams(fields).toString(),
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now()))
      })
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > opts.maxResponseBytes) {
          res.body.destroy()
          throw new ResponseTooLargeError(`upstream body over ${opts.maxResponseBytes} bytes`)
        }
        chunks.push(chunk as Buffer)
      }
      endTimer()
      metrics.upstreamCalls.inc({ endpoint, status: String(res.statusCode) })
      const header = (name: string) => {
        const v = res.headers[name]
        return Array.isArray(v) ? v[0] : v
      }
      const text = Buffer.concat(chunks, size).toString('utf8')
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
      metrics.upstreamCalls.inc({ endpoint, status: err instanceof ResponseTooLargeError ? 'too_large' : 'network' })
      throw err
    }
  }

  async function takeBudget (): Promise<void> {
    const take = await opts.budget.take()
    metrics.upstreamBudgetRemaining.set(take.remaining)
    // The pause gauge shows the pause left; any answer that is not "paused" means there is none.
    metrics.upstreamPauseSeconds.set(take.reason === 'paused' ? take.retryAfterS : 0)
    if (!take.ok) throw budgetError(take.retryAfterS, take.reason)
  }

  /**
   * Calls `endpoint` with `fields`. Resolves with 2xx and 4xx JSON replies (the caller reads them);
   * throws GW_ errors for everything else. Reads retry on network errors and 502/503/504; writes are
   * replayed only after a 401, which means the upstream did not process them.
   */
  async function call (endpoint: UpstreamEndpoint, fields: Fields, ctx: CallContext = {}): Promise<UpstreamReply> {
    const isWrite = WRITE_ENDPOINTS.has(endpoint)
    const deadline = Date.now() + opts.timeoutMs
    let attempt = 0
    let authReplays = 0
    let token = await opts.tokens.current()
    // A replay after the upstream refused the gateway's own token is not charged to the consumer again.
    let isAuthReplay = false
    for (;;) {
      if (!isAuthReplay) await ctx.beforeCall?.()
      isAuthReplay = false
      await takeBudget()
      ctx.onCall?.()
      let reply: UpstreamReply
      try {
        reply = await send(endpoint, fields, token, deadline)
      } catch (err) {
        if (!isWrite && attempt < opts.retries && isRetryableTransport(err) && Date.now() < deadline) {
          attempt++
          log.warn({ endpoint, attempt, err: { message: (err as Error).message, code: (err as { code?: string }).code } }, 'upstream call failed; retrying')
          await sleep(RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random()))
          continue
        }
        throw mapTransportError(err, endpoint)
      }

      if (reply.status === 401) {
        const detail = detailOf(reply)
        if (authReplays >= MAX_AUTH_REPLAYS) {
          throw Object.assign(new UpstreamAuthError('The upstream rejected the gateway token after a refresh; the operator must check the ATLAS credentials.'), { cause: { detail } })
        }
        authReplays++
        isAuthReplay = true
        token = detail === AUTH_DETAILS.expired || authReplays > 1
          ? await opts.tokens.refresh(token)
          : await opts.tokens.recoverInvalid(token)
        continue
      }
      if (reply.status === 429) {
        const seconds = Number(reply.retryAfter ?? '')
        const pauseS = Number.isFinite(seconds) && seconds > 0 ? seconds : 60
        await opts.budget.pause(pauseS)
        metrics.upstreamPauseSeconds.set(pauseS)
        log.warn({ endpoint, pauseS }, 'upstream throttled the gateway; pausing every upstream call')
        throw budgetError(pauseS, 'paused')
      }
      if (isRetryableStatus(reply.status) && !isWrite && attempt < opts.retries && Date.now() < deadline) {
        attempt++
        await sleep(RETRY_BASE_MS * 2 ** attempt * (0.5 + Math.random()))
        continue
      }
      const isJson = reply.contentType.includes('application/json')
      if (reply.status >= 500 || (!isJson && reply.status !== 204) || reply.status < 200 || (reply.status >= 300 && reply.status < 400)) {
        throw mapBadReply(endpoint, reply.status, reply.contentType, reply.text)
      }
      return reply
    }
  }

  /** auth-token/: anonymous, outside the user budget (the upstream throttles it separately). */
  async function login (username: string, password: string): Promise<string> {
    const reply = await send('auth-token', fields.login(username, password), undefined, Date.now() + opts.timeoutMs)
    if (reply.status !== 200) throw new Error(`auth-token/ answered ${reply.status}`)
    const body = reply.contentType.includes('json') ? parseLossless(reply.text) : undefined
    const token = body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[replyFields.authToken] : undefined
    if (typeof token !== 'string' || !/^[0-9a-f]{40}$/.test(token)) throw new Error('auth-token/ reply has no token')
    return token
  }

  /** For /readyz: any HTTP answer from the API root means reachable; costs no budget (no token sent). */
  async function ping (): Promise<boolean> {
    const res = await pool.request({ method: 'GET', path: base.pathname, signal: AbortSignal.timeout(2000) })
    await res.body.dump()
    return res.statusCode > 0
  }

  return { call, login, ping, close: () => pool.close() }
}
