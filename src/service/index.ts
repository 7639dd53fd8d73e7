// The service both dialects call (`app.atlas`): reads through the cache to the upstream and writes with
// their invalidation. v1 and compat routes parse their dialect, call this, and render the answer; none
// of them talks to the cache or the upstream client directly. docs/architecture.md walks the path.
//
// - Tables (lists, VRA tables, membership, cone, crossmatches) are read whole per query and cached by
//   route and fields; routes filter them locally.
// - Object records are cached per id with their full history; a batch is split into hits and misses,
//   and only the misses go upstream (batched across concurrent requests by the object loader). Each
//   objects/ call is topped up with ids predicted to be read soon, and list members are prefetched
//   (prefetch.ts).
// - Every upstream call a request causes is charged to its consumer's upstream share (in the upstream
//   client, before the global budget) and counted for its access log line.
// - A write is sent once, its `info` text read (the upstream reports failures with success codes), and
//   every cached view that shows it invalidated (cache/tags.ts), on every replica.
// - A write whose reply was lost can be read back (read-back.ts), never from the cache; v1 writes keep
//   their outcomes under an Idempotency-Key (idempotency.ts), in Redis when there is one.
import fp from 'fastify-plugin'
import type { Consumer } from '../consumers/schema.js'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { UpstreamError } from '../errors.js'
import type { CacheEntry, CacheStatus, StaleReason } from '../cache/cache.js'
import { storeTtlMs, type Freshness, type RouteId } from '../cache/freshness.js'
import { wantsBypass } from '../cache/http.js'
import { buildCacheKey, objectKey } from '../cache/keys.js'
import { views, writeTags, type WriteKind, type WriteTarget } from '../cache/tags.js'
import { parseLossless } from '../lib/json.js'
import { bigIntSpans } from '../lib/json-scan.js'
import type { CallContext, UpstreamReply } from '../upstream/client.js'
import { replyFields, writeOutcome, type Fields, type UpstreamEndpoint, type WriteOutcome } from '../upstream/endpoints.js'
import type { RecordText } from '../upstream/object-loader.js'
import { createIdempotency } from './idempotency.js'
import { createMemoryIdempotencyStore, createRedisIdempotencyStore } from './idempotency-store.js'
import { mayHaveApplied, readBack, type ReadBack } from './read-back.js'
import { createPrefetch, MISSING_ENTRY } from './prefetch.js'
import { backgroundAllowed, budgetPressure } from './priorities.js'

const JSON_TYPE = 'application/json; charset=utf-8'
// A table parsed losslessly takes about 4-5 times its JSON bytes of heap (measured on a list and a record).
const PARSED_BYTES_PER_BODY_BYTE = 5
// The table reads whose rows name objects consumers may read next (prediction sources), and the row
// field naming each: lists and custom lists, the VRA tables, cone hits.
const LIST_MEMBER_FIELD: Partial<Record<UpstreamEndpoint, string>> = {
  objectlist: replyFields.listRowId,
  objectgroupslist: replyFields.tableObjectId,
  vrascoreslist: replyFields.tableObjectId,
  vratodolist: replyFields.tableObjectId,
  vraranklist: replyFields.tableObjectId,
  cone: replyFields.coneHit.id
}
const LIST_ROUTES: ReadonlySet<RouteId> = new Set(['lists', 'custom-lists', 'vra-scores', 'vra-todo', 'vra-ranks', 'cone'])
// Of those, the ones whose members are also prefetched in calls of their own (PREFETCH_MIN_IDS): lists.
const PREFETCHED_ROUTES: ReadonlySet<RouteId> = new Set(['lists', 'custom-lists'])

/** An object record as the upstream sent it (ids as bare integers), with the ETag of those bytes. */
export interface StoredRecord {
  bytes: Buffer
  etag: string
  /** Where its integer literals beyond 2^53 are, when stored with it (see CacheEntry.bigInts). */
  bigInts?: readonly number[]
}

/** What the cache headers of an answer derive from. */
export interface CacheInfo {
  status: CacheStatus
  ageS: number
  route: RouteId
  /** Why a STALE answer is not the ordinary stale-while-revalidate one (the budget is low, or the upstream failed). */
  reason?: StaleReason
}

export interface TableRead extends CacheInfo { value: unknown }
export interface TableText extends CacheInfo { readonly text: string }

export interface ObjectsRead extends CacheInfo {
  /** Records in the upstream dialect, null for unknown ids, in the order of the ids asked for. */
  records: Array<StoredRecord | null>
}

export interface WriteResult {
  /** The upstream's reply, exactly (compat passes it on). */
  reply: UpstreamReply
  /** What it meant, read from its `info` text; undefined when the reply says nothing known. */
  outcome: WriteOutcome | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    atlas: AtlasService
  }
}

export type AtlasService = ReturnType<typeof createAtlasService>

/**
 * What the upstream client needs to know of a request: each upstream call it causes (retries, every
 * chunk of a batch and the background refresh of a stale answer included) takes one unit of its
 * consumer's upstream share and is counted in its consumer's usage, and for its access log line when
 * made before the request was answered.
 */
function callContext (request: FastifyRequest, write?: WriteHooks): CallContext {
  const consumer = request.consumer
  return consumer === null ? new RequestCalls(request, write) : new ConsumerCalls(request, consumer, write)
}

/** A write's own hooks on its call (its audit record needs them). */
interface WriteHooks { onSent: () => void, onReply: (status: number) => void }

// Prototype methods, not closures: a cache hit builds its context and never calls, so it allocates one
// small object. The upstream client and the object loader call these as methods.
class RequestCalls implements CallContext {
  /** A write's only: told when its call is put on a connection, and each reply's status. */
  readonly onSent?: () => void
  readonly onReply?: (status: number) => void
  constructor (protected readonly request: FastifyRequest, write?: WriteHooks) {
    if (write !== undefined) {
      this.onSent = write.onSent
      this.onReply = write.onReply
    }
  }

  onCall (): void { this.request.upstreamCalls++ }
}

class ConsumerCalls extends RequestCalls {
  /** The last share take's window end: a give-back after it is dropped. */
  private shareWindowEnd: number | undefined
  constructor (request: FastifyRequest, private readonly consumer: Consumer, write?: WriteHooks) { super(request, write) }
  async beforeCall (): Promise<boolean> {
    const charge = await this.request.server.quota.takeUpstreamShare(this.consumer)
    this.shareWindowEnd = charge?.windowEnd
    return charge !== undefined
  }

  onUnsent (): Promise<void> { return this.request.server.quota.refundUpstreamShare(this.consumer, this.shareWindowEnd) }

  // Counted in usage as it is made, not when the request is answered: a stale answer's background
  // refresh is made after that, on this context, and its consumer's share paid for it.
  override onCall (): void {
    super.onCall()
    this.request.server.usage.noteUpstreamCall(this.consumer.id)
  }
}

function fromEntry (entry: CacheEntry): StoredRecord | null {
  if (entry.body.equals(MISSING_ENTRY)) return null
  return entry.bigInts === undefined ? { bytes: entry.body, etag: entry.etag } : { bytes: entry.body, etag: entry.etag, bigInts: entry.bigInts }
}

/** A table reply as it was stored, parsed: the loader's parse, handed to the read that stored it. */
interface LoadedTable { body: Buffer, value: unknown }

/**
 * A 200 table reply, parsed losslessly; an UpstreamError unless it is a JSON list, which every table read
 * the gateway makes answers (the wide cone search included; crossmatches are a list of lists).
 */
function tableValue (endpoint: UpstreamEndpoint, reply: UpstreamReply): unknown[] {
  let value: unknown
  try {
    value = parseLossless(reply.text)
  } catch (err) {
    throw Object.assign(new UpstreamError(`The upstream sent a malformed ${endpoint}/ reply.`), {
      cause: { contentType: reply.contentType, snippet: reply.text.slice(0, 200), parseError: (err as Error).message }
    })
  }
  if (!Array.isArray(value)) {
    throw Object.assign(new UpstreamError(`The upstream sent something other than a list for a ${endpoint}/ read.`), {
      cause: { contentType: reply.contentType, snippet: reply.text.slice(0, 200) }
    })
  }
  return value
}

/** Member ids of a list table, digit for digit (rows are parsed losslessly). */
function memberIds (value: unknown, field: string): string[] {
  if (!Array.isArray(value)) return []
  const ids: string[] = []
  for (const row of value as unknown[]) {
    const id = row !== null && typeof row === 'object' ? (row as Record<string, unknown>)[field] : undefined
    if (typeof id === 'bigint' || typeof id === 'number' || typeof id === 'string') ids.push(String(id))
  }
  return ids
}

export interface ServiceOptions {
  /** The clock of the predictions (tests inject the app's). */
  now?: () => number
}

export function createAtlasService (app: FastifyInstance, serviceOpts: ServiceOptions = {}) {
  const { cache } = app
  const config = app.config

  /** Cache items for records as the upstream sent them: one per id, tagged with the object. */
  function recordItems (ids: readonly string[], texts: readonly RecordText[]) {
    const fresh = cache.freshness('objects')
    const freshMissing = cache.freshness('objects-missing')
    return ids.map((id, k) => {
      const text = texts[k] ?? null
      const body = text === null ? MISSING_ENTRY : Buffer.from(text, 'utf8')
      return {
        key: objectKey(id),
        body,
        ttlMs: storeTtlMs(text === null ? freshMissing : fresh),
        tags: [views.object(id)],
        // Found once here, so that a v1 rendering of the stored record copies around them (render.ts).
        ...(text === null ? {} : { bigInts: bigIntSpans(body) })
      }
    })
  }

  /** An object entry's freshness: a record's, or the shorter one of an id the upstream does not know. */
  const objectFreshness = (entry: CacheEntry): Freshness =>
    cache.freshness(entry.body.equals(MISSING_ENTRY) ? 'objects-missing' : 'objects')

  /** Records by id through the cache; misses go upstream under `ctx`. */
  async function readObjects (ids: readonly string[], ctx: CallContext, route: string, bypass: boolean, isBulk = false) {
    const keys = ids.map(objectKey)
    return cache.fetchMany(keys, async (missed) => {
      // Back from keys to ids on a miss only: a hit never needs it.
      const idOf = new Map(keys.map((key, k) => [key, ids[k] as string]))
      const wanted = missed.map((key) => idOf.get(key) as string)
      return recordItems(wanted, await app.upstream.objects.load(wanted, ctx))
    }, {
      route,
      bypass,
      freshnessOf: objectFreshness,
      fillL1: !isBulk
    })
  }

  const prefetch = config.PREFETCH_ENABLED
    ? createPrefetch({
      ...(serviceOpts.now === undefined ? {} : { now: serviceOpts.now }),
      metrics: app.metrics,
      // List memberships are kept within CACHE_MAX_BYTES, as the parsed tables they come from are.
      ...(cache.derived === undefined ? {} : { memo: cache.derived }),
      freshness: () => ({ record: cache.freshness('objects'), missing: cache.freshness('objects-missing') }),
      horizonMs: config.PREFETCH_HORIZON_S * 1000,
      delayMs: config.PREFETCH_DELAY_MS,
      minIds: config.PREFETCH_MIN_IDS,
      maxBytesPerCall: config.PREFETCH_MAX_BYTES_PER_CALL,
      recordBytes: config.PREFETCH_RECORD_BYTES,
      maxIds: () => app.upstream.objects.maxIds,
      isTaken: (id) => app.upstream.objects.isTaken(id),
      store: async (ids, texts, mark) => { await cache.putEntries(recordItems(ids, texts), mark) },
      holdFills: (ids) => cache.holdFills(ids.map(objectKey)),
      mark: () => cache.mark(),
      loadInBackground: async (ids) => (await readObjects(ids, {}, 'prefetch', false)).entries,
      isBackgroundAllowed: () => backgroundAllowed(app, true),
      onError: (err) => { app.log.warn({ err }, 'prefetch failed; predictions skipped') }
    })
    : undefined
  if (prefetch !== undefined) app.upstream.objects.setFiller(prefetch.filler)
  // A read after a write to an object does not join an objects/ call that left before it.
  app.upstream.objects.setWrites({ mark: () => cache.mark(), isWrittenSince: (id, mark) => cache.isInvalidatedSince(mark, [views.object(id)]) })

  /** Invalidates every view a write changes; a prediction of a changed record in flight is not stored. */
  async function invalidateWrite (kind: WriteKind, target: WriteTarget): Promise<void> {
    const tags = writeTags(kind, target)
    if (tags.includes(views.object(target.objectId))) prefetch?.noteWrite(target.objectId)
    await cache.invalidate(tags)
  }

  /** Sends a write and reads its reply; unless the object or list does not exist, invalidates its views. */
  async function sendWrite (request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget, hooks: WriteHooks): Promise<WriteResult> {
    const reply = await app.upstream.client.call(kind, fields, callContext(request, hooks))
    let body: unknown = null
    if (reply.text.length > 0 && reply.contentType.includes('json')) {
      try {
        body = parseLossless(reply.text)
      } catch (err) {
        // The reply's status with it: a write answered with malformed JSON may have been applied.
        throw Object.assign(new UpstreamError(`The upstream sent malformed JSON for ${kind}/.`), {
          cause: { status: reply.status, contentType: reply.contentType, snippet: reply.text.slice(0, 200), parseError: (err as Error).message }
        })
      }
    }
    const outcome = writeOutcome(kind, reply.status, body)
    if (outcome !== 'unknown_object' && outcome !== 'unknown_list') await invalidateWrite(kind, target)
    return { reply, outcome }
  }

  // Parsed tables by ETag in L1's derived memo, inside CACHE_MAX_BYTES (none without L1): pollers re-read
  // the same table many times per freshness window. `loaded`: the parse of the reply this read stored, so
  // that a miss parses once.
  function parsed (entry: CacheEntry, loaded?: LoadedTable): unknown {
    const key = 'parsed:' + entry.etag
    const hit = cache.derived?.getValue(key)
    if (hit !== undefined) return hit
    const value = loaded?.body === entry.body ? loaded.value : parseLossless(entry.body.toString('utf8'))
    cache.derived?.setValue(key, value, entry.body.length * PARSED_BYTES_PER_BODY_BYTE)
    return value
  }

  /** A read that fails was not answered from the cache: its access line and usage say MISS (or BYPASS). */
  function markMissed (request: FastifyRequest): void {
    request.cacheStatus = wantsBypass(request) ? 'BYPASS' : 'MISS'
  }

  async function fetchTable (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[]) {
    let loaded: LoadedTable | undefined
    // Only the tags a write invalidates (tags.ts): a route-wide tag that nothing invalidates held, in Redis,
    // every key its route ever stored, its set's lifetime renewed by each fill.
    let result
    try {
      result = await cache.fetch(buildCacheKey(route, fields), cache.freshness(route), async () => {
        const reply = await app.upstream.client.call(endpoint, fields, callContext(request))
        if (reply.status !== 200) {
          throw Object.assign(new UpstreamError(`The upstream refused a ${endpoint}/ read (status ${reply.status}).`), { cause: reply.text.slice(0, 200) })
        }
        // Parsed before it is stored: every read of an entry parses it (v1 tables, cone and list
        // predictions), so a truncated or malformed body stored would fail each one until it expired.
        const value = tableValue(endpoint, reply)
        const body = Buffer.from(reply.text, 'utf8')
        loaded = { body, value }
        return { body, contentType: JSON_TYPE, tags }
      }, { route, bypass: wantsBypass(request), tags })
    } catch (err) {
      markMissed(request)
      throw err
    }
    request.cacheStatus = result.status
    const field = LIST_MEMBER_FIELD[endpoint]
    if (prefetch !== undefined && field !== undefined && LIST_ROUTES.has(route)) {
      const { entry } = result
      prefetch.noteList(buildCacheKey(route, fields), entry.etag, () => memberIds(parsed(entry, loaded), field), PREFETCHED_ROUTES.has(route))
    }
    return { ...result, loaded }
  }

  return {
    /** A whole upstream read reply through the cache, as the upstream's text (compat answers it as is). */
    async tableText (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []): Promise<TableText> {
      const { entry, status, ageS, reason } = await fetchTable(request, route, endpoint, fields, tags)
      return { get text () { return entry.body.toString('utf8') }, status, ageS, route, ...(reason === undefined ? {} : { reason }) }
    },

    /** The same read, losslessly parsed (integers beyond 2^53 as bigint). */
    async table (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []): Promise<TableRead> {
      const { entry, status, ageS, reason, loaded } = await fetchTable(request, route, endpoint, fields, tags)
      return { value: parsed(entry, loaded), status, ageS, route, ...(reason === undefined ? {} : { reason }) }
    },

    /**
     * Object records by id (distinct ids): hits from the cache, misses from the upstream through the
     * batching loader, stale records while they refresh or when the upstream fails. Unknown ids are
     * remembered as missing for a shorter time. `isBulk`: a part of a bulk read (a long NDJSON stream),
     * whose records are kept in L2 and not copied into L1 (see the cache's fillL1).
     */
    async objects (request: FastifyRequest, ids: readonly string[], isBulk = false): Promise<ObjectsRead> {
      let result
      try {
        result = await readObjects(ids, callContext(request), 'objects', wantsBypass(request), isBulk)
      } catch (err) {
        markMissed(request)
        throw err
      }
      request.cacheStatus = result.status
      prefetch?.noteRead(ids, result.entries)
      return { records: result.entries.map(fromEntry), status: result.status, ageS: result.ageS, route: 'objects', ...(result.reason === undefined ? {} : { reason: result.reason }) }
    },

    /**
     * Of `ids` (distinct), those a read would have to load upstream now: absent, or older than their
     * stale-while-revalidate window. Looks at the cache only (a store read, never the upstream); the
     * entries are not kept, so a caller can look ahead without holding records.
     */
    async misses (ids: readonly string[]): Promise<string[]> {
      const keys = ids.map(objectKey)
      const load = new Set(await cache.toLoad(keys, objectFreshness))
      return ids.filter((_, k) => load.has(keys[k] as string))
    },

    /** The predictor (undefined when PREFETCH_ENABLED is off). */
    prefetch,

    /**
     * One upstream write, sent once (never retried blindly, never cached). Unless the upstream says the
     * object or list does not exist, every view that shows the write is invalidated; so too when the
     * reply was lost or unreadable and the write may have been applied. `settle` calls `send` once and
     * makes of its result or error what the route answers (compat: the reply as it is; v1: an outcome,
     * read back after a lost reply).
     */
    async write<R extends { outcome: string | undefined }> (request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget,
      settle: (send: () => Promise<WriteResult>) => Promise<R>): Promise<R> {
      // Recorded once, with its consumer and what `settle` answered, if it reached the upstream (audit/plugin.ts).
      return await app.audit.around(request, kind, fields, target, async (onSent, onReply) => await settle(async () => {
        try {
          // The record takes the status of the write's own last reply (one it failed on included),
          // never of another call a failure carries as its cause (a refresh's login).
          return await sendWrite(request, kind, fields, target, { onSent, onReply })
        } catch (err) {
          // The write may have landed. Compat passes the error on as it is and reads nothing back, so
          // the views are dropped here, for both dialects (a v1 read-back drops them again).
          if (mayHaveApplied(err)) await invalidateWrite(kind, target)
          throw err
        }
      }))
    },

    /**
     * After a write's reply was lost: invalidates every view that shows it (it may have landed), then
     * reads its effect straight from the upstream where it can (never from the cache). The read is
     * charged to the request's consumer and counted like any upstream call.
     */
    async readBack (request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget): Promise<ReadBack> {
      await invalidateWrite(kind, target)
      return await readBack((endpoint, readFields) => app.upstream.client.call(endpoint, readFields, callContext(request)), kind, fields)
    },

    /** Outcomes kept under Idempotency-Key, shared by every replica through Redis when there is one. */
    idempotency: createIdempotency({
      store: app.redis === null ? createMemoryIdempotencyStore() : createRedisIdempotencyStore(app.redis),
      prefix: app.config.REDIS_KEY_PREFIX,
      waitMs: app.config.IDEMPOTENCY_WAIT_MS,
      log: app.log.child({ component: 'idempotency' }),
      ...(app.redis === null ? {} : { guard: app.redisHealth.guard('idempotency') })
    })
  }
}

export const servicePlugin = fp<ServiceOptions>(async (app, opts) => {
  // Background revalidation only above the budget's headroom; below it, stale answers up to the maximum
  // staleness instead of loads (priorities.ts).
  app.cache.setBudgetPolicy({ maxStaleMs: app.config.CACHE_MAX_STALE_S * 1000, backgroundAllowed: (claim, overdue) => backgroundAllowed(app, claim, overdue) })
  // Object misses are gathered for longer while the budget is pressed (object-loader.ts).
  app.upstream.objects.setPressure(() => budgetPressure(app))
  const service = createAtlasService(app, opts)
  app.decorate('atlas', service)
  app.addHook('onClose', async () => {
    app.upstream.objects.setPressure(undefined)
    app.upstream.objects.setFiller(undefined)
    service.prefetch?.close()
    await service.idempotency.close()
  })
}, { name: 'service', fastify: '5.x', dependencies: ['upstream', 'cache', 'redis', 'audit'] })
