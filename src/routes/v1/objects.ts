// Object reads (scope read): one record, up to 100 ids in a URL, or a batch by POST (JSON or NDJSON).
import { Readable, Transform } from 'node:stream'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { NotFoundError, PayloadTooLargeError, ValidationError } from '../../errors.js'
import { AtlasIdSchema, IdListQuery, passthrough, problems } from '../../schemas/common.js'
import type { CacheInfo, StoredRecord } from '../../service/index.js'
import { combinedOutcome } from '../../cache/cache.js'
import { cacheHeaders, sendDerived, sendRaw } from './send.js'
import { createRecordRenderer, renderedEtag, type RecordRenderer } from './render.js'
import { matchesIfNoneMatch } from '../../cache/http.js'
import { buildProblem } from '../../plugins/problem-handler.js'
import { acceptQuality } from './input.js'
import { createBulkSlots } from './bulk-slots.js'

const MAX_URL_IDS = 100
// The bulk query's body may hold the consumer's whole max_batch: an id takes at most 22 bytes in JSON
// ("…19 digits…",); the rest allows for whitespace and the other fields. Never below BODY_LIMIT_BYTES.
const BULK_BYTES_PER_ID = 32
const BULK_SLACK_BYTES = 65536
const BULK_CEILING_BYTES = 256 * 1024 * 1024

function bulkBodyLimit (app: FastifyInstance, request: FastifyRequest): number {
  const maxBatch = request.consumer?.max_batch ?? 0
  return Math.min(BULK_CEILING_BYTES, Math.max(app.config.BODY_LIMIT_BYTES, maxBatch * BULK_BYTES_PER_ID + BULK_SLACK_BYTES))
}

function tooLarge (limit: number): Error {
  return new PayloadTooLargeError(`The body is larger than the ${limit} bytes this key's max_batch allows.`)
}

/** Counts the body as it arrives and stops it at the consumer's limit (known once the key is read). */
function limitBody (app: FastifyInstance, request: FastifyRequest, payload: NodeJS.ReadableStream): NodeJS.ReadableStream {
  const limit = bulkBodyLimit(app, request)
  const declared = Number(request.headers['content-length'] ?? '0')
  if (declared > limit) throw tooLarge(limit)
  let seen = 0
  const counted = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      seen += chunk.length
      if (seen > limit) callback(tooLarge(limit))
      else callback(null, chunk)
    }
  })
  // Fastify compares what it received with Content-Length through this property.
  Object.defineProperty(counted, 'receivedEncodedLength', { get: () => seen })
  return payload.pipe(counted)
}
const NDJSON = 'application/x-ndjson'

/** NDJSON when Accept names it (any case) with a q above 0 and not below JSON's; else JSON, the default. */
function prefersNdjson (accept: string | undefined): boolean {
  const ndjson = acceptQuality(accept, NDJSON)
  return ndjson.isNamed && ndjson.q > 0 && ndjson.q >= acceptQuality(accept, 'application/json').q
}
// How far a bulk stream looks ahead on cache presence to pack later chunks' misses into one call.
const LOOKAHEAD_CHUNKS = 16

const MjdMin = Type.Number({ minimum: 0, description: 'keep lc/lcnondets with mjd > mjd_min and fp with mjd_obs >= mjd_min' })

const ObjectRecordSchema = passthrough('The full ATLAS record (object, lc, lcnondets, fp, sherlock_crossmatches, sherlock_classifications, tns_crossmatches, external_crossmatches). Every ATLAS id inside (object.id, lc[].id, fp[].atlas_object_id, transient_object_id, …) is a JSON string.', {
  object: Type.Object({ id: AtlasIdSchema }, { additionalProperties: true })
})

const BatchSchema = Type.Object({
  objects: Type.Array(ObjectRecordSchema),
  missing: Type.Array(AtlasIdSchema, { description: 'requested ids the upstream does not know' })
})

/** Distinct ids in first-seen order. */
function distinct (ids: readonly string[]): string[] {
  return [...new Set(ids)]
}

export function parseIdList (text: string): string[] {
  return distinct(text.split(','))
}

const OPEN = Buffer.from('{"objects":[')
// A bulk answer up to this size goes out as one Buffer (compressed above the threshold like any body).
const STREAM_ABOVE_BYTES = 64 * 1024
const COMMA = Buffer.from(',')
const LINE_END = Buffer.from('}\n')
const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * How a bulk answer is written: its first bytes, those of each id in request order (a record, or null for
 * an id the upstream does not know), and those after the last id.
 */
interface Framing {
  start: () => Iterable<Buffer>
  item: (id: string, record: StoredRecord | null) => Iterable<Buffer>
  end: () => Iterable<Buffer>
  /**
   * An error once the answer has started (its status sent): returns its last bytes, or undefined when
   * the answer cannot say it and is aborted instead. Logged at warn.
   */
  fail: (err: Error) => Buffer | undefined
  /** A shutdown's cut ends the answer at once (by `fail`), not at the reader's next step. */
  isCutAtOnce: boolean
}

/**
 * NDJSON: one line per id, `{"id":…,"object":{…}}` or `{"id":…,"missing":true}`; an error after the
 * first line ends the stream with an `{"error":<problem>}` line (the status cannot change any more). The
 * lines before it are delivered; the units of the ids after them are given back (streamChunks).
 */
function ndjsonFraming (request: FastifyRequest, recordToV1: RecordRenderer, mjdMin: number | undefined): Framing {
  return {
    * start () {},
    * item (id, record) {
      if (record === null) {
        yield Buffer.from(`{"id":"${id}","missing":true}\n`)
        return
      }
      // A line in three writes rather than one concatenated copy of the record.
      yield Buffer.from(`{"id":"${id}","object":`)
      yield recordToV1(record, mjdMin, true).bytes
      yield LINE_END
    },
    * end () {},
    fail (err) {
      const e = err as { code?: string, statusCode?: number, message?: string }
      const problem = buildProblem(request, e.statusCode ?? 500, e.code ?? 'GW_INTERNAL', e.code?.startsWith('GW_') === true ? (e.message ?? '') : 'internal error')
      request.log.warn({ err }, 'ndjson stream ended early')
      return Buffer.from(JSON.stringify({ error: problem }) + '\n')
    },
    isCutAtOnce: false
  }
}

/**
 * JSON: `{"objects":[…],"missing":[…]}`, the records as their renderings (not copied), the missing ids
 * gathered as they come and written at the end. `streamed`: the reply of an answer written as it is read,
 * whose renderings pass through once (not memoised), and which an error after its first bytes aborts:
 * JSON has no way to say it, and a document closed early would parse as a complete answer that lacks
 * records, so the connection is closed (the client sees an incomplete transfer). Such an answer delivered
 * nothing usable: all its units are given back (auth/plugin.ts), where an NDJSON stream keeps those of the
 * lines before its error line.
 */
function jsonFraming (recordToV1: RecordRenderer, mjdMin: number | undefined, streamed?: FastifyReply): Framing {
  const missing: string[] = []
  let records = 0
  let isAborted = false
  return {
    * start () { yield OPEN },
    * item (id, record) {
      if (record === null) {
        missing.push(`"${id}"`)
        return
      }
      if (records++ > 0) yield COMMA
      yield recordToV1(record, mjdMin, streamed !== undefined).bytes
    },
    * end () { yield Buffer.from(`],"missing":[${missing.join(',')}]}`) },
    fail (err) {
      if (isAborted || streamed === undefined) return undefined
      isAborted = true
      streamed.request.isAnswerAborted = true
      streamed.request.log.warn({ err }, 'json stream aborted: an error after its first bytes, connection closed')
      streamed.raw.destroy()
      return undefined
    },
    isCutAtOnce: true
  }
}

/** A batch answer as the parts it is made of (the memoised renderings, not copies) and their length. */
interface BatchParts { parts: Buffer[], length: number, read: CacheInfo }

async function batchParts (app: FastifyInstance, recordToV1: RecordRenderer, request: FastifyRequest, ids: string[], mjdMin: number | undefined): Promise<BatchParts> {
  const read = await app.atlas.objects(request, ids)
  const framing = jsonFraming(recordToV1, mjdMin)
  const parts = [...framing.start()]
  read.records.forEach((record, i) => { parts.push(...framing.item(ids[i] as string, record)) })
  parts.push(...framing.end())
  let length = 0
  for (const part of parts) length += part.length
  return { parts, length, read }
}

/** The batch answer in one Buffer (a URL's ≤ 100 ids: its ETag is computed over the bytes). */
async function batchJson (app: FastifyInstance, recordToV1: RecordRenderer, request: FastifyRequest, ids: string[], mjdMin: number | undefined): Promise<{ body: Buffer, read: CacheInfo }> {
  const { parts, length, read } = await batchParts(app, recordToV1, request, ids, mjdMin)
  return { body: Buffer.concat(parts, length), read }
}

/**
 * Before chunk `from` is read: when the misses from there on (absent or too old in the cache; ids
 * cached as missing are hits) are few per chunk, loads the misses of the next chunks together in one
 * full call, so each chunk then reads from the cache. Looks ahead on cache presence only, one chunk of
 * ids at a time, and keeps no records (the stream holds one chunk of them). Returns the index up to
 * which the ids have been looked at (`until`: nothing before it is looked at again, so a stream of cached
 * ids checks each chunk once ahead, then reads it) and, when the call loaded ids of the chunk at `from`,
 * a MISS (`read`): that chunk's own read then finds them cached, yet the answer loaded them.
 */
async function packMisses (app: FastifyInstance, request: FastifyRequest, ids: string[], from: number, chunkSize: number): Promise<{ until: number, read?: CacheInfo }> {
  const callSize = app.upstream.objects.maxIds
  const misses: string[] = []
  let chunkMisses = 0
  let until = from
  const end = Math.min(ids.length, from + chunkSize * LOOKAHEAD_CHUNKS)
  while (until < end && misses.length < callSize) {
    const slice = ids.slice(until, Math.min(end, until + chunkSize))
    const sliceMisses = new Set(await app.atlas.misses(slice))
    for (const id of slice) {
      if (sliceMisses.has(id)) {
        if (misses.length === callSize) break
        misses.push(id)
        if (until < from + chunkSize) chunkMisses++
      }
      until++
    }
  }
  // Misses all inside the first chunk (or none): its own read makes the same call.
  if (until <= from + chunkSize || misses.length === 0) return { until }
  try {
    // Only a stream of several chunks gets here: a bulk read (streamChunks).
    const { route } = await app.atlas.objects(request, misses, true)
    // That it loaded ids of the chunk: the answer is a MISS however the chunk's own read then finds them
    // (cached). Its own outcome does not speak for the chunk: a STALE one may be a later chunk's entry
    // (served while it refreshes), or a fallback that stored nothing (the chunk's read then loads those
    // ids itself); the chunk's own read says what each of its records is, and how old.
    if (chunkMisses > 0) return { until, read: { status: 'MISS', ageS: 0, route } }
  } catch (err) {
    // Each chunk then reads on its own: a failure shows at the chunk it concerns, after the ids before it.
    request.log.debug({ err }, 'bulk stream: packed read failed; reading chunk by chunk')
  }
  return { until }
}

/**
 * A bulk answer (NDJSON, or JSON of more than one chunk) written as it is read: the ids in request order
 * in chunks of UPSTREAM_MAX_IDS_PER_CALL, so memory holds one chunk, never the whole result (the next
 * chunk is read once the stream's reader wants more: a slow client holds it back). The misses of several
 * mostly cached chunks go out together in full calls (packMisses). Resolves once the first chunk is read:
 * an error there rejects, so the answer carries its real status and Retry-After. An error after the first
 * bytes cannot change the status any more: the framing ends the answer (`fail`); so does a shutdown that
 * cuts it (plugins/health.ts), without waiting for the read under way. `ids` are distinct, one unit each:
 * those of the chunk that failed and after it were never delivered, and their units are given back.
 */
async function streamChunks (app: FastifyInstance, request: FastifyRequest, ids: string[], framing: Framing): Promise<{ stream: Readable, first: CacheInfo }> {
  const chunkSize = app.config.UPSTREAM_MAX_IDS_PER_CALL
  // A stream of more than one chunk is a bulk export: its records go to L2 and not into L1, where they
  // would push out the hot entries other consumers read (with Redis; without it L1 is the only cache).
  const isBulk = ids.length > chunkSize
  // A shutdown's cut (plugins/health.ts) rejects the read under way. One promise per chunk, not one for
  // the whole stream: each Promise.race on a promise that never settles adds a reaction to it that keeps
  // the race's outcome (the chunk's records) reachable until the stream ends (80 MiB more in bench S5).
  let cutError: Error | undefined
  let cutRead: ((err: Error) => void) | undefined
  app.health.whenCut(request, (err) => {
    cutError = err
    cutRead?.(err)
    if (framing.isCutAtOnce) framing.fail(err)
  }, framing.isCutAtOnce ? 'closing the connection' : 'ending it with an error line')
  async function raceCut<T> (read: Promise<T>): Promise<T> {
    if (cutError !== undefined) {
      // The read was started: its outcome is not wanted, and a rejection must not go unhandled.
      read.catch(() => {})
      throw cutError
    }
    const cut = new Promise<never>((_resolve, reject) => { cutRead = reject })
    try {
      return await Promise.race([read, cut])
    } finally {
      cutRead = undefined
    }
  }
  // What the first chunk's reads served: the headers go out with it, before the later chunks are read.
  let first: CacheInfo | undefined
  async function readChunk (from: number, chunk: string[], packedUntil: number): Promise<{ records: Array<StoredRecord | null>, packedUntil: number }> {
    const packed = from >= packedUntil ? await packMisses(app, request, ids, from, chunkSize) : { until: packedUntil }
    const read = await app.atlas.objects(request, chunk, isBulk)
    // The chunk's ids the packed call loaded were misses of this answer too (its own read found them
    // cached). Only what the headers need is kept: the chunk's records would stay held to the stream's end.
    first ??= { route: read.route, ...combinedOutcome(packed.read === undefined ? [read] : [read, packed.read]) }
    return { records: read.records, packedUntil: packed.until }
  }
  // The ids from `from` on were not delivered: their units go back, and the framing ends the answer.
  function * failAt (from: number, err: unknown): Generator<Buffer> {
    request.undeliveredUnits = ids.length - from
    const last = framing.fail(err as Error)
    if (last !== undefined) yield last
  }
  async function * parts (): AsyncGenerator<Buffer> {
    let packedUntil = 0
    // Whether a byte has gone: before one, an error rejects the first read (the answer carries its status).
    let hasWritten = false
    // The framing's opening (JSON's `{"objects":[`), held until the first item has rendered and written
    // with it: counted as written on its own, a first record that failed to render aborted a JSON answer
    // (0 bytes, no status line) where a 500 could still be sent.
    let opening: Buffer[] = []
    for (let i = 0; i < ids.length; i += chunkSize) {
      const chunk = ids.slice(i, i + chunkSize)
      let records
      try {
        // A cut while the chunk before was being written is thrown before the next read starts.
        ;({ records, packedUntil } = await raceCut(readChunk(i, chunk, packedUntil)))
      } catch (err) {
        if (!hasWritten) throw err
        // The chunk failed whole: none of its ids was written, cached ones included.
        yield * failAt(i, err)
        return
      }
      if (i === 0) opening = [...framing.start()]
      for (const [k, record] of records.entries()) {
        let item: Buffer[]
        try {
          // Rendered whole before any of it is written: a rendering that throws (a record it cannot read,
          // e.g. a NaN parsed for mjd_min) must leave no half line before NDJSON's error line.
          item = [...opening, ...framing.item(chunk[k] as string, record)]
          opening = []
        } catch (err) {
          if (!hasWritten) throw err
          yield * failAt(i + k, err)
          return
        }
        hasWritten ||= item.length > 0
        yield * item
      }
    }
    yield * framing.end()
  }
  const all = parts()
  const head = await all.next()
  async function * fromFirst (): AsyncGenerator<Buffer> {
    if (head.done === true) return
    yield head.value
    yield * all
  }
  return { stream: Readable.from(fromFirst(), { objectMode: false }), first: first as CacheInfo }
}

// The body of a 304 (none is sent).
const NOT_RENDERED = Buffer.alloc(0)

export const objectRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const recordToV1 = createRecordRenderer(app.cache.derived)
  const slots = createBulkSlots({ perConsumer: app.config.BULK_MAX_STREAMS_PER_CONSUMER, total: app.config.BULK_MAX_STREAMS }, app.metrics)
  /** A bulk answer written as it is read (streamChunks): NDJSON, or JSON of more than one chunk. */
  const isStreamed = (accept: string | undefined, count: number): boolean => prefersNdjson(accept) || count > app.config.UPSTREAM_MAX_IDS_PER_CALL
  app.get('/objects/:id', {
    config: { scope: 'read', units: () => 1, cached: 'validated' },
    schema: {
      summary: 'One object record',
      tags: ['objects'],
      params: Type.Object({ id: AtlasIdSchema }),
      querystring: Type.Object({ mjd_min: Type.Optional(MjdMin) }),
      response: { 200: ObjectRecordSchema, 304: Type.Null(), ...problems(404) }
    }
  }, async (request, reply) => {
    const read = await app.atlas.objects(request, [request.params.id])
    const record = read.records[0]
    if (record === null || record === undefined) throw new NotFoundError(`No ATLAS object ${request.params.id}.`)
    // A revalidation of the whole record that still matches is answered without rendering it: its ETag
    // follows from the stored one (render.ts).
    if (request.query.mjd_min === undefined && request.headers['if-none-match'] !== undefined) {
      const tag = renderedEtag(record.etag)
      if (matchesIfNoneMatch(request.headers['if-none-match'], tag)) return sendDerived(request, reply, read, NOT_RENDERED, tag)
    }
    const rendered = recordToV1(record, request.query.mjd_min)
    return sendDerived(request, reply, read, rendered.bytes, rendered.etag)
  })

  app.get('/objects', {
    config: { scope: 'read', units: (request) => parseIdList((request.query as { ids: string }).ids).length, cached: 'validated' },
    schema: {
      summary: `Up to ${MAX_URL_IDS} objects by id`,
      description: `At most ${MAX_URL_IDS} ids in a URL; more is a 400 (GW_VALIDATION): POST /v1/objects/query takes more. ` +
        'More ids than the key\'s max_batch is a 413.',
      tags: ['objects'],
      querystring: Type.Object({ ids: IdListQuery, mjd_min: Type.Optional(MjdMin) }),
      response: { 200: BatchSchema, 304: Type.Null(), ...problems(413) }
    },
    // Before authorisation charges the units: a refused request costs nothing.
    preHandler: async (request) => {
      const count = parseIdList(request.query.ids).length
      if (count > MAX_URL_IDS) throw new ValidationError(`At most ${MAX_URL_IDS} ids in a URL (this one has ${count}); POST /v1/objects/query takes more.`)
    }
  }, async (request, reply) => {
    const ids = parseIdList(request.query.ids)
    const { body, read } = await batchJson(app, recordToV1, request, ids, request.query.mjd_min)
    return sendDerived(request, reply, read, body)
  })

  app.post('/objects/query', {
    config: { scope: 'read', units: (request) => distinct((request.body as { ids: string[] }).ids).length, produces: [NDJSON], cached: 'reported' },
    // The route's own ceiling; the consumer's limit is applied while the body arrives.
    bodyLimit: BULK_CEILING_BYTES,
    preParsing: async (request, _reply, payload) => limitBody(app, request, payload),
    // Before authorisation charges the units: a stream refused for want of a slot costs nothing.
    preHandler: async (request, reply) => {
      if (isStreamed(request.headers.accept, distinct(request.body.ids).length)) slots.take(request, reply)
    },
    schema: {
      summary: 'Objects by id, in bulk (JSON, or NDJSON with Accept: application/x-ndjson)',
      description: 'Up to the consumer\'s max_batch ids, read in chunks of UPSTREAM_MAX_IDS_PER_CALL. With `Accept: application/x-ndjson` the answer streams one line per id: ' +
        '`{"id":…,"object":{…}}` or `{"id":…,"missing":true}`; an error after the first line ends the stream with `{"error":<problem>}`. ' +
        'A JSON answer of more than one chunk streams too (chunked, no Content-Length); an error after its first bytes aborts it ' +
        '(the connection is closed: an incomplete transfer, never a document that parses).',
      tags: ['objects'],
      body: Type.Object({
        ids: Type.Array(AtlasIdSchema, { minItems: 1 }),
        mjd_min: Type.Optional(MjdMin)
      }, { additionalProperties: false }),
      response: { 200: BatchSchema, ...problems(413) }
    }
  }, async (request, reply) => {
    const ids = distinct(request.body.ids)
    const mjdMin = request.body.mjd_min
    const isNdjson = prefersNdjson(request.headers.accept)
    if (isStreamed(request.headers.accept, ids.length)) {
      // Chunk by chunk (JSON of more than one chunk too): a 10,000-id JSON answer read whole held its
      // ~120 MB until sent.
      const framing = isNdjson ? ndjsonFraming(request, recordToV1, mjdMin) : jsonFraming(recordToV1, mjdMin, reply)
      const { stream, first } = await streamChunks(app, request, ids, framing)
      // The stream's headers say what its first chunk's read served (they go out before the rest is read).
      cacheHeaders(reply, first)
      return sendRaw(reply, isNdjson ? NDJSON : JSON_TYPE, stream)
    }
    // Up to a chunk of records: written part by part from the renderings L1 holds, not copied into one
    // Buffer per request (a 1,000-id answer is ~12 MB; bench S4).
    const { parts, length, read } = await batchParts(app, recordToV1, request, ids, mjdMin)
    cacheHeaders(reply, read)
    if (length <= STREAM_ABOVE_BYTES) return sendRaw(reply, JSON_TYPE, Buffer.concat(parts, length))
    reply.header('content-length', length)
    return sendRaw(reply, JSON_TYPE, Readable.from(parts, { objectMode: false }))
  })
}
