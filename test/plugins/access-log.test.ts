import { test } from 'tap'
import type { Test } from 'tap'
import { PassThrough } from 'node:stream'
import { buildApp } from '../../src/app.js'
import { buildTestApp, demoAuth, startTestSandbox, testConfig } from '../helper.js'

interface LogLine { level: number, msg: string, [field: string]: unknown }

function parseLines (text: string): LogLine[] {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as LogLine)
}

const accessLines = (text: string) => parseLines(text).filter((l) => l.msg === 'request completed')

/** An app that is not ready yet (so a test can add routes), with its log lines captured. */
async function appWithLogs (t: Test) {
  const sandbox = await startTestSandbox(t)
  const chunks: string[] = []
  const logStream = new PassThrough()
  logStream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')))
  const app = await buildApp(testConfig({ LOG_LEVEL: 'info', REDIS_URL: '', ATLAS_BASE_URL: sandbox.baseUrl }), { logStream })
  t.teardown(() => app.close())
  return { app, chunks }
}

test('one access line per request, with route template, consumer, status, duration, cache and upstream calls', async (t) => {
  const { app, chunks } = await appWithLogs(t)
  app.get('/things/:id', { config: { public: true } }, async (request) => {
    // What the cache, upstream and consumer-auth modules set on a request.
    request.cacheStatus = 'MISS'
    request.upstreamCalls += 2
    Object.assign(request, { consumer: { id: 'broker-1' } })
    return { ok: true }
  })
  await app.ready()

  const res = await app.inject({ url: '/things/1234567890123456789?mjd_min=60000', headers: { 'x-request-id': 'req-42' } })
  t.equal(res.statusCode, 200)
  await app.inject({ url: '/healthz' })

  const lines = parseLines(chunks.join(''))
  const access = lines.filter((l) => l.msg === 'request completed')
  t.equal(access.length, 2, 'exactly one line per request')
  t.notOk(lines.some((l) => l.msg === 'incoming request'), "Fastify's own request lines are off")
  const [first, second] = access
  t.match(first, {
    level: 30,
    request_id: 'req-42',
    consumer: 'broker-1',
    route: '/things/:id',
    method: 'GET',
    status: 200,
    cache: 'MISS',
    upstream_calls: 2
  })
  t.type(first?.duration_ms, 'number')
  t.match(second, { route: '/healthz', consumer: 'anonymous', cache: '-', upstream_calls: 0, status: 200 })
})

test('a read whose upstream load fails is logged and counted as a MISS, not as no lookup', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t, { useRedis: false, config: { LOG_LEVEL: 'info', UPSTREAM_RETRIES: 0 } })
  const auth = demoAuth(app)
  sandbox.inject({ endpoint: 'objects', kind: 'html500', times: 10 })
  const id = String(sandbox.ids()[40])
  t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: auth })).statusCode, 502)
  sandbox.inject({ endpoint: 'objectlist', kind: 'html500', times: 10 })
  t.equal((await app.inject({ url: '/v1/lists/good/objects', headers: auth })).statusCode, 502)
  const lines = accessLines(logs()).filter((l) => String(l.route).startsWith('/v1/'))
  t.strictSame(lines.map((l) => [l.status, l.cache]), [[502, 'MISS'], [502, 'MISS']], 'before: cache "-" on both')
  const day = new Date().toISOString().slice(0, 10)
  const usage = (await app.inject({ url: `/v1/admin/usage?from=${day}&to=${day}`, headers: auth })).json().rows[0]
  t.equal(usage.cache_lookups, 2, 'both lookups counted (before: 0)')
  t.equal(usage.cache_hits, 0)
})

test('every access line is JSON whatever the request carries: ids, URLs and consumers with quotes and backslashes', async (t) => {
  const { app, chunks } = await appWithLogs(t)
  app.get('/odd/:id', { config: { public: true } }, async (request) => {
    Object.assign(request, { consumer: { id: 'quote"back\\slash' } })
    return { ok: true }
  })
  await app.ready()
  await app.inject({ url: '/odd/1?q=x\\y', headers: { 'x-request-id': 'bad"id\\' } })
  await app.inject({ url: '/odd/2', headers: { 'x-request-id': 'ok-id.1:2' } })
  const access = accessLines(chunks.join(''))
  t.equal(access.length, 2, 'both lines parse as JSON')
  t.match(access[0], { consumer: 'quote"back\\slash', url: '/odd/1?q=x\\y', route: '/odd/:id' })
  t.match(access[0]?.request_id, /^[0-9a-f-]{36}$/, 'an id that would need escaping is replaced by a UUID')
  t.equal(access[1]?.request_id, 'ok-id.1:2', 'a safe id is kept')
})

test('unmatched routes and errors get their access line too; 5xx keeps its error log', async (t) => {
  const { app, chunks } = await appWithLogs(t)
  app.get('/boom', { config: { public: true } }, async () => { throw new Error('kaput') })
  await app.ready()
  await app.inject({ url: '/no/such/thing' })
  await app.inject({ url: '/boom' })
  const lines = parseLines(chunks.join(''))
  t.match(accessLines(chunks.join('')), [{ route: 'unmatched', status: 404 }, { route: '/boom', status: 500 }])
  t.ok(lines.some((l) => l.msg === 'request failed' && l.level === 50), 'the problem handler still logs the 5xx')
})

test('an expected 5xx (the upstream budget spent) is logged as a warning with its code, without a stack', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t, { useRedis: false, config: { LOG_LEVEL: 'info', UPSTREAM_RATE: '1/hour' } })
  const auth = demoAuth(app)
  t.equal((await app.inject({ url: '/v1/cone?ra=1&dec=1&radius=5', headers: auth })).statusCode, 200)
  const before = logs().length
  for (let k = 0; k < 5; k++) {
    const res = await app.inject({ url: `/v1/cone?ra=${2 + k}&dec=1&radius=5`, headers: auth })
    t.equal(res.json().code, 'GW_UPSTREAM_BUDGET')
  }
  t.equal(sandbox.calls.get('cone'), 1)
  const failed = parseLines(logs().slice(before)).filter((l) => l.msg === 'request failed')
  // Before: level 50 with the error's stack, about 1.5 KB a line, one for every request refused in a flood.
  t.equal(failed.length, 5)
  t.ok(failed.every((l) => l.level === 40 && l.code === 'GW_UPSTREAM_BUDGET' && !JSON.stringify(l).includes('"stack"')),
    `warning lines with their code and no stack: ${JSON.stringify(failed[0])}`)
})

test('the warning of a named 5xx keeps the chain of causes down to the transport error', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t, { useRedis: false, config: { LOG_LEVEL: 'info' } })
  sandbox.inject({ endpoint: 'vrarank', kind: 'reset', times: 1 })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: demoAuth(app), payload: { id: String(sandbox.ids()[3]), rank: 9.25 } })
  t.ok(res.statusCode >= 500, res.body)
  const failed = parseLines(logs()).find((l) => l.msg === 'request failed')
  // Before (e3e3693): only the first cause's message and code; the socket error was nowhere in the log.
  t.match(JSON.stringify(failed), /UND_ERR_SOCKET|other side closed|ECONNRESET/, JSON.stringify(failed))
})

test('keys, tokens and passwords never reach the access log', async (t) => {
  const { app, logs } = await buildTestApp(t)
  const secret = 'feedfacefeedfacefeedfacefeedfacefeedface'
  const password = 'correct-horse-battery-staple'
  await app.inject({
    url: `/healthz?token=${secret}&password=${password}`,
    headers: { authorization: `Bearer ${secret}`, 'x-api-key': secret }
  })
  await app.inject({ url: `/atlas/api/objects/?token=${secret}`, headers: { authorization: `Token ${secret}` } })
  await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${secret}` } })
  await app.inject({ url: `/v1/lists?api_key=${secret}`, headers: { 'x-api-key': secret } })
  const text = logs()
  t.equal(accessLines(text).length, 4)
  t.notOk(text.includes(secret), 'no key or token in the logs')
  t.notOk(text.includes(password), 'no password in the logs')
})
