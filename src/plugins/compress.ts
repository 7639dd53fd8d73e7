// Response compression. @fastify/compress answers gzip or brotli when the client asks, above a size
// threshold, and compresses streams (the bulk NDJSON answer) as they go. It leaves ETags alone, so this
// plugin adds what a cache needs on top, for bodies sent with a strong ETag (cached reads,
// routes/v1/send.ts):
// - an encoded body is another representation, so it gets its own strong ETag (`"<tag>.gzip"`,
//   `"<tag>.br"`; no identity tag ends in `.gzip` or `.br`) and If-None-Match is matched against it;
// - `Vary: Accept-Encoding` on the 200s and 304s of such routes;
// - the encoded bytes are kept in L1's derived memo by ETag and encoding (inside CACHE_MAX_BYTES), so
//   an L1 hit sends bytes compressed once, not compressed again on every request.
// Bodies without an ETag (the NDJSON stream, POST answers, problems above the threshold) are left to
// @fastify/compress.
import { Readable } from 'node:stream'
import { promisify } from 'node:util'
import { brotliCompress, brotliCompressSync, constants as zlibConstants, gzip, gzipSync } from 'node:zlib'
import fp from 'fastify-plugin'
import fastifyCompress from '@fastify/compress'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { matchesIfNoneMatch } from '../cache/http.js'
import type { Derived, DerivedMemo } from '../cache/store.js'

export type Encoding = 'br' | 'gzip'

/** Below this many bytes a body goes out as it is (problems, small JSON): compressing it saves nothing. */
export const COMPRESS_THRESHOLD_BYTES = 1024
// Preferred first when the client accepts both equally.
const ENCODINGS: Encoding[] = ['br', 'gzip']
// JSON, NDJSON and text; never event streams (they must flush per event).
const COMPRESSIBLE = /^text\/(?!event-stream)|[/+](?:x-nd)?json(?:;|$)|\+xml(?:;|$)/
// Bodies with an ETag are compressed once and then served from the memo: brotli quality 4 and gzip's
// default level (6), a better ratio for a one-off cost. Everything else (the NDJSON stream, POST answers
// of thousands of records) is compressed on every request, so it gets the fast settings: on v1 records,
// brotli quality 1 runs ~4× faster than quality 4 for a ratio of 4.0 instead of 4.4, and gzip level 1
// ~2.6× faster than level 6 for 3.5 instead of 4.3.
const BROTLI_QUALITY = 4
const STREAM_BROTLI_QUALITY = 1
const STREAM_GZIP_LEVEL = 1

// Up to this size a body is compressed inline (well under a millisecond); larger ones (a 100-id batch
// is ~2 MB, tens of milliseconds) go to the thread pool, so they do not stall the event loop.
const INLINE_MAX_BYTES = 64 * 1024

const brotliOptions = (body: Buffer) => ({
  params: { [zlibConstants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: body.length }
})
const brotliAsync = promisify(brotliCompress)
const gzipAsync = promisify(gzip)

async function encode (encoding: Encoding, body: Buffer): Promise<Buffer> {
  if (body.length <= INLINE_MAX_BYTES) return encoding === 'br' ? brotliCompressSync(body, brotliOptions(body)) : gzipSync(body)
  return encoding === 'br' ? await brotliAsync(body, brotliOptions(body)) : await gzipAsync(body)
}

/** The strong ETag of `etag`'s body encoded with `encoding`. */
export function encodedEtag (etag: string, encoding: Encoding): string {
  return `${etag.slice(0, -1)}.${encoding}"`
}

/**
 * The encoding to send for an Accept-Encoding header (RFC 9110 §12.5.3), or undefined for identity. A
 * coding the header names takes its own q; one it does not name takes the q of `*`, if any. The highest q
 * above 0 wins; between equal ones, one named outright beats one `*` allows, brotli beats gzip when both
 * are named, and gzip beats brotli when only `*` allows them (every client that sends `*` decodes gzip).
 * (@fastify/accept-negotiator, which @fastify/compress uses, sends brotli for `gzip;q=0, br;q=0, *`.)
 */
export function chooseEncoding (header: string): Encoding | undefined {
  const named = new Map<string, number>()
  let wildcard = 0
  for (const part of header.toLowerCase().split(',')) {
    const [name = '', ...params] = part.split(';').map((s) => s.trim())
    if (name === '') continue
    const qParam = params.find((p) => p.startsWith('q='))
    const q = qParam === undefined ? 1 : Number(qParam.slice(2))
    if (!Number.isFinite(q)) continue
    if (name === '*') wildcard = q
    else named.set(name === 'x-gzip' ? 'gzip' : name, q)
  }
  let best: { encoding: Encoding, q: number, rank: number } | undefined
  for (const encoding of ENCODINGS) {
    const isNamed = named.has(encoding)
    const q = isNamed ? named.get(encoding) as number : wildcard
    // Ties: named before wildcard; among named, ENCODINGS' order (br first); among wildcard, gzip first.
    const rank = isNamed ? 2 + (encoding === 'br' ? 1 : 0) : (encoding === 'gzip' ? 1 : 0)
    if (q > 0 && (best === undefined || q > best.q || (q === best.q && rank > best.rank))) best = { encoding, q, rank }
  }
  return best?.encoding
}

function addVary (reply: FastifyReply): void {
  const vary = reply.getHeader('vary')
  if (vary === undefined) {
    reply.header('vary', 'accept-encoding')
    return
  }
  const text = Array.isArray(vary) ? vary.join(', ') : String(vary)
  if (!/(?:^|,)\s*(?:accept-encoding|\*)\s*(?:,|$)/i.test(text)) reply.header('vary', `${text}, accept-encoding`)
}

/**
 * The empty body of a 304. On HEAD, Fastify's own HEAD route runs its onSend step after this one: it
 * writes `Content-Length: 0` for no payload and throws on `null` (fastify/fastify#6978, open), while a
 * stream is only drained. RFC 9110 §8.6: a 304 sends no Content-Length that differs from the 200's.
 */
function notModifiedBody (request: FastifyRequest): Readable | null {
  if (request.method !== 'HEAD') return null
  // @fastify/compress (after this step) would encode that empty stream and label the 304 with it.
  request.headers['accept-encoding'] = 'identity'
  return Readable.from([])
}

export interface EtagCompressionOptions {
  /** Where encoded bodies are kept (the L1 store's derived memo); none: compressed on every request. */
  memo?: DerivedMemo
  threshold?: number
}

/**
 * The onSend step for bodies with a strong ETag: picks the encoding the client asks for, answers 304
 * for a matching encoded ETag, and otherwise sends the encoded bytes (from the memo when there).
 */
export function createEtagCompression (opts: EtagCompressionOptions = {}) {
  const { memo } = opts
  const threshold = opts.threshold ?? COMPRESS_THRESHOLD_BYTES
  function encodingOf (request: FastifyRequest): Encoding | undefined {
    const header = request.headers['accept-encoding']
    if (header === undefined || request.headers['x-no-compression'] !== undefined) return undefined
    return chooseEncoding(header)
  }

  // A callback hook: only a body not yet in the memo waits for the encoder; the rest (every identity
  // response, every hit of an encoded one) pays no promise.
  return function onSend (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
    // @fastify/compress (bodies without an ETag; its step runs after this one) reads `*` as gzip even
    // next to `gzip;q=0`: it is handed the choice made here instead.
    const asked = request.headers['accept-encoding']
    if (asked !== undefined && asked !== 'gzip' && asked !== 'br') request.headers['accept-encoding'] = chooseEncoding(asked) ?? 'identity'
    const etag = reply.getHeader('etag')
    if (typeof etag !== 'string' || !etag.startsWith('"') || reply.getHeader('content-encoding') !== undefined) return done(null, payload)
    if (reply.statusCode === 304) {
      // The client's stored representation (identity or encoded) is still current; it depends on
      // Accept-Encoding like the 200 it revalidates.
      addVary(reply)
      return done(null, notModifiedBody(request))
    }
    if (reply.statusCode !== 200 || !(Buffer.isBuffer(payload) || typeof payload === 'string')) return done(null, payload)
    const type = reply.getHeader('content-type')
    if (typeof type !== 'string' || !COMPRESSIBLE.test(type)) return done(null, payload)
    const size = Buffer.byteLength(payload)
    if (size < threshold) return done(null, payload)
    addVary(reply)
    const encoding = encodingOf(request)
    if (encoding === undefined) return done(null, payload)
    const tag = encodedEtag(etag, encoding)
    reply.header('etag', tag)
    if (matchesIfNoneMatch(request.headers['if-none-match'], tag)) {
      reply.code(304)
      reply.removeHeader('content-type')
      return done(null, notModifiedBody(request))
    }
    const key = `${encoding}:${etag}`
    const send = (encoded: Derived): void => {
      reply.header('content-encoding', encoding)
      reply.header('content-length', encoded.bytes.length)
      done(null, encoded.bytes)
    }
    const kept = memo?.get(key)
    if (kept !== undefined) return send(kept)
    encode(encoding, Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8')).then((bytes) => {
      const encoded = { bytes, etag: tag }
      memo?.set(key, encoded)
      send(encoded)
    }, done)
  }
}

/**
 * Registers @fastify/compress for the routes registered after it (globally, brotli and gzip, above
 * COMPRESS_THRESHOLD_BYTES; request bodies are not decompressed) and the ETag-aware step before it.
 */
export const compressPlugin = fp(async (app) => {
  app.addHook('onSend', createEtagCompression(app.cache.derived === undefined ? {} : { memo: app.cache.derived }))
  await app.register(fastifyCompress, {
    global: true,
    globalDecompression: false,
    encodings: ENCODINGS,
    threshold: COMPRESS_THRESHOLD_BYTES,
    customTypes: COMPRESSIBLE,
    brotliOptions: { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: STREAM_BROTLI_QUALITY } },
    zlibOptions: { level: STREAM_GZIP_LEVEL }
  })
  // Fastify makes each GET's HEAD route with its own HEAD step (which empties the body) as the last onSend
  // hook, and @fastify/compress then appends its step after that one, where it finds no body: a HEAD got
  // the identity Content-Length of an answer GET sends compressed (RFC 9110 §8.6 forbids it), and no
  // Content-Encoding or Vary. Put back last, the HEAD step sees the body as GET sends it.
  app.addHook('onRoute', (route) => {
    if (route.method !== 'HEAD' || !Array.isArray(route.onSend)) return
    const head = route.onSend.findIndex((hook) => hook.name === 'headRouteOnSendHandler')
    if (head >= 0 && head < route.onSend.length - 1) route.onSend.push(...route.onSend.splice(head, 1))
  })
}, { name: 'compress', fastify: '5.x', dependencies: ['cache'] })
