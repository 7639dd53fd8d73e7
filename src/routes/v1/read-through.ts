// Reads through the cache to the upstream, shared by the v1 routes (and the compatibility path):
// whole tables fetched wide and filtered locally, and per-id object records. Every upstream call a
// request causes is charged to its consumer's upstream share (in the upstream client, callContext) and
// counted for its access log line.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { UpstreamError } from '../../errors.js'
import { isUpstreamError, type FetchResult } from '../../cache/cache.js'
import { computeEtag } from '../../cache/entry.js'
import { buildCacheControl, storeTtlMs, type RouteId } from '../../cache/freshness.js'
import { matchesIfNoneMatch, wantsBypass } from '../../cache/http.js'
import { buildCacheKey, cacheTags, objectKey } from '../../cache/keys.js'
import { views } from '../../cache/tags.js'
import { parseLossless } from '../../lib/json.js'
import type { CallContext } from '../../upstream/client.js'
import type { Fields, UpstreamEndpoint } from '../../upstream/endpoints.js'
import type { StoredRecord } from './render.js'

const JSON_TYPE = 'application/json; charset=utf-8'
const MISSING = Buffer.from('null')
// Parsed tables by ETag: pollers re-read the same table many times per freshness window.
const PARSED_MEMO_SIZE = 32
const parsedMemo = new Map<string, unknown>()

/**
 * What the upstream client needs to know of a request: each upstream call it causes (retries and
 * every chunk of a batch included) takes one unit of its consumer's upstream share and is counted for
 * its access log line.
 */
export function callContext (request: FastifyRequest): CallContext {
  const consumer = request.consumer
  return {
    ...(consumer === null ? {} : { beforeCall: () => request.server.quota.takeUpstreamShare(consumer) }),
    onCall: () => { request.upstreamCalls++ }
  }
}

function parseMemo (entry: FetchResult['entry']): unknown {
  const hit = parsedMemo.get(entry.etag)
  if (hit !== undefined) return hit
  const value = parseLossless(entry.body.toString('utf8'))
  if (parsedMemo.size >= PARSED_MEMO_SIZE) parsedMemo.delete(parsedMemo.keys().next().value as string)
  parsedMemo.set(entry.etag, value)
  return value
}

/** What the cache headers of an answer derive from. */
export interface CacheInfo { status: FetchResult['status'], ageS: number, route: RouteId }

export interface TableRead extends CacheInfo { value: unknown }

/** A whole upstream read reply through the cache, as the upstream's text (compat answers it as is). */
export async function readTableText (
  app: FastifyInstance, request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []
): Promise<CacheInfo & { text: string, entry: FetchResult['entry'] }> {
  const key = buildCacheKey(route, fields)
  const result = await app.cache.fetch(key, app.cache.freshness(route), async () => {
    const reply = await app.upstream.client.call(endpoint, fields, callContext(request))
    if (reply.status !== 200 || !/^\s*[[{]/.test(reply.text)) {
      throw Object.assign(new UpstreamError(`The upstream refused a ${endpoint}/ read (status ${reply.status}).`), { cause: reply.text.slice(0, 200) })
    }
    return { body: Buffer.from(reply.text, 'utf8'), contentType: JSON_TYPE, tags: [cacheTags.route(route), ...tags] }
  }, { route, bypass: wantsBypass(request) })
  request.cacheStatus = result.status
  const { entry, status, ageS } = result
  // The text only when asked for: v1 reads use the parsed memo and never need the whole body as a string.
  return { get text () { return entry.body.toString('utf8') }, entry, status, ageS, route }
}

/**
 * A whole upstream read reply through the cache, losslessly parsed (ids as bigint). The reply must be
 * 200 JSON; anything else is an upstream error, never stored.
 */
export async function readTable (
  app: FastifyInstance, request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []
): Promise<TableRead> {
  const { entry, status, ageS } = await readTableText(app, request, route, endpoint, fields, tags)
  return { value: parseMemo(entry), status, ageS, route }
}

/** Sends a body derived from a cached read with the read's cache headers and its own strong ETag. */
export function sendDerived (request: FastifyRequest, reply: FastifyReply, info: CacheInfo, body: string | Buffer, etag?: string): FastifyReply {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  const tag = etag ?? computeEtag(bytes)
  reply.header('x-cache', info.status)
  reply.header('age', String(info.ageS))
  reply.header('cache-control', buildCacheControl(request.server.cache.freshness(info.route), info.ageS))
  reply.header('etag', tag)
  if (matchesIfNoneMatch(request.headers['if-none-match'], tag)) return reply.code(304).send()
  return reply.code(200).type(JSON_TYPE).send(bytes)
}

/** Sends bytes or a stream as they are (no schema serialisation: upstream data passes through). */
export function sendRaw (reply: FastifyReply, contentType: string, body: string | Buffer | NodeJS.ReadableStream, status = 200): FastifyReply {
  return reply.code(status).type(contentType).send(body)
}

export interface ObjectsRead extends CacheInfo {
  /** Records in the upstream dialect (ids as bare integers), null for unknown ids, in `ids` order. */
  records: Array<StoredRecord | null>
}

function fromEntry (entry: { body: Buffer, etag: string }): StoredRecord | null {
  return entry.body.equals(MISSING) ? null : { bytes: entry.body, etag: entry.etag }
}

/**
 * Object records by id: hits from the cache (fresh, or stale while one background refresh runs), misses
 * from the upstream through the batching loader, stale records when the upstream fails. Records are
 * cached per id with their full history; unknown ids are cached briefly as missing.
 */
export async function readObjects (app: FastifyInstance, request: FastifyRequest, ids: readonly string[]): Promise<ObjectsRead> {
  const { cache } = app
  const fresh = cache.freshness('objects')
  const freshMissing = cache.freshness('objects-missing')
  const now = Date.now()
  const bypass = wantsBypass(request)
  const entries = bypass ? ids.map(() => undefined) : await cache.getEntries(ids.map(objectKey))
  const records = new Array<StoredRecord | null>(ids.length).fill(null)
  const misses: number[] = []
  const stale: number[] = []
  let status: FetchResult['status'] = bypass ? 'BYPASS' : 'HIT'
  let oldest = now
  entries.forEach((entry, i) => {
    if (entry === undefined) { misses.push(i); return }
    const isMissing = entry.body.equals(MISSING)
    const f = isMissing ? freshMissing : fresh
    const age = now - entry.storedAt
    oldest = Math.min(oldest, entry.storedAt)
    if (age < f.freshMs) {
      records[i] = fromEntry(entry)
    } else if (age < f.freshMs + f.staleWhileRevalidateMs) {
      records[i] = fromEntry(entry)
      stale.push(i)
    } else {
      misses.push(i)
    }
  })

  /** Loads `wanted` through the batching loader and stores each record (or "missing") under its id. */
  const load = async (wanted: string[]): Promise<Array<StoredRecord | null>> => {
    const loaded = (await app.upstream.objects.load(wanted, callContext(request)))
      .map((text) => {
        if (text === null) return null
        const bytes = Buffer.from(text, 'utf8')
        return { bytes, etag: computeEtag(bytes) }
      })
    await cache.putEntries(loaded.map((record, k) => ({
      key: objectKey(wanted[k] as string),
      body: record === null ? MISSING : record.bytes,
      ttlMs: storeTtlMs(record === null ? freshMissing : fresh),
      tags: [views.object(wanted[k] as string)]
    })))
    return loaded
  }
  const idsAt = (idx: number[]) => idx.map((i) => ids[i] as string)

  if (stale.length > 0) {
    status = 'STALE'
    // One background refresh per batch of stale ids; its failure leaves the stale records in place.
    load(idsAt(stale)).catch((err: unknown) => request.log.warn({ err }, 'background refresh of object records failed'))
  }
  if (misses.length > 0) {
    const wanted = idsAt(misses)
    try {
      // With Redis, a miss another replica is already loading is waited for instead of loaded twice.
      const loaded = new Map<string, StoredRecord | null>()
      await cache.fillShared(wanted.map(objectKey), async (keys) => {
        const mine = wanted.filter((id) => keys.includes(objectKey(id)))
        const texts = await load(mine)
        mine.forEach((id, k) => loaded.set(id, texts[k] ?? null))
      })
      const filledElsewhere = wanted.filter((id) => !loaded.has(id))
      const found = filledElsewhere.length === 0 ? [] : await cache.getEntries(filledElsewhere.map(objectKey))
      filledElsewhere.forEach((id, k) => {
        const e = found[k]
        loaded.set(id, e === undefined ? null : fromEntry(e))
      })
      misses.forEach((i) => { records[i] = loaded.get(ids[i] as string) ?? null })
      if (!bypass) status = 'MISS'
    } catch (err) {
      // stale-if-error: answer from expired-but-kept records when every miss has one.
      const usable = isUpstreamError(err) && misses.every((i) => {
        const e = entries[i]
        return e !== undefined && now - e.storedAt < fresh.freshMs + fresh.staleIfErrorMs
      })
      if (!usable) throw err
      for (const i of misses) {
        const e = entries[i] as NonNullable<typeof entries[number]>
        records[i] = fromEntry(e)
        oldest = Math.min(oldest, e.storedAt)
      }
      status = 'STALE'
    }
  }
  request.cacheStatus = status
  cache.report(status, 'objects')
  return { records, status, ageS: Math.max(0, Math.floor((now - oldest) / 1000)), route: 'objects' }
}
