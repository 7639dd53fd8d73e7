// Compression: gzip and brotli when asked, above the threshold, with a strong ETag per representation,
// Vary, 304 per encoding, encoded bytes kept in L1's memo, and the NDJSON stream compressed.
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib'
import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../../helper.js'
import { encodedEtag } from '../../../src/plugins/compress.js'

const { A, B, U } = FIXTURE_IDS

const decoders: Record<string, (b: Buffer) => Buffer> = { gzip: gunzipSync, br: brotliDecompressSync }

test('a cached object read: br and gzip decode to the identity bytes, each with its own strong ETag and Vary', async (t) => {
  const { app } = await buildTestApp(t)
  const url = `/v1/objects/${A}`
  const plain = await app.inject({ url, headers: demoAuth(app) })
  t.equal(plain.statusCode, 200)
  t.notOk(plain.headers['content-encoding'], 'no Accept-Encoding: identity')
  t.match(plain.headers.vary, /accept-encoding/i, 'identity answers say they vary too')
  const identityTag = plain.headers.etag as string
  t.match(identityTag, /^"[A-Za-z0-9_-]+\.v1r\d+"$/, "a record rendering's ETag (routes/v1/render.ts)")
  const tags = new Set([identityTag])
  for (const encoding of ['gzip', 'br']) {
    const res = await app.inject({ url, headers: { ...demoAuth(app), 'accept-encoding': encoding } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-encoding'], encoding)
    t.match(res.headers.vary, /accept-encoding/i)
    t.equal(res.headers.etag, encodedEtag(identityTag, encoding as 'gzip' | 'br'), `${encoding}: its own ETag`)
    t.equal(Number(res.headers['content-length']), res.rawPayload.length)
    t.ok(res.rawPayload.length < plain.rawPayload.length / 2, `${encoding} is smaller (${res.rawPayload.length} of ${plain.rawPayload.length})`)
    t.ok((decoders[encoding] as (b: Buffer) => Buffer)(res.rawPayload).equals(plain.rawPayload), `${encoding} decodes to the same bytes`)
    tags.add(res.headers.etag as string)
  }
  t.equal(tags.size, 3, 'three representations, three ETags')
  // The client's preference decides; brotli first when both are equal.
  const both = await app.inject({ url, headers: { ...demoAuth(app), 'accept-encoding': 'gzip, deflate, br' } })
  t.equal(both.headers['content-encoding'], 'br')
  const gzipPreferred = await app.inject({ url, headers: { ...demoAuth(app), 'accept-encoding': 'br;q=0.5, gzip' } })
  t.equal(gzipPreferred.headers['content-encoding'], 'gzip')
  const none = await app.inject({ url, headers: { ...demoAuth(app), 'accept-encoding': 'identity' } })
  t.notOk(none.headers['content-encoding'])
  t.ok(none.rawPayload.equals(plain.rawPayload))
})

test('a large batch answer (compressed off the event loop) decodes to the same bytes, with its own ETag', async (t) => {
  const { app } = await buildTestApp(t)
  const { A, B, C, D, E, F } = FIXTURE_IDS
  const url = `/v1/objects?ids=${[A, B, C, D, E, F].join(',')}`
  const plain = await app.inject({ url, headers: demoAuth(app) })
  t.ok(plain.rawPayload.length > 64 * 1024, `above the inline size (${plain.rawPayload.length} bytes)`)
  for (const encoding of ['gzip', 'br'] as const) {
    const res = await app.inject({ url, headers: { ...demoAuth(app), 'accept-encoding': encoding } })
    t.equal(res.headers['content-encoding'], encoding)
    t.equal(res.headers.etag, encodedEtag(plain.headers.etag as string, encoding))
    t.ok((decoders[encoding] as (b: Buffer) => Buffer)(res.rawPayload).equals(plain.rawPayload), `${encoding} decodes to the same bytes`)
  }
})

test('If-None-Match per encoding: 304 for the matching representation, 200 for another', async (t) => {
  const { app } = await buildTestApp(t)
  const url = `/v1/objects/${B}`
  const auth = demoAuth(app)
  const gz = await app.inject({ url, headers: { ...auth, 'accept-encoding': 'gzip' } })
  const gzTag = gz.headers.etag as string
  const notModified = await app.inject({ url, headers: { ...auth, 'accept-encoding': 'gzip', 'if-none-match': gzTag } })
  t.equal(notModified.statusCode, 304, 'gzip ETag with gzip: 304')
  t.equal(notModified.rawPayload.length, 0)
  t.equal(notModified.headers.etag, gzTag)
  t.match(notModified.headers.vary, /accept-encoding/i)
  t.notOk(notModified.headers['content-encoding'])

  const weak = await app.inject({ url, headers: { ...auth, 'accept-encoding': 'gzip', 'if-none-match': `W/${gzTag}` } })
  t.equal(weak.statusCode, 304, 'weak comparison, as for identity')

  const asBrotli = await app.inject({ url, headers: { ...auth, 'accept-encoding': 'br', 'if-none-match': gzTag } })
  t.equal(asBrotli.statusCode, 200, 'the gzip ETag does not validate the brotli representation')
  t.equal(asBrotli.headers['content-encoding'], 'br')

  const asIdentity = await app.inject({ url, headers: { ...auth, 'if-none-match': gzTag } })
  t.equal(asIdentity.statusCode, 200, 'nor the identity one')
  t.notOk(asIdentity.headers['content-encoding'])

  const identityTag = asIdentity.headers.etag as string
  const identity304 = await app.inject({ url, headers: { ...auth, 'if-none-match': identityTag } })
  t.equal(identity304.statusCode, 304, 'the identity ETag still validates identity')
  t.match(identity304.headers.vary, /accept-encoding/i)
})

test('HEAD revalidates like GET: 304 for a matching ETag of any encoding, with no Content-Length', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  for (const url of [`/v1/objects/${B}`, `/v1/objects/${B}/lightcurve`]) {
    const plain = await app.inject({ url, headers: auth })
    for (const encoding of ['identity', 'gzip', 'br']) {
      const headers = { ...auth, 'accept-encoding': encoding }
      const get = await app.inject({ url, headers })
      t.equal(get.statusCode, 200)
      const head = await app.inject({ method: 'HEAD', url, headers })
      t.equal(head.statusCode, 200, `${url} ${encoding}: HEAD 200`)
      t.equal(head.headers.etag, get.headers.etag, 'the same ETag as GET')
      t.equal(head.headers['content-length'], get.headers['content-length'], "GET's Content-Length")
      const tag = get.headers.etag as string
      for (const method of ['GET', 'HEAD'] as const) {
        const res = await app.inject({ method, url, headers: { ...headers, 'if-none-match': tag } })
        t.equal(res.statusCode, 304, `${method} ${url} ${encoding} with its ETag: 304`)
        t.equal(res.rawPayload.length, 0)
        t.equal(res.headers.etag, tag)
        // RFC 9110 §8.6: a 304 sends no Content-Length unless it is the 200's (here: none at all).
        t.equal(res.headers['content-length'], undefined, `${method} ${encoding} 304: no Content-Length`)
        t.match(res.headers.vary, /accept-encoding/i)
        t.equal(res.headers['content-encoding'], undefined, `${method} ${encoding} 304: no Content-Encoding (it has no body)`)
      }
    }
    t.equal(plain.statusCode, 200)
  }
})

test('an encoding the client refused is never sent: * stands for the encodings it did not name', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const cases: Array<[string, string | undefined]> = [
    ['gzip;q=0, *', 'br'],
    ['br;q=0, *', 'gzip'],
    ['gzip;q=0, br;q=0, *', undefined],
    ['*;q=0.5, gzip;q=0', 'br'],
    ['*;q=0.5, gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    // Only the wildcard: gzip, which every client that sends it can decode (as @fastify/compress does).
    ['*', 'gzip'],
    ['identity, *;q=0', undefined],
    ['BR;Q=0, GZIP', 'gzip']
  ]
  const requests = [
    { what: 'a cached read', method: 'GET' as const, url: `/v1/objects/${A}` },
    { what: 'a bulk answer', method: 'POST' as const, url: '/v1/objects/query', payload: { ids: [A, B] } }
  ]
  for (const r of requests) {
    for (const [header, expected] of cases) {
      const res = await app.inject({ method: r.method, url: r.url, headers: { ...auth, 'accept-encoding': header }, ...(r.payload === undefined ? {} : { payload: r.payload }) })
      t.equal(res.statusCode, 200)
      t.equal(res.headers['content-encoding'], expected, `${r.what}, Accept-Encoding: ${header} → ${expected ?? 'identity'}`)
    }
  }
})

test('HEAD of an answer compressed without an ETag: the headers GET would send, no identity Content-Length', async (t) => {
  const { app } = await buildTestApp(t)
  const key = app.consumers.demoKey as string
  const pages = [
    { what: 'the landing page', url: '/', headers: {} },
    { what: 'compat objects/', url: `/atlas/api/objects/?objects=${A}`, headers: { authorization: `Token ${key}` } }
  ]
  for (const page of pages) {
    for (const encoding of ['gzip', 'br']) {
      const headers = { ...page.headers, 'accept-encoding': encoding }
      const get = await app.inject({ url: page.url, headers })
      const head = await app.inject({ method: 'HEAD', url: page.url, headers })
      t.equal(get.statusCode, 200)
      t.equal(get.headers['content-encoding'], encoding, `${page.what}: GET is ${encoding}`)
      t.equal(head.statusCode, 200)
      t.equal(head.rawPayload.length, 0)
      t.equal(head.headers['content-encoding'], encoding, `${page.what} ${encoding}: HEAD says the encoding GET sends`)
      t.match(head.headers.vary, /accept-encoding/i, 'and that it varies')
      // RFC 9110 §8.6: no Content-Length but the one GET would send (GET's is the encoded length or none).
      t.equal(head.headers['content-length'], get.headers['content-length'], `${page.what} ${encoding}: GET's Content-Length (${String(get.headers['content-length'])})`)
    }
    const plain = await app.inject({ method: 'HEAD', url: page.url, headers: page.headers })
    t.notOk(plain.headers['content-encoding'], `${page.what}: no Accept-Encoding, identity`)
    t.ok(Number(plain.headers['content-length']) > 1024, 'with its identity length')
  }
})

test('an L1 hit sends the encoded bytes kept in the memo, not compressed again; without L1 nothing is kept', async (t) => {
  const { app } = await buildTestApp(t)
  const url = `/v1/objects/${A}`
  const headers = { ...demoAuth(app), 'accept-encoding': 'gzip' }
  const first = await app.inject({ url, headers })
  const gzTag = first.headers.etag as string
  const memoKey = `gzip:${gzTag.replace(/\.gzip"$/, '"')}`
  const derived = app.cache.derived
  t.ok(derived !== undefined, 'L1 is on, so there is a derived memo')
  t.ok(derived?.get(memoKey)?.bytes.equals(first.rawPayload), 'the memo holds the bytes sent')
  // Other valid gzip bytes of the same body (another level): a hit that sends exactly these read the memo.
  const marker = gzipSync(gunzipSync(first.rawPayload), { level: 1 })
  t.notOk(marker.equals(first.rawPayload), 'level 1 output differs from the default level')
  derived?.set(memoKey, { bytes: marker, etag: gzTag })
  const hit = await app.inject({ url, headers })
  t.equal(hit.headers['x-cache'], 'HIT')
  t.ok(hit.rawPayload.equals(marker), 'the hit sent the memo bytes')

  const off = await buildTestApp(t, { config: { CACHE_MAX_BYTES: 0 } })
  t.equal(off.app.cache.derived, undefined, 'CACHE_MAX_BYTES=0: no in-process memo at all')
  const res = await off.app.inject({ url, headers: { ...demoAuth(off.app), 'accept-encoding': 'gzip' } })
  t.equal(res.headers['content-encoding'], 'gzip')
  t.ok(gunzipSync(res.rawPayload).equals(gunzipSync(first.rawPayload)), 'still compressed, every time')
})

test('small bodies and problems are not compressed; POST JSON and the NDJSON stream are', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const problem = await app.inject({ url: `/v1/objects/${U}`, headers: { ...auth, 'accept-encoding': 'gzip, br' } })
  t.equal(problem.statusCode, 404)
  t.match(problem.headers['content-type'], /application\/problem\+json/)
  t.notOk(problem.headers['content-encoding'], 'a small problem goes out as it is')
  t.equal(problem.json().code, 'GW_NOT_FOUND')

  const ids = [A, B, U]
  const json = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...auth, 'content-type': 'application/json', 'accept-encoding': 'gzip' }, payload: { ids } })
  const jsonPlain = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...auth, 'content-type': 'application/json' }, payload: { ids } })
  t.equal(json.headers['content-encoding'], 'gzip')
  t.ok(gunzipSync(json.rawPayload).equals(jsonPlain.rawPayload), 'POST JSON: same bytes once decoded')

  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const ndjson = async (encoding?: string): Promise<{ headers: Headers, raw: Buffer }> => {
    // fetch decodes bodies itself; node:http hands over the bytes as sent.
    const { request } = await import('node:http')
    return await new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/objects/query',
        headers: { ...auth, 'content-type': 'application/json', accept: 'application/x-ndjson', ...(encoding === undefined ? {} : { 'accept-encoding': encoding }) }
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ headers: new Headers(res.headers as Record<string, string>), raw: Buffer.concat(chunks) }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(JSON.stringify({ ids }))
    })
  }
  const plain = await ndjson()
  t.notOk(plain.headers.get('content-encoding'))
  for (const encoding of ['gzip', 'br']) {
    const res = await ndjson(encoding)
    t.equal(res.headers.get('content-encoding'), encoding, `NDJSON streamed with ${encoding}`)
    t.match(res.headers.get('content-type'), /application\/x-ndjson/)
    t.notOk(res.headers.get('content-length'), 'streamed: no length known up front')
    t.ok((decoders[encoding] as (b: Buffer) => Buffer)(res.raw).equals(plain.raw), `${encoding}: the same lines once decoded`)
  }
})
