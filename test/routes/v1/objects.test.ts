import net from 'node:net'
import { once } from 'node:events'
import { test } from 'tap'
import { request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS, sandboxPost } from '../../helper.js'
import { parseLossless } from '../../../src/lib/json.js'
import { bigIntSpans, splitArray } from '../../../src/lib/json-scan.js'
import { decodeEntry } from '../../../src/cache/entry.js'
import { objectKey } from '../../../src/cache/keys.js'
import { bearer, consumersFile, makeConsumer, type TestConsumer } from '../../consumer-helper.js'
import { clearOfMidnight, waitFor } from '../../fixtures/wait.js'
import { testKeyPrefix } from '../../fixtures/redis-keys.js'
import { generateKey, hashKey } from '../../../src/consumers/keys.js'

const { A, B, U } = FIXTURE_IDS

/** An answer's body as far as it arrived, and how it ended: 'none', or the error that cut it. */
async function readCut (body: AsyncIterable<unknown>): Promise<{ text: string, failure: string }> {
  const bytes: Buffer[] = []
  let failure = 'none'
  try {
    for await (const piece of body) bytes.push(piece as Buffer)
  } catch (err) {
    failure = (err as { code?: string }).code ?? (err as Error).name
  }
  return { text: Buffer.concat(bytes).toString('utf8'), failure }
}

test('GET /v1/objects/:id returns the full record with ids as strings, digit-exact', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const res = await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const body = res.json()
  t.equal(body.object.id, A, 'object.id is the exact digit string')
  t.same(Object.keys(body).sort(), ['external_crossmatches', 'fp', 'lc', 'lcnondets', 'object', 'sherlock_classifications', 'sherlock_crossmatches', 'tns_crossmatches'])
  for (const row of body.lc) t.equal(row.id, A, 'lc[].id is the object id, as a string')
  // The same record straight from the sandbox, parsed losslessly, has the same digits as bigint.
  const direct = await sandboxPost(sandbox, 'objects', { objects: A })
  const upstream = parseLossless(direct.text) as Array<{ object: { id: bigint } }>
  t.equal(String(upstream[0]?.object.id), body.object.id)
  t.notOk(/"id":\d{19}/.test(res.body), 'no 19-digit id is a bare JSON number')
})

test('a record is stored with the offsets of its big integers, and an L2 hit (L1 off) renders from them the bytes of the miss', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL' : false }, async (t) => {
  const { app } = await buildTestApp(t, { config: { CACHE_MAX_BYTES: 0 } })
  const miss = await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })
  const hit = await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })
  t.equal(miss.headers['x-cache'], 'MISS')
  t.equal(hit.headers['x-cache'], 'HIT')
  t.equal(hit.body, miss.body, 'the same bytes')
  t.equal(hit.headers.etag, miss.headers.etag)
  t.notOk(/"id":\d{19}/.test(hit.body), 'no 19-digit id is a bare JSON number')
  const raw = await app.redis?.getBuffer(`${app.config.REDIS_KEY_PREFIX}{c}:k:${objectKey(A)}`)
  const entry = raw === null || raw === undefined ? undefined : decodeEntry(raw)
  t.ok(entry !== undefined, 'the record is in Redis')
  t.ok((entry?.bigInts?.length ?? 0) > 0, 'with offsets')
  t.same(entry?.bigInts, entry === undefined ? [] : bigIntSpans(entry.body), 'the offsets a scan of its bytes finds')
})

test('a record revalidated with its ETag is a 304 with the 200\'s cache headers; mjd_min and other tags still get the body', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const full = await app.inject({ url: `/v1/objects/${A}`, headers: auth })
  const etag = String(full.headers.etag)
  for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const res = await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, 'if-none-match': ifNoneMatch } })
    t.equal(res.statusCode, 304, ifNoneMatch)
    t.equal(res.body, '')
    t.equal(res.headers.etag, etag)
    t.equal(res.headers['x-cache'], 'HIT')
    t.equal(res.headers['cache-control'], full.headers['cache-control'])
    t.match(res.headers.vary, /accept-encoding/i)
  }
  const other = await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, 'if-none-match': '"other"' } })
  t.equal(other.statusCode, 200)
  t.equal(other.body, full.body)
  const cut = await app.inject({ url: `/v1/objects/${A}?mjd_min=60000`, headers: { ...auth, 'if-none-match': etag } })
  t.equal(cut.statusCode, 200, 'another representation: its own ETag')
  t.not(cut.headers.etag, etag)
  const gzip = await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, 'accept-encoding': 'gzip' } })
  const encoded = await app.inject({ url: `/v1/objects/${A}`, headers: { ...auth, 'accept-encoding': 'gzip', 'if-none-match': String(gzip.headers.etag) } })
  t.equal(encoded.statusCode, 304, 'the gzip representation revalidates with its own tag')
})

test('unknown id → 404 GW_NOT_FOUND; a malformed id → 400 before any upstream call', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const missing = await app.inject({ url: `/v1/objects/${U}`, headers: demoAuth(app) })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().code, 'GW_NOT_FOUND')
  sandbox.resetCalls()
  for (const bad of ['ATLAS18qqn', '116160021122160490', '11616002112216049000', '1161600211221604900,']) {
    const res = await app.inject({ url: `/v1/objects/${encodeURIComponent(bad)}`, headers: demoAuth(app) })
    t.equal(res.statusCode, 400, `${bad} is rejected`)
    t.equal(res.json().code, 'GW_VALIDATION')
  }
  t.equal(sandbox.totalCalls(), 0, 'nothing reached the upstream')
})

test('mjd_min applied locally equals the upstream mjd filter, for many thresholds', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const full = (await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })).json()
  const mjds: number[] = [...full.lc.map((r: { mjd: number }) => r.mjd), ...full.fp.map((r: { mjd_obs: number }) => r.mjd_obs)]
  t.ok(mjds.length > 0, 'the fixture has photometry')
  const thresholds = [0, ...mjds.slice(0, 6), ...mjds.slice(0, 6).map((m) => m + 0.001), Math.max(...mjds) + 1]
  for (const mjd of thresholds) {
    const ours = (await app.inject({ url: `/v1/objects/${A}?mjd_min=${mjd}`, headers: demoAuth(app) })).json()
    const direct = await sandboxPost(sandbox, 'objects', { objects: A, mjd: String(mjd) })
    const theirs = JSON.parse(direct.text.replace(/(?<=[:[,])(\d{16,})(?=[,\]}])/g, '"$1"'))[0]
    t.same(ours.lc, theirs.lc, `lc at mjd_min=${mjd}`)
    t.same(ours.lcnondets, theirs.lcnondets, `lcnondets at mjd_min=${mjd}`)
    t.same(ours.fp, theirs.fp, `fp at mjd_min=${mjd}`)
  }
})

test('GET /v1/objects?ids= keeps request order, reports missing, and refuses more than 100 ids', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ url: `/v1/objects?ids=${B},${U},${A},${B}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(body.objects.map((o: { object: { id: string } }) => o.object.id), [B, A], 'found records in request order, duplicates once')
  t.same(body.missing, [U])
  const many = Array.from({ length: 101 }, (_, i) => String(1000000000000000000n + BigInt(i))).join(',')
  const tooMany = await app.inject({ url: `/v1/objects?ids=${many}`, headers: demoAuth(app) })
  t.equal(tooMany.statusCode, 400)
})

test('POST /v1/objects/query: JSON batch, split into upstream calls of UPSTREAM_MAX_IDS_PER_CALL', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: 10 } })
  const ids = sandbox.ids().slice(0, 25).map(String)
  sandbox.resetCalls()
  const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: demoAuth(app), payload: { ids: [...ids, U] } })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(body.objects.map((o: { object: { id: string } }) => o.object.id), ids)
  t.same(body.missing, [U])
  t.equal(sandbox.calls.get('objects'), 3, '26 ids at 10 per call → 3 upstream calls')
  const again = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: demoAuth(app), payload: { ids } })
  t.equal(again.statusCode, 200)
  t.equal(sandbox.calls.get('objects'), 3, 'a repeat is served from the cache')
  t.equal(again.headers['x-cache'], 'HIT')
})

test('POST /v1/objects/query: a large JSON answer streams with an exact Content-Length, plain and gzip', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const ids = sandbox.ids().slice(0, 40).map(String)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const singles: string[] = []
  for (const id of ids) singles.push((await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })).body)
  const expected = `{"objects":[${singles.join(',')}],"missing":["${U}"]}`
  t.ok(Buffer.byteLength(expected) > 64 * 1024, `the answer (${Buffer.byteLength(expected)} bytes) is above the size sent as one Buffer`)
  const post = async (headers: Record<string, string>) => await fetch(`${origin}/v1/objects/query`, {
    method: 'POST',
    headers: { ...demoAuth(app), 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ ids: [...ids, U] })
  })
  const plain = await post({ 'accept-encoding': 'identity' })
  t.equal(plain.status, 200)
  t.equal(plain.headers.get('content-length'), String(Buffer.byteLength(expected)), 'Content-Length is the body\'s length')
  t.equal(await plain.text(), expected, 'the same bytes as the records read one by one')
  const gzipped = await post({ 'accept-encoding': 'gzip' })
  t.equal(gzipped.headers.get('x-cache'), 'HIT', 'the unknown id is cached as missing too')
  t.equal(gzipped.headers.get('content-encoding'), 'gzip')
  t.equal(gzipped.headers.get('content-length'), null, 'no identity length on a compressed stream')
  t.equal(await gzipped.text(), expected, 'gzip decodes to the same bytes')
})

// A JSON answer of several chunks of UPSTREAM_MAX_IDS_PER_CALL ids streams them one by one, as NDJSON
// does: until 2026-12-02 it read and rendered every id before its first byte and held them all until
// sent (10,000 cached ids: a 119 MB body, the replica at 408 MiB; three at once, 928 MiB).
test('POST /v1/objects/query: a JSON answer of several chunks streams chunk by chunk, with the bytes of one-chunk answers, reading no further ahead than a chunk', async (t) => {
  const chunk = 50
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: chunk, PREFETCH_ENABLED: false }, sandbox: { objects: 300 } })
  const known = sandbox.ids().slice(0, 300).map(String)
  // Unknown ids in the first, a middle and the last chunk: `missing` is gathered as the answer goes.
  const unknown = [0, 1, 2].map((i) => String(1000000000000000000n + BigInt(i)))
  const ids = [...known.slice(0, 10), unknown[0], ...known.slice(10, 150), unknown[1], ...known.slice(150), unknown[2]] as string[]
  sandbox.resetCalls()
  const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: demoAuth(app), payload: { ids }, payloadAsStream: true })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  t.equal(res.headers['content-length'], undefined, 'no Content-Length: the answer is streamed')
  t.equal(res.headers['x-cache'], 'MISS', 'the cache headers of the first chunk\'s read')
  // Each upstream call reads one chunk of ids (cold, no packing): the ids read minus the records the
  // client has taken are what the gateway holds at most (a slow client holds the stream back).
  let text = ''
  let lead = 0
  for await (const piece of res.stream()) {
    text += (piece as Buffer).toString('utf8')
    const taken = text.split('{"object":{"id":"').length - 1
    lead = Math.max(lead, (sandbox.calls.get('objects') ?? 0) * chunk - taken)
  }
  t.comment(`ids read ahead of what the client had taken: at most ${lead}`)
  t.ok(lead <= chunk + 20, `the gateway read at most one chunk (${chunk} ids, and the few records in the stream's buffers) ahead of the client (${lead})`)
  t.equal(sandbox.calls.get('objects'), 7, '303 ids at 50 per call')
  // The same answer from one-chunk requests (GET ?ids= of 50, today's one-Buffer path), spliced.
  const objects: string[] = []
  const missing: string[] = []
  for (let i = 0; i < ids.length; i += chunk) {
    const body = (await app.inject({ url: `/v1/objects?ids=${ids.slice(i, i + chunk).join(',')}`, headers: demoAuth(app) })).body
    const tail = body.lastIndexOf('],"missing":[')
    if (tail > '{"objects":['.length) objects.push(body.slice('{"objects":['.length, tail))
    if (body.length - 2 > tail + '],"missing":['.length) missing.push(body.slice(tail + '],"missing":['.length, -2))
  }
  t.equal(text, `{"objects":[${objects.join(',')}],"missing":[${missing.join(',')}]}`, 'byte for byte what the one-chunk answers say')
  const parsed = JSON.parse(text)
  t.equal(parsed.objects.length, 300)
  t.same(parsed.missing, unknown, 'the unknown ids, in request order, at the end')
})

test('POST /v1/objects/query: an upstream failure after a streamed JSON answer started aborts it (an incomplete transfer, never a document that parses), logged at warn', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const { app, sandbox, logs } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [bot]), UPSTREAM_MAX_IDS_PER_CALL: 50, UPSTREAM_BATCH_WINDOW_MS: 0, UPSTREAM_RETRIES: 0, PREFETCH_ENABLED: false, LOG_LEVEL: 'info' },
    sandbox: { objects: 200 }
  })
  const ids = sandbox.ids().slice(0, 200).map(String)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  // The first chunk's call is answered, the second's fails.
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1, times: 1 })
  sandbox.inject({ endpoint: 'objects', kind: 'html500', times: 10 })
  const res = await request(`${base}/v1/objects/query`, {
    method: 'POST',
    headers: { ...bearer(bot.key), 'content-type': 'application/json' },
    body: JSON.stringify({ ids })
  })
  t.equal(res.statusCode, 200, 'the first chunk was read: the answer had started')
  const { text, failure } = await readCut(res.body)
  t.comment(`${text.length} bytes, then: ${failure}`)
  t.not(failure, 'none', 'the transfer is cut, not ended')
  t.ok(text.startsWith('{"objects":[{"object":'), 'the first chunk\'s records arrived')
  t.throws(() => JSON.parse(text), 'what arrived is no complete document')
  await waitFor('the warning', () => logs().includes('json stream aborted'), { timeoutMs: 5000, intervalMs: 20 })
  const warning = logs().split('\n').find((l) => l.includes('json stream aborted')) ?? ''
  t.match(JSON.parse(warning), { level: 40, err: { code: 'GW_UPSTREAM_ERROR' } })
  await waitFor('the request\'s end', () => logs().includes('"route":"/v1/objects/query"'), { timeoutMs: 5000, intervalMs: 20 })
  // Unlike an NDJSON stream's error line (its lines before it are records the client keeps), nothing
  // usable was delivered: given back as after a 5xx, though the status sent was 200.
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(bot.key) })).json().usage.units_today, 0, 'its units are given back')
})

// An NDJSON stream that fails after some chunks ends with its error line: the records before it are
// delivered, the ids from the failed chunk on are not. Until 2026-12-02 it kept the units of every id
// (200 of 200 for 50 ids delivered; the usage report said 200 too).
test('POST /v1/objects/query: an NDJSON stream ended by its error line keeps the units of the ids it delivered and gives back the rest', async (t) => {
  await clearOfMidnight()
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const warm = makeConsumer('warm', { scopes: ['read'] })
  const ops = makeConsumer('ops', { scopes: ['admin'] })
  const { app, sandbox, logs } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [bot, warm, ops]), UPSTREAM_MAX_IDS_PER_CALL: 50, UPSTREAM_BATCH_WINDOW_MS: 0, UPSTREAM_RETRIES: 0, PREFETCH_ENABLED: false },
    sandbox: { objects: 300 }
  })
  const known = sandbox.ids().slice(0, 199).map(String)
  // 200 distinct ids (units are charged per distinct id): the first chunk holds an id the upstream does
  // not know (a missing line is delivered too), the third ten ids another consumer's read cached (not
  // delivered either: their chunk comes after the failure). Three ids are repeated later in the body.
  const distinct = [...known.slice(0, 10), U, ...known.slice(10)]
  const body = [...distinct, distinct[3], distinct[60], distinct[120]] as string[]
  const cached = distinct.slice(100, 110)
  t.equal((await app.inject({ url: `/v1/objects?ids=${cached.join(',')}`, headers: bearer(warm.key) })).statusCode, 200)
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  // The first chunk's call is answered, the second's fails (the N-th objects/ call: 2).
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1, times: 1 })
  sandbox.inject({ endpoint: 'objects', kind: 'html500', times: 10 })
  const res = await request(`${base}/v1/objects/query`, {
    method: 'POST',
    headers: { ...bearer(bot.key), 'content-type': 'application/json', accept: 'application/x-ndjson' },
    body: JSON.stringify({ ids: body })
  })
  t.equal(res.statusCode, 200)
  const lines = (await res.body.text()).trim().split('\n').map((l) => JSON.parse(l) as { id?: string, error?: unknown })
  const delivered = lines.filter((l) => l.error === undefined).map((l) => l.id)
  t.comment(`${delivered.length} lines delivered, then ${JSON.stringify(lines.at(-1))}`)
  t.same(delivered, distinct.slice(0, 50), 'the first chunk\'s lines, the unknown id\'s included')
  t.match(lines.at(-1), { error: { code: 'GW_UPSTREAM_ERROR' } }, 'then the error line')
  t.equal(sandbox.calls.get('objects'), 2, 'the second call failed')
  // Its access line is written after the units are given back (auth/plugin.ts: the first onResponse hook).
  await waitFor('the request\'s end', () => logs().includes('"route":"/v1/objects/query"'), { timeoutMs: 5000, intervalMs: 20 })
  const used = (await app.inject({ url: '/v1/me', headers: bearer(bot.key) })).json().usage.units_today
  t.comment(`units today: ${used} of 200 charged`)
  t.equal(used, 50, 'the 50 distinct ids delivered; the 150 after them (the 10 cached ones too) given back')
  const report = await app.inject({ url: `/v1/admin/usage?month=${new Date().toISOString().slice(0, 7)}&consumer=bot`, headers: bearer(ops.key) })
  t.match(report.json().rows, [{ consumer: 'bot', units: 50 }], 'usage counts the units kept')
})

// A record the v1 rendering cannot read (here a Python float written as NaN, which JSON has no word for:
// with mjd_min the record is parsed to filter its rows) threw while its chunk was written. Until
// 2026-12-02 the NDJSON stream was destroyed after the lines before it and a partial `{"id":…,"object":`
// with no error line, and all 100 units were kept (60 lines delivered); a streamed JSON answer was cut and
// kept its 100 units too. Now they end as the other failures after the first bytes do.
test('POST /v1/objects/query: a record whose rendering fails mid-stream ends NDJSON with its error line and gives back the ids not delivered; streamed JSON is aborted and given back whole', async (t) => {
  await clearOfMidnight()
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const bot2 = makeConsumer('bot2', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const { app, sandbox, logs } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [bot, bot2]), UPSTREAM_MAX_IDS_PER_CALL: 50, UPSTREAM_BATCH_WINDOW_MS: 0, UPSTREAM_RETRIES: 0, PREFETCH_ENABLED: false, LOG_LEVEL: 'info' },
    sandbox: { objects: 200 }
  })
  const ids = sandbox.ids().slice(0, 100).map(String)
  // The second chunk's reply as the sandbox writes it, its 11th record holding a NaN.
  const reply = (await sandboxPost(sandbox, 'objects', { objects: ids.slice(50).join(',') })).text
  const records = splitArray(reply)
  const bad = (records[10] as string).replace(/"mag":[-0-9.e+]+/, '"mag":NaN')
  t.not(bad, records[10], 'a magnitude written as NaN')
  records[10] = bad
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1, times: 1 })
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: `[${records.join(', ')}]`, times: 1 })
  const post = async (key: string, accept: string): Promise<{ status: number, text: string, failure: string }> => {
    const res = await request(`${base}/v1/objects/query`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json', accept },
      body: JSON.stringify({ ids, mjd_min: 0 })
    })
    return { status: res.statusCode, ...await readCut(res.body) }
  }
  const units = async (key: string): Promise<number> => (await app.inject({ url: '/v1/me', headers: bearer(key) })).json().usage.units_today
  const ended = (): number => logs().split('\n').filter((l) => l.includes('"route":"/v1/objects/query"')).length

  const ndjson = await post(bot.key, 'application/x-ndjson')
  t.equal(ndjson.status, 200)
  t.equal(sandbox.calls.get('objects'), 2, 'both chunks were read')
  t.comment(`NDJSON: ${ndjson.text.length} bytes, then: ${ndjson.failure}`)
  t.equal(ndjson.failure, 'none', 'the stream ends, not cut')
  t.ok(ndjson.text.endsWith('\n'), 'on a whole line')
  type Line = { id?: string, error?: unknown, unparsable?: string }
  const lines = ndjson.text.trim().split('\n').map((l): Line => { try { return JSON.parse(l) as Line } catch { return { unparsable: l.slice(0, 60) } } })
  const delivered = lines.filter((l) => 'id' in l).map((l) => l.id)
  t.same(delivered, ids.slice(0, 60), 'the lines before the record that failed')
  t.match(lines.at(-1), { error: { code: 'GW_INTERNAL', status: 500 } }, 'then the error line')
  t.same(lines.filter((l) => 'unparsable' in l), [], 'no partial line')
  t.equal(lines.length, 61, 'and nothing else')
  await waitFor('the request\'s end', () => ended() === 1, { timeoutMs: 5000, intervalMs: 20 })
  t.equal(await units(bot.key), 60, 'the 60 ids delivered; the 40 from the failed record on given back')
  t.ok(logs().includes('ndjson stream ended early'), 'logged at warn like the other failures')

  // The record is cached as the upstream sent it: a JSON answer of two chunks fails on it too.
  const json = await post(bot2.key, 'application/json')
  t.equal(json.status, 200)
  t.comment(`JSON: ${json.text.length} bytes, then: ${json.failure}`)
  t.not(json.failure, 'none', 'the transfer is cut, not ended')
  t.throws(() => JSON.parse(json.text), 'what arrived is no complete document')
  await waitFor('the request\'s end', () => ended() === 2, { timeoutMs: 5000, intervalMs: 20 })
  t.comment(`JSON units: ${await units(bot2.key)}`)
  t.equal(await units(bot2.key), 0, 'nothing usable delivered: every unit given back')
  t.equal(sandbox.calls.get('objects'), 2, 'from the cache')
})

// The same failure on the answer's first record: nothing has reached the socket, so the status can still
// say it. Until 2026-12-02 a streamed JSON answer counted its opening bracket as written: the client got 0
// bytes and the connection closed with no status line, where NDJSON got a clean 500.
test('POST /v1/objects/query: a record whose rendering fails first is a 500 problem+json, JSON and NDJSON alike; failing second it is not', async (t) => {
  await clearOfMidnight()
  const consumers = ['json1', 'ndjson1', 'json2', 'ndjson2'].map((name) => makeConsumer(name, { scopes: ['read'], daily_objects: 100000, max_batch: 10000 }))
  const [json1, ndjson1, json2, ndjson2] = consumers as [TestConsumer, TestConsumer, TestConsumer, TestConsumer]
  const { app, sandbox, logs } = await buildTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, consumers), UPSTREAM_MAX_IDS_PER_CALL: 50, UPSTREAM_BATCH_WINDOW_MS: 0, UPSTREAM_RETRIES: 0, PREFETCH_ENABLED: false, LOG_LEVEL: 'info' },
    sandbox: { objects: 200 }
  })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  // 100 ids (two chunks, so JSON is streamed too), the first chunk's record `at` holding a NaN.
  const withBadRecord = async (from: number, at: number): Promise<string[]> => {
    const ids = sandbox.ids().slice(from, from + 100).map(String)
    const records = splitArray((await sandboxPost(sandbox, 'objects', { objects: ids.slice(0, 50).join(',') })).text)
    const bad = (records[at] as string).replace(/"mag":[-0-9.e+]+/, '"mag":NaN')
    t.not(bad, records[at], 'a magnitude written as NaN')
    records[at] = bad
    sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: `[${records.join(', ')}]`, times: 1 })
    return ids
  }
  const post = async (key: string, ids: string[], accept: string): Promise<{ status: number, type: string, text: string, failure: string }> => {
    const bytes: Buffer[] = []
    let status = 0
    let type = ''
    let failure = 'none'
    try {
      const res = await request(`${base}/v1/objects/query`, {
        method: 'POST',
        headers: { ...bearer(key), 'content-type': 'application/json', accept },
        body: JSON.stringify({ ids, mjd_min: 0 })
      })
      status = res.statusCode
      type = String(res.headers['content-type'])
      for await (const piece of res.body) bytes.push(piece as Buffer)
    } catch (err) {
      failure = (err as { code?: string }).code ?? (err as Error).name
    }
    return { status, type, text: Buffer.concat(bytes).toString('utf8'), failure }
  }
  const units = async (key: string): Promise<number> => (await app.inject({ url: '/v1/me', headers: bearer(key) })).json().usage.units_today
  let requests = 0
  const ended = async (): Promise<void> => {
    requests++
    await waitFor('the request\'s end', () => logs().split('\n').filter((l) => l.includes('"route":"/v1/objects/query"')).length === requests, { timeoutMs: 5000, intervalMs: 20 })
  }

  const first = await withBadRecord(0, 0)
  // The record is cached as the upstream sent it: the NDJSON answer after it fails on it too.
  for (const [consumer, accept] of [[json1, 'application/json'], [ndjson1, 'application/x-ndjson']] as const) {
    const res = await post(consumer.key, first, accept)
    t.comment(`${accept}, first record fails: status ${res.status}, ${res.text.length} bytes, then: ${res.failure}`)
    t.equal(res.failure, 'none', `${accept}: an answer, not a closed connection`)
    t.equal(res.status, 500, `${accept}: the status says it`)
    t.match(res.type, /^application\/problem\+json/)
    t.match(JSON.parse(res.text || '{}'), { code: 'GW_INTERNAL', status: 500 })
    await ended()
    t.equal(await units(consumer.key), 0, `${accept}: every unit given back`)
  }

  const second = await withBadRecord(100, 1)
  const json = await post(json2.key, second, 'application/json')
  t.comment(`application/json, second record fails: status ${json.status}, ${json.text.length} bytes, then: ${json.failure}`)
  t.not(json.failure, 'none', 'JSON, second record fails: its answer had begun, the transfer is cut')
  await ended()
  t.equal(await units(json2.key), 0, 'nothing usable delivered: every unit given back')
  const ndjson = await post(ndjson2.key, second, 'application/x-ndjson')
  t.equal(ndjson.status, 200)
  const lines = ndjson.text.trim().split('\n').map((l) => JSON.parse(l) as { id?: string, error?: unknown })
  t.same(lines.map((l) => l.id), [second[0], undefined], 'NDJSON: the first record\'s line, then the error line')
  t.match(lines.at(-1), { error: { code: 'GW_INTERNAL' } })
  await ended()
  t.equal(await units(ndjson2.key), 1, 'the one id delivered')
})

test('POST /v1/objects/query: bad bodies are 400, batches above max_batch are 413', async (t) => {
  const small = makeConsumer('small', { scopes: ['read'], max_batch: 5 })
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [small]) } })
  const auth = { authorization: `Bearer ${small.key}` }
  t.equal((await app.inject({ method: 'POST', url: '/v1/objects/query', headers: auth, payload: { ids: ['x'] } })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/v1/objects/query', headers: auth, payload: { ids: [] } })).statusCode, 400)
  const broken = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"ids":' })
  t.equal(broken.statusCode, 400)
  t.equal(broken.json().code, 'GW_VALIDATION')
  const untyped = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: auth, payload: 'ids=1' })
  t.equal(untyped.statusCode, 415, 'a body without a JSON content type is refused')
  t.match(untyped.headers['content-type'], /problem\+json/)
  const ids = Array.from({ length: 6 }, (_, i) => String(1000000000000000000n + BigInt(i)))
  const big = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: auth, payload: { ids } })
  t.equal(big.statusCode, 413)
  t.equal(big.json().code, 'GW_PAYLOAD_TOO_LARGE')
})

test('NDJSON: 5,000 ids stream in chunks, one upstream call per chunk, lines digit-exact', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: 1000 }, sandbox: { objects: 5000 } })
  const known = sandbox.ids().map(String)
  const ids = known.slice(0, 4999).concat([U])
  sandbox.resetCalls()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  const res = await fetch(`http://127.0.0.1:${address.port}/v1/objects/query`, {
    method: 'POST',
    headers: { ...demoAuth(app), 'content-type': 'application/json', accept: 'application/x-ndjson' },
    body: JSON.stringify({ ids })
  })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /application\/x-ndjson/)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  let text = ''
  let callsAtFirstChunk = -1
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    if (callsAtFirstChunk < 0) callsAtFirstChunk = sandbox.calls.get('objects') ?? 0
    text += Buffer.from(value).toString('utf8')
  }
  const lines = text.trim().split('\n').map((l) => JSON.parse(l))
  t.equal(lines.length, ids.length, 'one line per id')
  t.same(lines.map((l) => l.id), ids, 'in request order')
  t.equal(lines.at(-1).missing, true)
  t.equal(lines[0].object.object.id, ids[0])
  t.equal(sandbox.calls.get('objects'), 5, '5,000 ids at 1,000 per call → 5 upstream calls')
  t.ok(callsAtFirstChunk < 5, `the first bytes arrived before the last upstream call was made (calls then: ${callsAtFirstChunk})`)
})

test('NDJSON: an upstream failure before the first line is answered with its status and Retry-After, not a 200', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { PREFETCH_ENABLED: false } })
  const ids = sandbox.ids().slice(300, 303).map(String)
  sandbox.inject({ endpoint: 'objects', kind: 'throttle', retryAfterS: 120, times: 10 })
  const headers = { ...demoAuth(app), 'content-type': 'application/json' }
  const asJson = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...headers, accept: 'application/json' }, payload: { ids } })
  const asNdjson = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...headers, accept: 'application/x-ndjson' }, payload: { ids } })
  t.ok(asJson.statusCode >= 500, `JSON: ${asJson.statusCode}`)
  t.equal(asNdjson.statusCode, asJson.statusCode, 'NDJSON: the same status')
  t.match(asNdjson.headers['content-type'], /^application\/problem\+json/)
  t.equal(asNdjson.headers['retry-after'], asJson.headers['retry-after'])
  t.equal(asNdjson.json().code, asJson.json().code)
})

test('the bulk query streams NDJSON only when Accept asks for it: q-values count, case does not', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const ids = sandbox.ids().slice(0, 2).map(String)
  const typeFor = async (accept: string) => (await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...demoAuth(app), accept }, payload: { ids } })).headers['content-type']
  t.match(await typeFor('application/x-ndjson'), /^application\/x-ndjson/)
  t.match(await typeFor('Application/X-NDJSON'), /^application\/x-ndjson/, 'media types are case-insensitive')
  t.match(await typeFor('application/x-ndjson;q=0, application/json'), /^application\/json/, 'q=0 refuses NDJSON')
  t.match(await typeFor('application/json, application/x-ndjson;q=0.5'), /^application\/json/, 'JSON preferred')
  t.match(await typeFor('application/json;q=0.5, application/x-ndjson'), /^application\/x-ndjson/, 'NDJSON preferred')
  t.match(await typeFor('*/*'), /^application\/json/, 'JSON by default')
})

// Bulk streams (NDJSON, or JSON of more than one chunk) each hold a chunk of records: their number is
// bounded per consumer and per replica. Until 2026-12-02 nothing bounded it (8 unread NDJSON streams of
// 3,000 cached ids kept 374 MiB of Buffers).
const STREAM_LIMITS = { UPSTREAM_MAX_IDS_PER_CALL: 50, PREFETCH_ENABLED: false, BULK_MAX_STREAMS_PER_CONSUMER: 1, BULK_MAX_STREAMS: 2 }

async function bulkStreamsOpen (app: FastifyInstance): Promise<number> {
  return (await app.metrics.bulkStreams.get()).values[0]?.value ?? 0
}

test('bulk streams: one consumer\'s beyond BULK_MAX_STREAMS_PER_CONSUMER get 429, the replica\'s beyond BULK_MAX_STREAMS 503, both with Retry-After and before any unit is charged', async (t) => {
  const [a, b, c] = ['a', 'b', 'c'].map((id) => makeConsumer(id, { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })) as [TestConsumer, TestConsumer, TestConsumer]
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [a, b, c]), ...STREAM_LIMITS }, sandbox: { objects: 200 } })
  const ids = sandbox.ids().slice(0, 200).map(String)
  // An answer taken as a stream the test does not read: it stays open (held back by its reader).
  const open = async (key: string, accept = 'application/json', body = ids) => await app.inject({
    method: 'POST', url: '/v1/objects/query', headers: { ...bearer(key), accept }, payload: { ids: body }, payloadAsStream: true
  })
  const units = async (key: string): Promise<number> => (await app.inject({ url: '/v1/me', headers: bearer(key) })).json().usage.units_today
  const problemOf = async (res: Awaited<ReturnType<typeof open>>): Promise<unknown> => JSON.parse((await res.stream().toArray()).join(''))
  const first = await open(a.key, 'application/x-ndjson')
  t.equal(first.statusCode, 200, 'a\'s first stream')
  const refused = await open(a.key)
  t.equal(refused.statusCode, 429, 'a\'s second stream (JSON of four chunks)')
  t.match(await problemOf(refused), { code: 'GW_RATE_LIMITED', status: 429 })
  t.equal(refused.headers['retry-after'], '1')
  t.equal(await units(a.key), 200, 'the refused stream was not charged')
  const small = await open(a.key, 'application/json', ids.slice(0, 50))
  t.equal(small.statusCode, 200, 'a JSON answer of one chunk is no stream: not bounded')
  await small.stream().toArray()
  const second = await open(b.key)
  t.equal(second.statusCode, 200, 'b\'s stream, the replica\'s second')
  const full = await open(c.key, 'application/x-ndjson')
  t.equal(full.statusCode, 503, 'c\'s stream: the replica is at BULK_MAX_STREAMS')
  t.match(await problemOf(full), { code: 'GW_UNAVAILABLE', status: 503 })
  t.equal(full.headers['retry-after'], '1')
  t.equal(await units(c.key), 0, 'not charged')
  t.equal(await bulkStreamsOpen(app), 2, 'gateway_bulk_streams')
  // A stream read to its end gives its slot back.
  await first.stream().toArray()
  await waitFor('a\'s slot back', async () => await bulkStreamsOpen(app) === 1, { timeoutMs: 5000, intervalMs: 10 })
  const again = await open(c.key, 'application/x-ndjson')
  t.equal(again.statusCode, 200, 'c is served once a stream has ended')
  await again.stream().toArray()
  await second.stream().toArray()
  await waitFor('every slot back', async () => await bulkStreamsOpen(app) === 0, { timeoutMs: 5000, intervalMs: 10 })
})

test('bulk streams: the bound is a consumer\'s over all its keys, and its 429 says so', async (t) => {
  const a = makeConsumer('a', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const other = generateKey()
  a.entry.key_sha256 = [...a.entry.key_sha256, hashKey(other)]
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [a]), ...STREAM_LIMITS }, sandbox: { objects: 200 } })
  const ids = sandbox.ids().slice(0, 200).map(String)
  const open = async (key: string) => await app.inject({
    method: 'POST', url: '/v1/objects/query', headers: { ...bearer(key), accept: 'application/x-ndjson' }, payload: { ids }, payloadAsStream: true
  })
  const first = await open(a.key)
  t.equal(first.statusCode, 200)
  const refused = await open(other)
  t.equal(refused.statusCode, 429, 'the other key holds no stream, its consumer does')
  // Before: "This key may run 1 bulk streams at once", to a key that held none.
  t.match(JSON.parse((await refused.stream().toArray()).join('')), { code: 'GW_RATE_LIMITED', detail: /^This consumer may run 1 bulk stream/ })
  await first.stream().toArray()
})

test('bulk streams: a slot comes back when its stream fails after the first bytes or its client goes away, so aborted streams leak none', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [bot]), UPSTREAM_BATCH_WINDOW_MS: 0, UPSTREAM_RETRIES: 0, ...STREAM_LIMITS }, sandbox: { objects: 500 } })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  // Each stream reads 100 uncached ids, two chunks: the first chunk's call is answered, the second's
  // `fault` (html500: it fails after the first bytes; hang: it never answers).
  let next = 0
  async function stream (accept: string, fault: 'html500' | 'hang', signal?: AbortSignal) {
    const ids = sandbox.ids().slice(next, next + 100).map(String)
    next += 100
    sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1, times: 1 })
    sandbox.inject({ endpoint: 'objects', kind: fault, times: 1 })
    return await request(`${base}/v1/objects/query`, {
      method: 'POST',
      headers: { ...bearer(bot.key), 'content-type': 'application/json', accept },
      body: JSON.stringify({ ids }),
      ...(signal === undefined ? {} : { signal })
    })
  }
  for (const accept of ['application/x-ndjson', 'application/json']) {
    const res = await stream(accept, 'html500')
    t.equal(res.statusCode, 200, `${accept}: started`)
    // NDJSON ends with its error line; JSON is cut.
    await res.body.text().catch(() => '')
    await waitFor(`${accept}: the slot back after the failure`, async () => await bulkStreamsOpen(app) === 0, { timeoutMs: 5000, intervalMs: 10 })
  }
  // With one stream allowed to the key, each of these is admitted only if the one before gave its slot back.
  for (let i = 1; i <= 3; i++) {
    const ac = new AbortController()
    const res = await stream('application/x-ndjson', 'hang', ac.signal)
    t.equal(res.statusCode, 200, `stream ${i} admitted`)
    await res.body[Symbol.asyncIterator]().next()
    t.equal(await bulkStreamsOpen(app), 1, `stream ${i} holds its slot while it waits for its second chunk`)
    ac.abort()
    await waitFor(`stream ${i}: the slot back once its client left`, async () => await bulkStreamsOpen(app) === 0, { timeoutMs: 5000, intervalMs: 10 })
  }
})

test('bulk streams: a stream pipelined behind a slow request on a connection that goes away gives its slot back', async (t) => {
  const bot = makeConsumer('bot', { scopes: ['read'], daily_objects: 100000, max_batch: 10000 })
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [bot]), UPSTREAM_BATCH_WINDOW_MS: 0, ...STREAM_LIMITS }, sandbox: { objects: 200 } })
  const address = new URL(await app.listen({ port: 0, host: '127.0.0.1' }))
  const ids = sandbox.ids().slice(0, 200).map(String)
  // The GET's upstream call is held: the NDJSON answer behind it waits its turn on the connection. Node
  // never emits 'close' for a response still queued when its socket dies.
  sandbox.inject({ endpoint: 'objects', kind: 'delay', delayMs: 1500, times: 1 })
  const body = JSON.stringify({ ids: ids.slice(1, 11) })
  const socket = net.connect(Number(address.port), address.hostname)
  socket.on('error', () => {})
  await once(socket, 'connect')
  socket.write(`GET /v1/objects/${ids[0] as string} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${bot.key}\r\n\r\n` +
    `POST /v1/objects/query HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${bot.key}\r\naccept: application/x-ndjson\r\n` +
    `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  await waitFor('the pipelined stream\'s slot taken', async () => await bulkStreamsOpen(app) === 1, { timeoutMs: 5000, intervalMs: 10 })
  socket.destroy()
  await waitFor('the slot back once the connection went', async () => await bulkStreamsOpen(app) === 0, { timeoutMs: 5000, intervalMs: 10 })
  const next = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...bearer(bot.key), accept: 'application/x-ndjson' }, payload: { ids: ids.slice(100, 110) } })
  t.equal(next.statusCode, 200, 'the consumer\'s next stream is served')
})

test('bulk streams: X-Cache is MISS when the look-ahead loaded ids of the first chunk, whose own read then hits; Age is the oldest served', async (t) => {
  let clock = Date.now()
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: 5, PREFETCH_ENABLED: false }, sandbox: { objects: 40 }, deps: { now: () => clock } })
  const known = sandbox.ids().slice(0, 20).map(String)
  for (const [k, accept] of ['application/json', 'application/x-ndjson'].entries()) {
    const ids = known.slice(k * 10, k * 10 + 10)
    // Four of the first chunk's five ids cached 30 s ago; its fifth and the whole second chunk not.
    await app.inject({ url: `/v1/objects?ids=${ids.slice(0, 4).join(',')}`, headers: demoAuth(app) })
    clock += 30_000
    sandbox.resetCalls()
    const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...demoAuth(app), accept }, payload: { ids } })
    t.equal(res.statusCode, 200)
    // Six misses at five a call: the fifth id went with four of the second chunk's (packMisses), before
    // the first chunk was read.
    t.equal(sandbox.calls.get('objects'), 2, `${accept}: two upstream calls`)
    // Before: HIT, the first chunk's read after that call found all five.
    t.equal(res.headers['x-cache'], 'MISS', `${accept}: the first chunk needed a load`)
    t.equal(res.headers.age, '30', `${accept}: the age of the oldest record served`)
  }
})

test('bulk streams: a look-ahead call that fell back to stale entries says nothing of the first chunk its own read then loads fresh', async (t) => {
  let clock = Date.now()
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_MAX_IDS_PER_CALL: 5, PREFETCH_ENABLED: false, UPSTREAM_RETRIES: 0, UPSTREAM_BATCH_WINDOW_MS: 0 }, sandbox: { objects: 40 }, deps: { now: () => clock } })
  const known = sandbox.ids().slice(0, 20).map(String)
  for (const [k, accept] of ['application/json', 'application/x-ndjson'].entries()) {
    const ids = known.slice(k * 10, k * 10 + 10)
    // All ten cached; two hours on (past fresh and stale-while-revalidate, within stale-if-error) four of
    // the first chunk's five are loaded again; its fifth and the second chunk stay old.
    await app.inject({ url: `/v1/objects?ids=${ids.join(',')}`, headers: demoAuth(app) })
    clock += 2 * 3600_000
    await app.inject({ url: `/v1/objects?ids=${ids.slice(0, 4).join(',')}`, headers: demoAuth(app) })
    // The look-ahead's call (the fifth id with four of the second chunk's) fails and falls back to the
    // stale entries, storing nothing; the first chunk's own read then loads its fifth id fresh.
    sandbox.inject({ endpoint: 'objects', kind: 'html500', times: 1 })
    const res = await app.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...demoAuth(app), accept }, payload: { ids } })
    t.equal(res.statusCode, 200)
    // Before: STALE, Age 7200, X-Cache-Reason upstream-error, though no stale record of the first chunk was sent.
    t.equal(res.headers['x-cache'], 'MISS', `${accept}: X-Cache`)
    t.equal(res.headers.age, '0', `${accept}: Age`)
  }
})

test('bulk streams: a look-ahead that loaded ids of the first chunk makes it a MISS, though it also served a stale entry of a later chunk', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL (two replicas)' : false }, async (t) => {
  let clock = Date.now()
  const config = { UPSTREAM_MAX_IDS_PER_CALL: 5, PREFETCH_ENABLED: false, UPSTREAM_RETRIES: 0, UPSTREAM_BATCH_WINDOW_MS: 0, REDIS_KEY_PREFIX: testKeyPrefix('bulk-lookahead') }
  const { app: a, sandbox } = await buildTestApp(t, { useRedis: true, config, sandbox: { objects: 40 }, deps: { now: () => clock } })
  const { app: b } = await buildTestApp(t, { useRedis: true, config, upstream: sandbox, deps: { now: () => clock } })
  const ids = sandbox.ids().slice(0, 10).map(String)
  // Replica A holds ids[5] in L1; two hours on replica B loads it again into L2 (A's L1 keeps the old
  // copy, which the look-ahead's header peek counts as a miss, while the read takes L2's, within its
  // stale-while-revalidate window: STALE, refreshed in the background).
  await a.inject({ url: `/v1/objects/${ids[5] as string}`, headers: demoAuth(a) })
  clock += 2 * 3600_000
  t.equal((await b.inject({ url: `/v1/objects/${ids[5] as string}`, headers: demoAuth(b) })).headers['x-cache'], 'MISS')
  clock += 15 * 60_000
  // Everything else fresh in A but ids[0], never read: the look-ahead loads it with ids[5].
  await a.inject({ url: `/v1/objects?ids=${[1, 2, 3, 4, 6, 7, 8, 9].map((i) => ids[i]).join(',')}`, headers: demoAuth(a) })
  const res = await a.inject({ method: 'POST', url: '/v1/objects/query', headers: { ...demoAuth(a), accept: 'application/json' }, payload: { ids } })
  t.equal(res.statusCode, 200)
  // Before: HIT (eedaf96 dropped the look-ahead's STALE outcome, though it had stored ids[0]).
  t.equal(res.headers['x-cache'], 'MISS')
})
