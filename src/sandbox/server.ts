// startSandbox: a plain node:http server imitating the ATLAS Transient Server REST API, with knobs
// for latency, errors, faults and throttling. node:http rather than Fastify, for byte-level control
// of statuses, headers and bodies (and speed, since it doubles as the benchmark upstream).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { runApiView, type ApiDeps, type Reply } from './api-view.js'
import { UserStore } from './auth.js'
import { parseQueryDict } from '../drf/body.js'
import { DjangoHtmlError } from '../drf/errors.js'
import { DEFAULT_SLOW_BODY_MS, FaultQueue, faultReply } from './faults.js'
import { HTML_TYPE, page400, page404, page414, page500 } from './html.js'
import { parseRate, resolveOptions } from './options.js'
import { createRng } from './rng.js'
import { Router, type Route } from './router.js'
import { Store } from './store.js'
import { SlidingWindowThrottle } from './throttle.js'
import { nowUs } from '../drf/time.js'
import type { Sandbox, SandboxFault, SandboxOptions, TokenRole } from './types.js'

// Apache's LimitRequestLine: longer request lines get a 414 before Django sees them.
const MAX_URL_LENGTH = 8190
// A safety cap, far above anything the API needs (50,000 ids are about 1 MB).
const MAX_BODY_BYTES = 256 * 1024 * 1024
// Django's SecurityMiddleware and XFrameOptionsMiddleware add these to every response.
const DJANGO_HEADERS = {
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin'
}

// How many requests the received log keeps (tests read the last few).
const MAX_RECEIVED = 1000

function readBody (req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      /* c8 ignore next -- a quarter-gigabyte body is not a test case */
      if (size > MAX_BODY_BYTES) req.destroy(new Error('request body too large'))
      else chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

export async function startSandbox (opts: SandboxOptions = {}): Promise<Sandbox> {
  const options = resolveOptions(opts)
  const live = {
    latencyMs: options.latencyMs,
    jitterMs: options.jitterMs,
    errorRate: options.errorRate,
    userRate: options.userRate,
    maxObjectsPerCall: options.maxObjectsPerCall
  }
  const store = new Store(options.seed, options.objects, options.recordCache)
  const users = new UserStore(options.seed, options.tokenTtlS, nowUs())
  const throttle = new SlidingWindowThrottle()
  const faults = new FaultQueue()
  const router = new Router(options.prefix, options.segments)
  const calls = new Map<string, number>()
  const received: Array<{ endpoint: string, body: string }> = []
  const chance = createRng(options.seed, 'faults')
  const sockets = new Set<Socket>()
  const sleepers = new Set<{ timer: NodeJS.Timeout, wake: () => void }>()
  let closing = false

  const deps: ApiDeps = {
    store,
    users,
    throttle,
    rates: () => ({ user: live.userRate, staff: options.staffRate, anon: options.anonRate }),
    maxObjectsPerCall: () => live.maxObjectsPerCall,
    nowUs
  }

  /** A timer that close() can cut short, so that nothing keeps the process alive. */
  function sleep (ms: number): Promise<void> {
    if (ms <= 0 || closing) return Promise.resolve()
    return new Promise((resolve) => {
      const entry = { timer: setTimeout(() => { sleepers.delete(entry); resolve() }, ms), wake: resolve }
      sleepers.add(entry)
    })
  }

  function finalHeaders (reply: Reply): Record<string, string> {
    const headers: Record<string, string> = { ...DJANGO_HEADERS, ...reply.headers }
    if (reply.html !== undefined) headers['Content-Type'] = HTML_TYPE
    return headers
  }

  function bodyOf (reply: Reply): string {
    if (reply.html === 'page404') return page404(options.prefix)
    if (reply.html === 'page500') return page500(options.prefix)
    if (reply.html === 'page400') return page400(options.prefix)
    return reply.body
  }

  function send (res: ServerResponse, reply: Reply): void {
    if (res.destroyed || closing) return
    const body = bodyOf(reply)
    const headers = finalHeaders(reply)
    if (reply.status !== 204 && reply.status !== 304) headers['Content-Length'] = String(Buffer.byteLength(body))
    res.writeHead(reply.status, headers)
    res.end(reply.status === 204 ? undefined : body)
  }

  /** Headers now, then the body in slices spread over `ms` (a slow or stalling upstream). */
  async function sendSlowly (res: ServerResponse, reply: Reply, ms: number): Promise<void> {
    const body = Buffer.from(bodyOf(reply))
    res.writeHead(reply.status, { ...finalHeaders(reply), 'Content-Length': String(body.length) })
    res.flushHeaders()
    const slices = Math.max(1, Math.min(10, body.length))
    const step = Math.ceil(body.length / slices)
    for (let i = 0; i < slices; i++) {
      await sleep(ms / slices)
      if (res.destroyed || closing) return
      res.write(body.subarray(i * step, (i + 1) * step))
    }
    res.end()
  }

  async function answer (req: IncomingMessage, route: Route, rawQuery: string, body: Buffer): Promise<Reply> {
    if (route.kind === 'not-found') return { status: 404, headers: {}, body: '', html: 'page404' }
    if (route.kind === 'redirect') {
      return { status: 301, headers: { 'Content-Type': HTML_TYPE, Location: route.location }, body: '' }
    }
    let query: ReturnType<typeof parseQueryDict>
    try {
      query = parseQueryDict(rawQuery)
    } catch (err) {
      // DRF reads the query (for ?format=) before anything else: too many fields is Django's 400 page.
      /* c8 ignore next -- parseQueryDict throws nothing else */
      if (!(err instanceof DjangoHtmlError)) throw err
      return { status: 400, headers: {}, body: '', html: 'page400' }
    }
    const queryParam = (name: string): string | undefined => {
      const values = query.map.get(name)
      const last = values?.[values.length - 1]
      return typeof last === 'string' ? last : undefined
    }
    return await runApiView(route.def, {
      // Always set on server-side requests (the types cover client-side ones too).
      method: String(req.method),
      headers: req.headers,
      query,
      queryParam,
      body,
      remoteAddress: String(req.socket.remoteAddress)
    }, deps)
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = String(req.url)
    if (url.length > MAX_URL_LENGTH) {
      calls.set('unknown', (calls.get('unknown') ?? 0) + 1)
      send(res, { status: 414, headers: { 'Content-Type': 'text/html; charset=iso-8859-1' }, body: page414() })
      return
    }
    const q = url.indexOf('?')
    const rawPath = q === -1 ? url : url.slice(0, q)
    const rawQuery = q === -1 ? '' : url.slice(q + 1)
    const route = router.route(rawPath, rawQuery)
    const name = route.kind === 'not-found' ? undefined : route.name
    calls.set(name ?? 'unknown', (calls.get(name ?? 'unknown') ?? 0) + 1)
    const fault = faults.take(name)
    if (fault?.kind === 'reset') {
      req.socket.destroy()
      return
    }
    // A hung request is left open until the client gives up or close() destroys the socket.
    if (fault?.kind === 'hang') return
    const body = await readBody(req)
    received.push({ endpoint: name ?? 'unknown', body: body.toString('utf8') })
    if (received.length > MAX_RECEIVED) received.shift()
    let reply = fault === undefined ? undefined : faultReply(fault)
    if (reply === undefined && live.errorRate > 0 && chance.next() < live.errorRate) {
      reply = { status: 500, headers: {}, body: '', html: 'page500' }
    }
    try {
      reply ??= await answer(req, route, rawQuery, body)
      /* c8 ignore start -- a sandbox bug, answered the way Django answers an unhandled exception */
    } catch {
      reply = { status: 500, headers: {}, body: '', html: 'page500' }
    }
    /* c8 ignore stop */
    const jitter = live.jitterMs === 0 ? 0 : (chance.next() * 2 - 1) * live.jitterMs
    await sleep(Math.max(0, live.latencyMs + jitter) + (fault?.kind === 'delay' ? fault.delayMs ?? 0 : 0))
    if (fault?.kind === 'slow-body') await sendSlowly(res, reply, fault.delayMs ?? DEFAULT_SLOW_BODY_MS)
    else send(res, reply)
  }

  const server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    // handle() fails only when the client went away mid-body; there is nobody to answer.
    handle(req, res).catch(() => res.destroy())
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => { server.off('error', reject); resolve() })
  })
  // A TCP listener's address is an AddressInfo.
  const { port } = server.address() as AddressInfo
  const hostPart = options.host.includes(':') ? `[${options.host}]` : options.host
  const origin = `http://${hostPart}:${port}`

  const roleUser = (role: string): NonNullable<ReturnType<typeof users.users.get>> => {
    const user = users.users.get(role)
    /* c8 ignore next -- the roles are fixed */
    if (user === undefined) throw new Error(`no sandbox user for role ${role}`)
    return user
  }
  /* c8 ignore next -- the role users always hold a token */
  const tokenOf = (role: string): string => roleUser(role).token?.key ?? ''

  return {
    baseUrl: `${origin}${options.prefix}`,
    origin,
    // Getters, so that rotations (auth-token, rotateToken) show up here.
    tokens: {
      get read () { return tokenOf('read') },
      get write () { return tokenOf('write') },
      get staff () { return tokenOf('staff') },
      get expired () { return tokenOf('expired') }
    },
    users: Object.fromEntries([...users.users].map(([key, u]) => [key, { username: u.username, password: u.password, role: u.role }])),
    calls,
    totalCalls: () => [...calls.values()].reduce((a, b) => a + b, 0),
    received,
    resetCalls: () => { calls.clear(); received.length = 0 },
    ids: () => store.catalog.map((m) => m.id),
    expireToken: (role: TokenRole) => users.expire(roleUser(role), nowUs()),
    rotateToken: (role: TokenRole) => users.rotate(roleUser(role), nowUs()).key,
    setOptions: (patch) => {
      if (patch.latencyMs !== undefined) live.latencyMs = patch.latencyMs
      if (patch.jitterMs !== undefined) live.jitterMs = patch.jitterMs
      if (patch.errorRate !== undefined) live.errorRate = patch.errorRate
      if (patch.throttleRate !== undefined) live.userRate = parseRate(patch.throttleRate)
      if (patch.maxObjectsPerCall !== undefined) live.maxObjectsPerCall = patch.maxObjectsPerCall
    },
    inject: (fault: SandboxFault) => faults.add(fault),
    clearFaults: () => faults.clear(),
    resetThrottle: () => throttle.reset(),
    close: async () => {
      if (closing) return
      closing = true
      for (const s of sleepers) { clearTimeout(s.timer); s.wake() }
      sleepers.clear()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      for (const socket of sockets) socket.destroy()
      await closed
    }
  }
}
