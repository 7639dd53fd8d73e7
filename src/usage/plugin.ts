// `app.usage`: what each consumer did per UTC day (report.ts). Counted in the process, in one onResponse
// callback (no Redis call, no promise per request; upstream calls and writes as they are made), and
// written in batches: every USAGE_FLUSH_MS and when the gateway closes (store.ts: one pipeline per
// flush). So a cache hit costs no Redis round trip. A failed flush's batch is sent again, unchanged and
// under its id, at the next (and counted once).
// `last_used` per key and per consumer rides along (the keys are held only until the flush, which
// stores their SHA-256).
import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Redis } from 'ioredis'
import type { Config } from '../config.js'
import type { Attempt, RedisGuard } from '../lib/redis-health.js'
import { hashKey } from '../consumers/keys.js'
import { COUNTER, type Counters } from './report.js'
import { createFileUsageStore, createRedisUsageStore, type LastUsed, type UsageBatch, type UsageDelta, type UsageStore } from './store.js'
import { routeOf } from '../lib/route.js'

declare module 'fastify' {
  interface FastifyInstance {
    usage: Usage
  }
}

export type Usage = ReturnType<typeof createUsage>

const DAY_MS = 86400000
// What a rejection's GW_ code counts as; compat rejections carry no code and are named by status.
const REJECTION_KINDS: Readonly<Record<string, string>> = {
  GW_UNAUTHENTICATED: 'expired',
  GW_FORBIDDEN: 'forbidden',
  GW_RATE_LIMITED: 'rate',
  GW_QUOTA_EXHAUSTED: 'quota',
  GW_PAYLOAD_TOO_LARGE: 'max_batch',
  GW_UPSTREAM_BUDGET: 'upstream_budget'
}
const STATUS_KINDS: Readonly<Record<number, string>> = { 401: 'expired', 403: 'forbidden', 413: 'max_batch', 429: 'throttled' }
const CACHE_HITS = new Set(['HIT', 'STALE'])

export function createUsageStore (config: Config, redis: Redis | null): UsageStore {
  return redis === null
    ? createFileUsageStore(config.USAGE_FILE, config.USAGE_RETENTION_DAYS)
    : createRedisUsageStore(redis, config.REDIS_KEY_PREFIX, config.USAGE_RETENTION_DAYS)
}

/** `/v1/objects/:id` → `objects`; compat routes by what they do (the endpoint names are the upstream's). */
function routeClass (request: FastifyRequest): string {
  const config = routeOf(request).config
  if (config.dialect === 'compat') return config.scope === 'read' ? 'compat-read' : 'compat-write'
  const url = routeOf(request).url ?? ''
  return url.split('/')[2] ?? 'other'
}

// The requests counter of a route, worked out once per route (its config object) rather than per request.
const requestCounters = new WeakMap<object, string>()
function requestCounterOf (request: FastifyRequest): string {
  const config = routeOf(request).config
  let name = requestCounters.get(config)
  if (name === undefined) requestCounters.set(config, name = COUNTER.requestsOf(routeClass(request)))
  return name
}

/** `guard`: the shared Redis health, for the Redis store (a flush while Redis is down is skipped at once). */
export function createUsage (app: FastifyInstance, store: UsageStore, now: () => number, guard?: RedisGuard) {
  let delta: UsageDelta = new Map()
  let keysSeen = new Map<string, { consumer: string, ms: number }>()
  let day = ''
  let dayEnds = 0
  const errorCodes = new WeakMap<FastifyRequest, string>()

  function countersOf (consumer: string, ms: number): Counters {
    if (ms >= dayEnds || ms < dayEnds - DAY_MS) {
      day = new Date(ms).toISOString().slice(0, 10)
      dayEnds = Date.parse(day + 'T00:00:00Z') + DAY_MS
    }
    return slot(day, consumer)
  }

  function slot (d: string, consumer: string): Counters {
    let consumers = delta.get(d)
    if (consumers === undefined) delta.set(d, consumers = new Map())
    let counters = consumers.get(consumer)
    if (counters === undefined) consumers.set(consumer, counters = {})
    return counters
  }

  const add = (c: Counters, name: string, n = 1): void => { c[name] = (c[name] ?? 0) + n }

  function count (request: FastifyRequest, reply: FastifyReply): void {
    const consumer = request.consumer
    if (consumer === null) return
    const ms = now()
    const c = countersOf(consumer.id, ms)
    add(c, COUNTER.requests)
    add(c, requestCounterOf(request))
    // On the day they were charged, which the quota counted them on: a request answered after midnight
    // would otherwise put the old day's units on the new one, past its daily_objects.
    if (request.chargedUnits > 0) add(countersOf(consumer.id, request.chargedUnitsAt), COUNTER.units, request.chargedUnits)
    if (request.cacheStatus !== '') {
      add(c, COUNTER.cacheLookups)
      if (CACHE_HITS.has(request.cacheStatus)) add(c, COUNTER.cacheHits)
    }
    const status = reply.statusCode
    if (status >= 400) {
      const code = errorCodes.get(request)
      const kind = code === undefined ? routeOf(request).config.dialect === 'compat' ? STATUS_KINDS[status] : undefined : REJECTION_KINDS[code]
      add(c, kind !== undefined ? COUNTER.rejectedOf(kind) : status >= 500 ? COUNTER.errors : COUNTER.clientErrors)
    }
    // A key refused as expired was not used: its last use stays the last one that was served.
    if (status === 401) return
    if (request.consumerKey === '') return
    // Updated in place: a key is seen on every request, and needs one object per flush, not per request.
    const seen = keysSeen.get(request.consumerKey)
    if (seen === undefined) keysSeen.set(request.consumerKey, { consumer: consumer.id, ms })
    else {
      seen.consumer = consumer.id
      seen.ms = ms
    }
  }

  let flushing: Promise<void> = Promise.resolve()
  /** The batch whose write failed: sent again as it is, under its id, before anything newer. */
  let unsent: UsageBatch | undefined

  /** What was counted since the last batch, as a batch of its own; undefined when nothing was. */
  function takeBatch (): UsageBatch | undefined {
    if (delta.size === 0 && keysSeen.size === 0) return undefined
    const batch = { id: randomUUID(), delta, lastUsed: new Map() as LastUsed }
    for (const [key, { consumer, ms }] of keysSeen) {
      batch.lastUsed.set(`key:${hashKey(key)}`, ms)
      batch.lastUsed.set(`consumer:${consumer}`, Math.max(ms, batch.lastUsed.get(`consumer:${consumer}`) ?? 0))
    }
    delta = new Map()
    keysSeen = new Map()
    day = ''
    dayEnds = 0
    return batch
  }

  /** Writes one batch; a failed one is kept as `unsent`. */
  async function send (batch: UsageBatch): Promise<boolean> {
    const add = async (): Promise<void> => { await store.add(batch) }
    const result: Attempt<void> = guard === undefined
      ? await add().then(() => ({ ok: true as const, value: undefined }), (err: unknown) => ({ ok: false as const, err }))
      : await guard.attempt(add)
    if (result.ok) return true
    // Skipped while Redis is down (err undefined): the outage is logged once, by the shared health.
    if (result.err !== undefined) app.log.warn({ err: { message: (result.err as Error).message } }, 'usage flush failed; the counts are kept for the next')
    unsent = batch
    return false
  }

  /**
   * Writes the batch that failed last time, then what was counted since. A failed batch is not merged
   * into newer counts but sent again unchanged: a write that failed on a lost reply may have been
   * applied, and the store applies a batch id once. Newer counts wait in memory meanwhile.
   */
  async function flushOnce (): Promise<void> {
    if (unsent !== undefined) {
      const batch = unsent
      unsent = undefined
      if (!await send(batch)) return
    }
    const batch = takeBatch()
    if (batch !== undefined) await send(batch)
  }

  return {
    store,
    count,
    noteError (request: FastifyRequest, code: string): void { errorCodes.set(request, code) },
    /**
     * Counts one upstream call `consumer` caused, as it is made (service/index.ts): a stale answer's
     * background refresh is made after the request was counted, and is charged to the consumer's share.
     */
    noteUpstreamCall (consumer: string): void { add(countersOf(consumer, now()), COUNTER.upstreamCalls) },
    /** Counts one upstream write of `consumer` (the audit tells). */
    noteWrite (consumer: string): void { add(countersOf(consumer, now()), COUNTER.writes) },
    /** One flush at a time; a flush asked for during one runs after it. */
    async flush (): Promise<void> {
      flushing = flushing.then(flushOnce)
      await flushing
    }
  }
}

export const usagePlugin = fp<{ now?: () => number }>(async (app, opts) => {
  const now = opts.now ?? Date.now
  const usage = createUsage(app, createUsageStore(app.config, app.redis), now, app.redis === null ? undefined : app.redisHealth.guard('usage'))
  app.decorate('usage', usage)
  app.audit.onWrite((consumer) => { if (consumer !== '-') usage.noteWrite(consumer) })
  app.addHook('onError', (request, _reply, err, done) => {
    if (typeof err.code === 'string') usage.noteError(request, err.code)
    done()
  })
  // After the route guard's onResponse (a dependency, so added before this one): the units a 5xx or a refusal gave
  // back are off the request by then, and usage counts what the quota kept.
  app.addHook('onResponse', function countUsage (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    usage.count(request, reply)
    done()
  })
  const timer = setInterval(() => { usage.flush().catch(() => {}) }, app.config.USAGE_FLUSH_MS)
  timer.unref()
  // The final flush runs last, just before Redis quits: the onClose hooks that run after this plugin's
  // (the upstream's abandons pending calls) still end requests, and their writes and answers count.
  app.addHook('onClose', async () => { clearInterval(timer) })
  app.beforeRedisQuit(async () => { await usage.flush() })
}, { name: 'usage', fastify: '5.x', dependencies: ['redis', 'audit', 'route-guard', 'consumer-auth', 'access-log'] })
