// The landing page (public) and the status page (METRICS_TOKEN when set): what they show, that they load
// nothing from elsewhere, that no secret appears, and the status series they are drawn from.
import { test } from 'tap'
import { Registry } from 'prom-client'
import { buildTestApp, demoAuth, FIXTURE_IDS, UNUSED_UPSTREAM } from '../helper.js'
import { bearer, consumersFile, makeConsumer, type TestConsumer } from '../consumer-helper.js'
import { createMetrics } from '../../src/plugins/metrics.js'
import { createStatusSeries, increases, increaseSince, KEEP_MS, type Sample } from '../../src/routes/status-series.js'
import { barChart, timeChart } from '../../src/render/charts.js'

const CHARTS = ['budget-hour', 'budget-day', 'budget-left', 'endpoints', 'cache-ratio', 'consumer-units', 'consumer-share']

test('GET / is a public HTML page with the links, how to get a key and the quick start', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ url: '/', headers: { host: 'gw.example:8080' } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html; charset=utf-8/)
  t.match(res.headers['content-security-policy'], /default-src 'none'/)
  for (const href of ['/docs', '/status', '/openapi.json']) t.match(res.body, `href="${href}"`, `links to ${href}`)
  t.match(res.body, /Getting a key/)
  t.match(res.body, 'curl -s -H "Authorization: Bearer $KEY" http://gw.example:8080/v1/objects/1161600211221604900')
  t.notMatch(res.body, /<script|src=|<link/, 'no script, no external asset')
  const odd = await app.inject({ url: '/', headers: { host: '<b>x</b>' } })
  t.equal(odd.statusCode, 200)
  t.notMatch(odd.body, /<b>x/, 'an odd Host never reaches the page')
})

test('GET /status: charts, budget, cache, token, circuit, Redis and consumers; no secret', async (t) => {
  const { app, sandbox, config } = await buildTestApp(t)
  for (const id of [FIXTURE_IDS.A, FIXTURE_IDS.B, FIXTURE_IDS.A]) {
    t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })).statusCode, 200)
  }
  const res = await app.inject({ url: '/status' })
  t.equal(res.statusCode, 200, 'open while METRICS_TOKEN is unset, like /metrics')
  t.match(res.headers['content-type'], /^text\/html/)
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.body, /<meta http-equiv="refresh" content="30">/)
  for (const chart of CHARTS) t.match(res.body, `<svg class="chart ${chart}"`, `${chart} chart`)
  t.notMatch(res.body, /<script|src=|<link/, 'no script, no external asset')
  t.match(res.body, /2 calls reached the upstream in the last hour/, 'two misses went upstream')
  t.match(res.body, /33% of 3 cache reads since start/, 'one of three reads was a hit')
  t.match(res.body, /<text[^>]*>objects<\/text>/, 'calls by endpoint')
  t.match(res.body, /<th>upstream circuit<\/th><td class="ok">closed/)
  t.match(res.body, /<th>source<\/th><td>setting \(ATLAS_TOKEN\)/)
  t.match(res.body, new RegExp(`<th>Redis</th><td class="ok">${config.REDIS_URL === '' ? 'not configured' : 'up'}`))
  t.match(res.body, /<title>demo \(.*?\): 3 \/ 100000<\/title>/, 'the demo consumer\'s units today against its limit')
  const secrets = [app.consumers.demoKey as string, ...Object.values(sandbox.tokens), ...Object.values(sandbox.users).map((u) => u.password)]
  for (const secret of secrets) t.notOk(res.body.includes(secret), 'no key, token or password on the page')
})

test('/status counts only the upstream calls that reached the upstream (the budget spent), as usage does', async (t) => {
  // Nothing listens on the upstream's port: every object read fails before anything is sent.
  const { app } = await buildTestApp(t, { config: { ATLAS_BASE_URL: UNUSED_UPSTREAM } })
  for (const id of [FIXTURE_IDS.A, FIXTURE_IDS.B, FIXTURE_IDS.A, FIXTURE_IDS.A]) {
    const read = await app.inject({ url: `/v1/objects/${id}`, headers: demoAuth(app) })
    t.ok(read.statusCode >= 502, `the read fails unsent (${read.statusCode})`)
  }
  await app.statusSeries.sample()
  const metrics = (await app.inject({ url: '/metrics' })).body
  const unsent = Number(/^gateway_upstream_calls_total\{endpoint="objects",status="not_sent"\} (\d+)$/m.exec(metrics)?.[1] ?? 0)
  t.ok(unsent >= 4, `/metrics counts the attempts as not_sent (${unsent})`)
  const res = await app.inject({ url: '/status' })
  t.match(res.body, /0 calls reached the upstream in the last hour and 0 in the last day/, 'none reached the upstream')
  t.notMatch(res.body, /<text[^>]*>objects<\/text>/, 'no endpoint bar for calls never sent')
  const me = (await app.inject({ url: '/v1/me', headers: demoAuth(app) })).json() as { usage: { upstream_share_used: number | null } }
  t.equal(me.usage.upstream_share_used, 0, 'and the consumer\'s share agrees')
})

test('/status shows the most active consumers first and says how many it leaves out', async (t) => {
  // 130 consumers; only the last in the file reads anything today.
  const consumers = Array.from({ length: 130 }, (_, i) => makeConsumer(`c${String(i).padStart(3, '0')}`, { scopes: ['read'] }))
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, consumers) } })
  const last = consumers[129] as TestConsumer
  t.equal((await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: bearer(last.key) })).statusCode, 200)
  const res = await app.inject({ url: '/status' })
  const units = /<svg class="chart consumer-units[\s\S]*?<\/svg>/.exec(res.body)?.[0] ?? ''
  const labels = [...units.matchAll(/<g class="bar"><title>([^ :<]+)/g)].map((m) => m[1])
  t.equal(labels.length, 100, 'a hundred bars')
  t.equal(labels[0], 'c129', 'the consumer that read first, wherever it is in the file')
  t.equal(labels[1], 'c000', 'then the others by id')
  const section = res.body.slice(res.body.indexOf('<h2>Consumers today</h2>')).replace(/<svg[\s\S]*?<\/svg>/g, '')
  t.match(section, /30 more consumers not shown/, 'the page says how many it left out')
})

test('with METRICS_TOKEN set, /status needs it (Bearer, or HTTP Basic as the password)', async (t) => {
  const token = 'status-secret-0123456789'
  const { app } = await buildTestApp(t, { config: { METRICS_TOKEN: token } })
  const none = await app.inject({ url: '/status' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.match(none.headers['www-authenticate'], /^Basic realm=/, 'a browser asks for it')
  const wrong = await app.inject({ url: '/status', headers: { authorization: `Basic ${Buffer.from('ops:nope').toString('base64')}` } })
  t.equal(wrong.statusCode, 401)
  const bearer = await app.inject({ url: '/status', headers: { authorization: `Bearer ${token}` } })
  t.equal(bearer.statusCode, 200)
  t.notOk(bearer.body.includes(token), 'the token is not on the page')
  const basic = await app.inject({ url: '/status', headers: { authorization: `Basic ${Buffer.from(`ops:${token}`).toString('base64')}` } })
  t.equal(basic.statusCode, 200)
  const metricsBasic = await app.inject({ url: '/metrics', headers: { authorization: `Basic ${Buffer.from(`ops:${token}`).toString('base64')}` } })
  t.equal(metricsBasic.statusCode, 401, '/metrics keeps to Bearer')
  t.equal((await app.inject({ url: '/' })).statusCode, 200, 'the landing page stays public')
})

test('the status series: samples from the metrics, keeps a day, notes token refreshes', async (t) => {
  const metrics = createMetrics(new Registry())
  let now = 1_000_000_000_000
  const series = createStatusSeries(metrics, () => now)
  const first = await series.sample()
  t.match(first, { calls: 0, hits: 0, lookups: 0, budgetLeft: null, tokenRefreshesOk: 0 })
  metrics.upstreamCalls.inc({ endpoint: 'objects', status: '200' }, 3)
  metrics.upstreamCalls.inc({ endpoint: 'cone', status: '500' })
  // Sent and not answered in time: the budget was spent. Never sent: given back, not a call.
  metrics.upstreamCalls.inc({ endpoint: 'objects', status: 'timeout' })
  metrics.upstreamCalls.inc({ endpoint: 'objects', status: 'not_sent' }, 5)
  metrics.upstreamCalls.inc({ endpoint: 'cone', status: 'not_sent' })
  // A login reaches the upstream outside the budget.
  metrics.upstreamCalls.inc({ endpoint: 'auth-token', status: '200' })
  metrics.cacheResults.inc({ route: 'objects', result: 'hit' }, 2)
  metrics.cacheResults.inc({ route: 'objects', result: 'stale' })
  metrics.cacheResults.inc({ route: 'objects', result: 'miss' })
  metrics.cacheResults.inc({ route: 'objects', result: 'bypass' })
  metrics.upstreamBudgetRemaining.set(96)
  metrics.tokenRefreshes.inc({ result: 'failed' })
  now += 60_000
  const second = await series.sample()
  t.match(second, { calls: 5, byEndpoint: { objects: 4, cone: 1, 'auth-token': 1 }, hits: 3, lookups: 4, budgetLeft: 96 })
  t.notOk('not_sent' in second.byEndpoint)
  t.equal(series.lastRefreshAt, null, 'a failed refresh is not a refresh')
  metrics.tokenRefreshes.inc({ result: 'ok' })
  now += 60_000
  await series.sample()
  t.equal(series.lastRefreshAt, now)
  now += KEEP_MS
  await series.sample()
  t.equal(series.samples.length, 2, 'samples older than a day are dropped')
})

test('increases and increaseSince', async (t) => {
  const s = (t0: number, calls: number): Sample => ({ t: t0, calls, byEndpoint: {}, hits: 0, lookups: 0, budgetLeft: null, tokenRefreshesOk: 0 })
  const readings = [s(0, 0), s(30, 2), s(70, 5), s(150, 5), s(190, 9)]
  // Buckets of 50 over (0, 200]: ends 50, 100, 150, 200.
  t.same(increases(readings, (r) => r.calls, 200, 200, 50).map((b) => b.v), [2, 3, 0, 4])
  t.same(increases([s(120, 1), s(130, 4)], (r) => r.calls, 200, 200, 50).map((b) => b.v), [null, null, 3, 0], 'before the first reading: null')
  t.equal(increaseSince(readings, (r) => r.calls, 100), 4, 'from the reading at 70')
  t.equal(increaseSince(readings, (r) => r.calls, -5), 9, 'from the first')
  t.equal(increaseSince([], (r) => r.calls, 0), 0)
})

test('charts: columns, lines with gaps, limits, bars against limits', async (t) => {
  const cols = timeChart({ name: 'c', kind: 'columns', unit: 'calls', from: 0, to: 4000, points: [{ t: 1000, v: 2 }, { t: 2000, v: null }, { t: 3000, v: 5 }], limit: { value: 10, label: 'cap' } })
  t.equal(cols.split('class="mark"').length - 1, 2, 'one column per value')
  t.match(cols, /class="limit"/)
  const line = timeChart({ name: 'l', kind: 'line', unit: 'ratio', yMax: 1, from: 0, to: 4000, points: [{ t: 0, v: 0.5 }, { t: 1000, v: null }, { t: 2000, v: 1 }, { t: 3000, v: 0.25 }] })
  t.match(line, /d="M[\d.]+ [\d.]+M[\d.]+ [\d.]+L/, 'a gap starts a new stroke')
  t.match(timeChart({ name: 'e', kind: 'line', unit: 'x', from: 0, to: 1, points: [] }), /no samples yet/)
  const bars = barChart('b', [{ label: 'a-very-long-consumer-identifier', value: 95, limit: 100 }, { label: 'b', value: null, limit: 10 }, { label: 'c', value: 1 }])
  t.match(bars, /a-very-long-consumer-…/, 'long labels are shortened (the tooltip keeps them)')
  t.match(bars, /<title>a-very-long-consumer-identifier: 95 \/ 100<\/title>/)
  t.match(bars, /fill="#c0341d"/, '95 % of a limit is red')
  t.match(bars, />unknown</)
  t.match(barChart('none', []), />none</)
})
