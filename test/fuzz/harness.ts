// The fuzz harness: the real gateway listening on loopback, its upstream (the sandbox) behind a counting
// proxy, three consumers with limits too high to trip, and one exchange at a time so that every upstream
// call and every log line belongs to the request that caused it.
import type { Test } from 'tap'
import type { AddressInfo } from 'node:net'
import { symbols } from 'pino'
import { startCountingProxy, type CountingProxy } from '../fixtures/counting-proxy.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { buildTestApp, startTestSandbox, type TestApp } from '../helper.js'
import { generateKey } from '../../src/consumers/keys.js'
import { ROUTE_IDS } from '../../src/cache/freshness.js'
import { SCOPES } from '../../src/consumers/scopes.js'
import { sendRequest, type FuzzResponse, type Secrets } from './client.js'
import { checkObservation, secretsInLogs, type NamedSecret, type Observation, type Violation } from './invariants.js'
import { qAll, type FuzzRequest } from './model.js'

/** Generous: a healthy gateway answers any of these requests in well under a second. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000
const UNLIMITED = { rate: '1000000/minute', daily_objects: 1_000_000_000, upstream_share: 1_000_000_000, max_batch: 10_000 }

export interface Harness {
  testApp: TestApp
  proxy: CountingProxy
  port: number
  keys: Secrets
  secrets: NamedSecret[]
  exchange: (req: FuzzRequest) => Promise<Exchange>
  /** Log bytes checked for secrets so far (a self-check that the log sink is followed). */
  logBytesChecked: () => number
}

export interface Exchange {
  obs: Observation
  violations: Violation[]
}

export async function startHarness (t: Test, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<Harness> {
  const sandbox = await startTestSandbox(t, { anonThrottleRate: '100000/hour' })
  const proxy = await startCountingProxy(sandbox.baseUrl)
  t.teardown(() => proxy.close())
  // The demo consumer's limits are fixed defaults (600/minute, 50 upstream calls an hour), so the suite
  // uses consumers of its own: one with the demo consumer's scopes and lists, a reader, a one-list writer.
  const full = makeConsumer('fuzz', { scopes: [...SCOPES], lists: ['*'], ...UNLIMITED })
  const reader = makeConsumer('fuzz-reader', { scopes: ['read'], ...UNLIMITED })
  const lister = makeConsumer('fuzz-lister', { scopes: [...SCOPES], lists: ['mookodi'], ...UNLIMITED })
  // No stale-while-revalidate and no list prefetch: a background refresh or prefetch would land on the
  // next request's count (each request's upstream calls are counted between its start and the proxy's
  // idle). Prefetch has tests of its own (test/economy/fill.test.ts).
  const freshness = Object.fromEntries(ROUTE_IDS.map((r) => [r, { swrS: 0 }]))
  const testApp = await buildTestApp(t, {
    upstream: sandbox,
    config: {
      ATLAS_BASE_URL: proxy.url,
      CONSUMERS_FILE: consumersFile(t, [full, reader, lister]),
      UPSTREAM_RATE: '100000000/hour',
      // Every request comes from 127.0.0.1; the expectations do not model auth-token/'s per-address limit
      // (test/routes/compat/auth-token-rate.test.ts does).
      AUTH_TOKEN_RATE: '100000000/hour',
      PREFETCH_ENABLED: false,
      // The background health check pings the upstream every 30 s by default: its call would land on
      // whichever request is in flight (seen: a 400 "after 1 upstream call").
      HEALTH_CHECK_INTERVAL_MS: 3_600_000,
      CACHE_FRESHNESS: JSON.stringify(freshness)
    }
  })
  await testApp.app.listen({ port: 0, host: '127.0.0.1' })
  const port = (testApp.app.server.address() as AddressInfo).port
  const keys: Secrets = { key: full.key, read: reader.key, list: lister.key, bad: generateKey() }
  const secrets: NamedSecret[] = [
    { name: 'consumer key', value: full.key },
    { name: 'consumer key (percent-encoded)', value: qAll(full.key) },
    { name: 'consumer key (upper case)', value: full.key.toUpperCase() },
    { name: 'read-only consumer key', value: reader.key },
    { name: 'one-list consumer key', value: lister.key },
    ...Object.entries(sandbox.tokens).map(([role, value]) => ({ name: `upstream ${role} token`, value })),
    { name: 'upstream password', value: testApp.config.ATLAS_PASSWORD }
  ].filter((s) => s.value.length >= 8)

  const readLogs = followLogs(testApp)
  let logBytes = 0
  const settle = async () => {
    await proxy.idle()
    await new Promise((resolve) => setImmediate(resolve))
    await proxy.idle()
  }

  async function exchange (req: FuzzRequest): Promise<Exchange> {
    const before = proxy.total()
    const res: FuzzResponse = await sendRequest(port, req, keys, timeoutMs)
    await settle()
    const obs: Observation = { req, res, upstreamCalls: proxy.total() - before, forwarded: proxy.since(before) }
    const violations = checkObservation(obs, secrets)
    const fresh = readLogs()
    logBytes += fresh.length
    for (const leak of secretsInLogs(fresh, secrets)) {
      violations.push({ invariant: 'secret in the logs', detail: `${leak.name}: ${leak.line}` })
    }
    return { obs, violations }
  }

  return { testApp, proxy, port, keys, secrets, exchange, logBytesChecked: () => logBytes }
}

/**
 * The log text written since the last call. TestApp.logs() joins everything written so far, which costs
 * seconds over thousands of requests; the app's pino logger exposes its destination (the helper's
 * PassThrough) under pino's public `symbols.streamSym`, so the suite listens to it as well.
 */
function followLogs (testApp: TestApp): () => string {
  const stream = (testApp.app.log as unknown as Record<symbol, unknown>)[symbols.streamSym] as NodeJS.ReadableStream | undefined
  if (stream === undefined || typeof stream.on !== 'function') {
    let offset = testApp.logs().length
    return () => {
      const text = testApp.logs()
      const fresh = text.slice(offset)
      offset = text.length
      return fresh
    }
  }
  let pending: string[] = []
  stream.on('data', (chunk: Buffer | string) => { pending.push(chunk.toString()) })
  return () => {
    const fresh = pending.join('')
    pending = []
    return fresh
  }
}

/** A request as a reader sees it: placeholders instead of keys, long bodies cut. */
export function describeRequest (req: FuzzRequest): string {
  const cut = (s: string, n: number) => s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s
  const lines = [`${req.method} ${JSON.stringify(cut(req.target, 200))}`]
  for (const [k, v] of req.headers) lines.push(`  ${k}: ${JSON.stringify(cut(v, 120))}`)
  if (req.body !== undefined) lines.push(`  body: ${JSON.stringify(cut(req.body, 240))}`)
  if (req.bodyRepeat !== undefined) {
    const r = req.bodyRepeat
    lines.push(`  body: ${JSON.stringify(r.prefix.slice(0, 80))} + ${JSON.stringify(r.chunk)} × ${r.times} + ${JSON.stringify(r.suffix.slice(0, 40))}`)
  }
  return lines.join('\n')
}

export function describeAnswer (obs: Observation): string {
  const { res } = obs
  const type = res.headers['content-type']?.join(', ') ?? '-'
  const head = res.status === 0 ? `no answer (${res.error ?? ''})` : `${res.status} ${type}`
  return `${head}, ${obs.upstreamCalls} upstream call(s): ${JSON.stringify(res.body.slice(0, 200))}`
}
