// The service both dialects call (`app.atlas`): reads through the cache to the upstream and writes with
// their invalidation. v1 and compat routes parse their dialect, call this, and render the answer; none
// of them talks to the cache or the upstream client directly. docs/architecture.md walks the path.
//
// - Tables (lists, VRA tables, membership, cone, crossmatches) are read whole per query and cached by
//   route and fields; routes filter them locally.
// - Object records are cached per id with their full history; a batch is split into hits and misses,
//   and only the misses go upstream (batched across concurrent requests by the object loader).
// - Every upstream call a request causes is charged to its consumer's upstream share (in the upstream
//   client, before the global budget) and counted for its access log line.
// - A write is sent once, its `info` text read (the upstream reports failures with success codes), and
//   every cached view that shows it invalidated (cache/tags.ts), on every replica.
// - A write whose reply was lost can be read back (read-back.ts), never from the cache; v1 writes keep
//   their outcomes under an Idempotency-Key (idempotency.ts), in Redis when there is one.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { UpstreamError } from '../errors.js'
import type { CacheEntry, CacheStatus } from '../cache/cache.js'
import { storeTtlMs, type RouteId } from '../cache/freshness.js'
import { wantsBypass } from '../cache/http.js'
import { buildCacheKey, cacheTags, objectKey } from '../cache/keys.js'
import { views, writeTags, type WriteKind, type WriteTarget } from '../cache/tags.js'
import { parseLossless } from '../lib/json.js'
import type { CallContext, UpstreamReply } from '../upstream/client.js'
import { writeOutcome, type Fields, type UpstreamEndpoint, type WriteOutcome } from '../upstream/endpoints.js'
import { createIdempotency } from './idempotency.js'
import { createMemoryIdempotencyStore, createRedisIdempotencyStore } from './idempotency-store.js'
import { readBack, type ReadBack } from './read-back.js'

const JSON_TYPE = 'application/json; charset=utf-8'
// How an id the upstream does not know is cached.
const MISSING_ENTRY = Buffer.from('null')
// Parsed tables by ETag, per app: pollers re-read the same table many times per freshness window.
const PARSED_MEMO_SIZE = 32

/** An object record as the upstream sent it (ids as bare integers), with the ETag of those bytes. */
export interface StoredRecord { bytes: Buffer, etag: string }

/** What the cache headers of an answer derive from. */
export interface CacheInfo { status: CacheStatus, ageS: number, route: RouteId }

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
 * What the upstream client needs to know of a request: each upstream call it causes (retries and
 * every chunk of a batch included) takes one unit of its consumer's upstream share and is counted for
 * its access log line.
 */
function callContext (request: FastifyRequest): CallContext {
  const consumer = request.consumer
  return {
    ...(consumer === null
      ? {}
      : {
          beforeCall: () => request.server.quota.takeUpstreamShare(consumer),
          onUnsent: () => request.server.quota.refundUpstreamShare(consumer)
        }),
    onCall: () => { request.upstreamCalls++ }
  }
}

function fromEntry (entry: CacheEntry): StoredRecord | null {
  return entry.body.equals(MISSING_ENTRY) ? null : { bytes: entry.body, etag: entry.etag }
}

export function createAtlasService (app: FastifyInstance) {
  const { cache } = app
  const parsedMemo = new Map<string, unknown>()

  function parsed (entry: CacheEntry): unknown {
    const hit = parsedMemo.get(entry.etag)
    if (hit !== undefined) return hit
    const value = parseLossless(entry.body.toString('utf8'))
    if (parsedMemo.size >= PARSED_MEMO_SIZE) parsedMemo.delete(parsedMemo.keys().next().value as string)
    parsedMemo.set(entry.etag, value)
    return value
  }

  async function fetchTable (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[]) {
    const result = await cache.fetch(buildCacheKey(route, fields), cache.freshness(route), async () => {
      const reply = await app.upstream.client.call(endpoint, fields, callContext(request))
      if (reply.status !== 200 || !/^\s*[[{]/.test(reply.text)) {
        throw Object.assign(new UpstreamError(`The upstream refused a ${endpoint}/ read (status ${reply.status}).`), { cause: reply.text.slice(0, 200) })
      }
      return { body: Buffer.from(reply.text, 'utf8'), contentType: JSON_TYPE, tags: [cacheTags.route(route), ...tags] }
    }, { route, bypass: wantsBypass(request) })
    request.cacheStatus = result.status
    return result
  }

  return {
    /** A whole upstream read reply through the cache, as the upstream's text (compat answers it as is). */
    async tableText (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []): Promise<TableText> {
      const { entry, status, ageS } = await fetchTable(request, route, endpoint, fields, tags)
      return { get text () { return entry.body.toString('utf8') }, status, ageS, route }
    },

    /** The same read, losslessly parsed (integers beyond 2^53 as bigint). */
    async table (request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []): Promise<TableRead> {
      const { entry, status, ageS } = await fetchTable(request, route, endpoint, fields, tags)
      return { value: parsed(entry), status, ageS, route }
    },

    /**
     * Object records by id (distinct ids): hits from the cache, misses from the upstream through the
     * batching loader, stale records while they refresh or when the upstream fails. Unknown ids are
     * remembered as missing for a shorter time.
     */
    async objects (request: FastifyRequest, ids: readonly string[]): Promise<ObjectsRead> {
      const fresh = cache.freshness('objects')
      const freshMissing = cache.freshness('objects-missing')
      const idOf = new Map(ids.map((id) => [objectKey(id), id]))
      const result = await cache.fetchMany(ids.map(objectKey), async (keys) => {
        const wanted = keys.map((key) => idOf.get(key) as string)
        const texts = await app.upstream.objects.load(wanted, callContext(request))
        return texts.map((text, k) => ({
          key: keys[k] as string,
          body: text === null ? MISSING_ENTRY : Buffer.from(text, 'utf8'),
          ttlMs: storeTtlMs(text === null ? freshMissing : fresh),
          tags: [views.object(wanted[k] as string)]
        }))
      }, {
        route: 'objects',
        bypass: wantsBypass(request),
        freshnessOf: (entry) => (entry.body.equals(MISSING_ENTRY) ? freshMissing : fresh)
      })
      request.cacheStatus = result.status
      return { records: result.entries.map(fromEntry), status: result.status, ageS: result.ageS, route: 'objects' }
    },

    /**
     * One upstream write, sent once (never retried blindly, never cached). Unless the upstream says the
     * object or list does not exist, every view that shows the write is invalidated.
     */
    async write (request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget): Promise<WriteResult> {
      const reply = await app.upstream.client.call(kind, fields, callContext(request))
      let body: unknown = null
      if (reply.text.length > 0 && reply.contentType.includes('json')) {
        try {
          body = parseLossless(reply.text)
        } catch (err) {
          throw Object.assign(new UpstreamError(`The upstream sent malformed JSON for ${kind}/.`), { cause: err })
        }
      }
      const outcome = writeOutcome(reply.status, body)
      if (outcome !== 'unknown_object' && outcome !== 'unknown_list') await cache.invalidate(writeTags(kind, target))
      return { reply, outcome }
    },

    /**
     * After a write's reply was lost: invalidates every view that shows it (it may have landed), then
     * reads its effect straight from the upstream where it can (never from the cache). The read is
     * charged to the request's consumer and counted like any upstream call.
     */
    async readBack (request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget): Promise<ReadBack> {
      await cache.invalidate(writeTags(kind, target))
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

export const servicePlugin = fp(async (app) => {
  app.decorate('atlas', createAtlasService(app))
}, { name: 'service', fastify: '5.x', dependencies: ['upstream', 'cache', 'redis'] })
