// Cache-hit scenarios and their ceilings, all closed-loop at the same connection count: the gateway
// serving object A from L1 (S1) or Redis (S2), the bare-Fastify ceilings for the same bytes (B1, B2),
// nginx's proxy_cache (B4), the sandbox alone (B3), a 1,000-id batch (S4), a filtered list (S6) and
// the compatibility path (S7).
import { emptyResult, measureClosed, type ScenarioResult } from './measure.js'
import { expectStatus, header, probe } from './http-probe.js'
import type { LoadRequest } from './load.js'
import { hasNginx, NGINX_HINT, startNginx } from './nginx.js'
import { recordMemory, SERVER_CPU, type BenchEnv, type SandboxInfo } from './setup.js'

/** Fixture object A: present in every sandbox (upstream-golden.json `fixtures`). */
export const OBJECT_A = '1161600211221604900'
const S4_IDS = 1000
// Each answer is ~12 MB (1,000 records of ~12 KB): a few bulk readers at once, not fifty.
const S4_CONNECTIONS = 4
// A list poll as a follow-up bot makes it: one list, a score window and a date.
const S6_PATH = '/v1/lists/good/objects?vra_gte=0.2&since=2025-01-01'

export interface HitContext {
  env: BenchEnv
  upstream: SandboxInfo
  /** The v1 body of object A, as S1 answers it (B1, B2 and B4 serve these bytes). */
  objectBody?: Buffer
  objectType?: string
}

function bearer (env: BenchEnv): Record<string, string> {
  return { authorization: `Bearer ${env.key}` }
}

function plan (env: BenchEnv, connections = env.opts.connections) {
  const { opts } = env
  return { generator: env.generator, warmupS: opts.warmupS, durationS: opts.durationS, repetitions: opts.repetitions, connections }
}

/** Starts a gateway, primes it with `req` until it answers from cache, measures, stops. */
async function gatewayHit (
  ctx: HitContext, id: string, title: string, req: LoadRequest, overrides: Record<string, string> = {}, connections?: number
): Promise<ScenarioResult> {
  const { env } = ctx
  const result = emptyResult(id, title, `${req.method} ${req.path}`)
  const gateway = await env.startGateway(id, ctx.upstream, overrides)
  try {
    const first = await probe(gateway.info.origin, req)
    expectStatus(first, 200, `${id} priming request`)
    const second = await probe(gateway.info.origin, req)
    expectStatus(second, 200, `${id} second request`)
    const cache = header(second, 'x-cache')
    if (cache !== '' && cache !== 'HIT') result.notes.push(`second request answered X-Cache: ${cache}, not HIT`)
    result.extra.response_bytes = second.body.length
    if (id === 'S1') {
      ctx.objectBody = second.body
      ctx.objectType = header(second, 'content-type')
    }
    const p = plan(env, connections)
    const hooks = env.profiler(id, gateway)
    if (hooks !== undefined) result.notes.push('profiled: the V8 profiler was on during the measured runs, so they are slower')
    await measureClosed(result, { ...p, load: { origin: gateway.info.origin, request: req, connections: p.connections }, pid: gateway.pid, ...(hooks === undefined ? {} : { hooks }) })
    await recordMemory(result, gateway)
    return result
  } finally {
    await gateway.stop()
  }
}

export function runS1 (ctx: HitContext): Promise<ScenarioResult> {
  return gatewayHit(ctx, 'S1', 'object read, L1 (memory) hit', { method: 'GET', path: `/v1/objects/${OBJECT_A}`, headers: bearer(ctx.env) })
}

/** S1 with `Accept-Encoding`: the encoded bytes come from L1's derived memo, compressed once. */
export async function runS1Encoded (ctx: HitContext, encoding: 'gzip' | 'br'): Promise<ScenarioResult> {
  const id = `S1-${encoding}`
  const result = await gatewayHit(ctx, id, `object read, L1 hit, Accept-Encoding: ${encoding}`,
    { method: 'GET', path: `/v1/objects/${OBJECT_A}`, headers: { ...bearer(ctx.env), 'accept-encoding': encoding } })
  result.notes.push(`response_bytes is the ${encoding} body; S1's is the identity body`)
  return result
}

export function runS2 (ctx: HitContext): Promise<ScenarioResult> {
  return gatewayHit(ctx, 'S2', 'object read, L2 (Redis) hit, L1 off', { method: 'GET', path: `/v1/objects/${OBJECT_A}`, headers: bearer(ctx.env) }, { CACHE_MAX_BYTES: '0' })
}

export async function runS4 (ctx: HitContext): Promise<ScenarioResult> {
  const ids = ctx.upstream.ids.slice(0, S4_IDS)
  const req: LoadRequest = {
    method: 'POST',
    path: '/v1/objects/query',
    headers: { ...bearer(ctx.env), 'content-type': 'application/json' },
    body: JSON.stringify({ ids })
  }
  const result = await gatewayHit(ctx, 'S4', `POST /v1/objects/query, ${ids.length} cached ids`, req, {}, S4_CONNECTIONS)
  const rps = result.runs.map((r) => r.rps)
  if (rps.length > 0) result.extra.ids_per_s = Math.round(([...rps].sort((a, b) => a - b)[Math.floor(rps.length / 2)] ?? 0) * ids.length)
  return result
}

export function runS6 (ctx: HitContext): Promise<ScenarioResult> {
  return gatewayHit(ctx, 'S6', 'list read, filtered by the gateway', { method: 'GET', path: S6_PATH, headers: bearer(ctx.env) })
}

export async function runS7 (ctx: HitContext): Promise<ScenarioResult> {
  const req: LoadRequest = { method: 'GET', path: `/atlas/api/objects/?objects=${OBJECT_A}`, headers: { authorization: `Token ${ctx.env.key}` } }
  const gateway = await ctx.env.startGateway('S7-check', ctx.upstream)
  let status: number
  try {
    status = (await probe(gateway.info.origin, req)).status
  } finally {
    await gateway.stop()
  }
  if (status === 404) {
    const result = emptyResult('S7', 'compat path object read', `${req.method} ${req.path}`)
    result.skipped = 'the compatibility path /atlas/api/ is not there yet (404)'
    return result
  }
  return gatewayHit(ctx, 'S7', 'compat path object read (L1 hit)', req)
}

function requireBody (ctx: HitContext): { body: Buffer, type: string } {
  if (ctx.objectBody === undefined) throw new Error('S1 must run first: the baselines serve the bytes it answered')
  return { body: ctx.objectBody, type: ctx.objectType ?? 'application/json; charset=utf-8' }
}

export async function runBaseline (ctx: HitContext, mode: 'memory' | 'redis'): Promise<ScenarioResult> {
  const { env } = ctx
  const { body, type } = requireBody(ctx)
  const id = mode === 'memory' ? 'B1' : 'B2'
  const title = mode === 'memory' ? 'bare Fastify, same bytes from memory' : 'bare Fastify, same bytes from Redis (getBuffer)'
  const result = emptyResult(id, title, 'GET /object')
  const server = await env.startBaseline(mode, body, type)
  try {
    const p = plan(env)
    return await measureClosed(result, { ...p, load: { origin: server.info.origin, request: { method: 'GET', path: '/object', headers: {} }, connections: p.connections }, pid: server.pid })
  } finally {
    await server.stop()
  }
}

export async function runB3 (env: BenchEnv): Promise<ScenarioResult> {
  const sandbox = await env.startSandbox({}, 0, SERVER_CPU)
  const path = `${new URL(sandbox.info.baseUrl).pathname}objects/?objects=${OBJECT_A}`
  const result = emptyResult('B3', 'the sandbox upstream alone (no latency)', `GET ${path}`)
  try {
    const req: LoadRequest = { method: 'GET', path, headers: { authorization: `Token ${sandbox.info.tokens.read}`, accept: 'application/json' } }
    expectStatus(await probe(sandbox.info.origin, req), 200, 'B3 check')
    const p = plan(env)
    return await measureClosed(result, { ...p, load: { origin: sandbox.info.origin, request: req, connections: p.connections }, pid: sandbox.pid })
  } finally {
    await sandbox.stop()
  }
}

export async function runB4 (ctx: HitContext): Promise<ScenarioResult> {
  const { env } = ctx
  const result = emptyResult('B4', 'nginx proxy_cache hit, same bytes', 'GET /object')
  if (!hasNginx()) {
    result.skipped = NGINX_HINT
    return result
  }
  const { body, type } = requireBody(ctx)
  const origin = await env.startBaseline('memory', body, type)
  // The origin idles once nginx has cached the object, so it stays off the server core's accounting.
  const nginx = await startNginx(env.tmpDir, new URL(origin.info.origin).host, SERVER_CPU, env.cores)
  try {
    const req: LoadRequest = { method: 'GET', path: '/object', headers: {} }
    await probe(nginx.origin, req)
    const check = await probe(nginx.origin, req)
    expectStatus(check, 200, 'B4 check')
    if (header(check, 'x-cache') !== 'HIT') result.notes.push(`nginx answered X-Cache: ${header(check, 'x-cache')}`)
    const p = plan(env)
    return await measureClosed(result, { ...p, load: { origin: nginx.origin, request: req, connections: p.connections }, pid: nginx.pid })
  } finally {
    await nginx.stop()
    await origin.stop()
  }
}
