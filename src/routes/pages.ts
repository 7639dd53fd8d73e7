// Pages for people: the landing page at / (public) and the operators' status page at /status (guarded
// like /metrics: METRICS_TOKEN when set). Server-rendered HTML with inline SVG charts, no script and
// no external asset; the status page refreshes itself (meta refresh). Nothing secret is shown: no key,
// token or password, only consumer ids and names, counts and states.
import fp from 'fastify-plugin'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { Consumer } from '../consumers/schema.js'
import { requireMetricsToken } from '../plugins/metrics.js'
import { barChart, timeChart, type Bar } from '../render/charts.js'
import { page, PAGE_POLICY } from '../render/html.js'
import { esc } from '../render/svg.js'
import { parseRate } from '../upstream/budget.js'
import { createStatusSeries, increases, increaseSince, LOGIN_ENDPOINT, SAMPLE_INTERVAL_MS, type Sample, type StatusSeries } from './status-series.js'

declare module 'fastify' {
  interface FastifyInstance {
    statusSeries: StatusSeries
  }
}

const HTML = 'text/html; charset=utf-8'
export const STATUS_REFRESH_S = 30
// The most consumers the status page draws: the most active ones (mostActive), so that a busy
// consumer is never left out for its place in the consumers file; the page says how many it leaves out.
const MAX_CONSUMERS_SHOWN = 100
const HOUR = 3600_000
const EXAMPLE_ID = '1161600211221604900'

const htmlResponse = (description: string) => ({ description, content: { 'text/html': { schema: Type.String() } } })

function landing (origin: string): string {
  const o = esc(origin)
  return page({
    title: 'atlas-gateway',
    body: '<h1>atlas-gateway</h1>' +
      '<p>A gateway in front of the ATLAS Transient Server API: a stable, versioned ' +
      'API (<code>/v1</code>) with your own key, cached reads, fair per-consumer limits on a shared upstream budget of about ' +
      '100 calls an hour, light curves as SVG or CSV, and a compatibility path for scripts written for the upstream\'s own client.</p>' +
      '<nav><a href="/docs">API documentation</a><a href="/openapi.json">OpenAPI document</a><a href="/status">Status (operators)</a>' +
      '<a href="/healthz">Health</a></nav>' +
      '<h2>Getting a key</h2><p>Keys are issued by the operators of this gateway (<code>npm run keys -- create &lt;id&gt; --scopes read</code> writes one into the ' +
      'consumers file); ask them for one with the scopes you need (<code>read</code>, <code>write:vra</code>, <code>write:custom-lists</code>, ' +
      '<code>write:detection-list</code>). Send it as <code>Authorization: Bearer &lt;key&gt;</code> or <code>X-API-Key: &lt;key&gt;</code>.</p>' +
      '<h2>Quick start</h2><pre>' +
      'KEY=&lt;your key&gt;\n' +
      `curl -s -H "Authorization: Bearer $KEY" ${o}/v1/me\n` +
      `curl -s -H "Authorization: Bearer $KEY" ${o}/v1/objects/${EXAMPLE_ID}\n` +
      `curl -s -H "Authorization: Bearer $KEY" "${o}/v1/objects/${EXAMPLE_ID}/lightcurve?format=svg" -o lc.svg\n` +
      `curl -s -H "Authorization: Bearer $KEY" "${o}/v1/cone?ra=244.00092&amp;dec=22.26801&amp;radius=20&amp;mode=all"</pre>` +
      '<p class="muted">ATLAS ids are 19-digit integers beyond 2^53: v1 sends every one as a JSON string. Errors are RFC 9457 ' +
      '<code>application/problem+json</code> documents with a stable <code>code</code>.</p>' +
      '<h2>Scripts built on the ATLAS client</h2><p>Point their base URL at <code>' + o + '/atlas/api/</code> and use your key as ' +
      'their token: the compatibility path speaks the upstream\'s dialect.</p>'
  })
}

function since (ms: number | null, now: number): string {
  if (ms === null) return 'never (since this replica started)'
  const s = Math.max(0, Math.round((now - ms) / 1000))
  const text = s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`
  return `${new Date(ms).toISOString().slice(0, 19)}Z (${text} ago)`
}

const stateClass = (isOk: boolean): string => isOk ? 'ok' : 'bad'

interface ConsumerUsage { c: Consumer, u: Awaited<ReturnType<FastifyInstance['quota']['usage']>> }

/** Most object units today first, then most upstream calls this hour, then by id (unknown counts as 0). */
function mostActive (a: ConsumerUsage, b: ConsumerUsage): number {
  return (b.u.units_today ?? 0) - (a.u.units_today ?? 0) ||
    (b.u.upstream_share_used ?? 0) - (a.u.upstream_share_used ?? 0) ||
    (a.c.id < b.c.id ? -1 : a.c.id > b.c.id ? 1 : 0)
}

async function statusBody (app: FastifyInstance): Promise<string> {
  const { config, statusSeries: series } = app
  const now = Date.now()
  const current = await series.read()
  const readings: Sample[] = [...series.samples, current]
  const { capacity, windowMs } = parseRate(config.UPSTREAM_RATE)
  const perHour = Math.round(capacity * HOUR / windowMs)
  const perMinute = (s: Sample): number => s.calls
  const lastHour = increaseSince(readings, perMinute, now - HOUR)
  const lastDay = increaseSince(readings, perMinute, now - 24 * HOUR)

  const budgetHour = timeChart({
    name: 'budget-hour',
    kind: 'columns',
    unit: 'calls sent upstream per minute (this replica)',
    points: increases(readings, perMinute, now, HOUR, 60_000),
    from: now - HOUR,
    to: now
  })
  const budgetDay = timeChart({
    name: 'budget-day',
    kind: 'columns',
    unit: 'calls sent upstream per hour (this replica)',
    points: increases(readings, perMinute, now, 24 * HOUR, HOUR),
    from: now - 24 * HOUR,
    to: now,
    limit: { value: perHour, label: `budget ${perHour}/hour (all replicas)` }
  })
  const budgetLeft = timeChart({
    name: 'budget-left',
    kind: 'line',
    unit: 'budget tokens left (last seen, all replicas)',
    points: readings.filter((r) => r.t >= now - HOUR).map((r) => ({ t: r.t, v: r.budgetLeft })),
    from: now - HOUR,
    to: now,
    limit: { value: capacity, label: `capacity ${capacity}` }
  })
  const hourly = increases(readings, (s) => s.lookups, now, 24 * HOUR, 15 * 60_000)
  const hits = increases(readings, (s) => s.hits, now, 24 * HOUR, 15 * 60_000)
  const ratio = timeChart({
    name: 'cache-ratio',
    kind: 'line',
    unit: 'cache hit ratio per 15 min (this replica)',
    yMax: 1,
    from: now - 24 * HOUR,
    to: now,
    points: hourly.map((b, i) => ({ t: b.t, v: b.v === null || b.v === 0 ? null : (hits[i]?.v ?? 0) / b.v })),
    format: (v) => `${Math.round(v * 100)}%`
  })
  const endpoints = Object.keys(current.byEndpoint).sort()
  const endpointBars: Bar[] = endpoints.map((e) => ({
    label: e,
    value: increaseSince(readings, (s) => s.byEndpoint[e] ?? 0, now - HOUR),
    note: `(${e === LOGIN_ENDPOINT ? 'logins, outside the budget; ' : ''}${current.byEndpoint[e] ?? 0} since start)`
  }))
  const totalRatio = current.lookups === 0 ? 'no cache reads yet' : `${Math.round(100 * current.hits / current.lookups)}% of ${current.lookups} cache reads since start`

  const tokens = app.upstream.tokens.refreshState()
  const source = config.ATLAS_TOKEN_FILE !== '' ? 'file (ATLAS_TOKEN_FILE)' : config.ATLAS_TOKEN !== '' ? 'setting (ATLAS_TOKEN)' : 'login only'
  const canRefresh = config.ATLAS_USERNAME !== '' || config.ATLAS_USERNAME_FILE !== ''
  const breaker = app.upstream.client.breakerState
  const redis = config.REDIS_URL === '' ? 'not configured (memory only)' : app.redisHealth.state

  // Every consumer's usage is read (two Redis reads each) to find the most active ones.
  const all = await Promise.all(app.consumers.list().map(async (c) => ({ c, u: await app.quota.usage(c) })))
  const usages = all.sort(mostActive).slice(0, MAX_CONSUMERS_SHOWN)
  const notShown = all.length - usages.length
  const unitBars: Bar[] = usages.map(({ c, u }) => ({ label: c.id, title: c.name, value: u.units_today, limit: c.daily_objects }))
  const shareBars: Bar[] = usages.map(({ c, u }) => ({ label: c.id, title: c.name, value: u.upstream_share_used, limit: c.upstream_share }))

  const row = (k: string, v: string, cls = ''): string => `<tr><th>${esc(k)}</th><td${cls === '' ? '' : ` class="${cls}"`}>${esc(v)}</td></tr>`
  return '<h1>atlas-gateway status</h1>' +
    `<p class="muted">This replica, ${esc(new Date(now).toISOString().slice(0, 19))}Z; up since ${esc(since(series.startedAt, now))}. ` +
    `Refreshes every ${STATUS_REFRESH_S} s. <a href="/">home</a> · <a href="/metrics">metrics</a> · <a href="/healthz">health</a></p>` +
    '<h2>Upstream budget</h2>' +
    `<p>${lastHour} calls reached the upstream in the last hour and ${lastDay} in the last day from this replica; the budget is ${esc(config.UPSTREAM_RATE)} for all replicas; ` +
    `left when last seen: ${current.budgetLeft === null ? 'not seen yet (no upstream call)' : String(current.budgetLeft)}.</p>` +
    '<p class="muted">Each call counted spent the budget, whatever came back. A call that never left the gateway (no connection) gave ' +
    'its token back and is not counted here (<code>status="not_sent"</code> in the metrics).</p>' +
    `<div class="grid"><div class="card"><h3>Last hour</h3>${budgetHour}</div><div class="card"><h3>Last day</h3>${budgetDay}</div>` +
    `<div class="card"><h3>Budget left</h3>${budgetLeft}</div>` +
    `<div class="card"><h3>Calls that reached the upstream, by endpoint, last hour</h3>${barChart('endpoints', endpointBars)}</div></div>` +
    '<h2>Cache</h2>' +
    `<div class="grid"><div class="card"><h3>Hit ratio over the last day</h3>${ratio}</div><div class="card"><p>${esc(totalRatio)}.</p>` +
    '<p class="muted">Hits count fresh and stale answers; misses went to the upstream (or joined a call in flight).</p></div></div>' +
    '<h2>Dependencies</h2><div class="grid"><div class="card"><h3>Upstream token</h3><table>' +
    row('source', source) +
    row('unattended refresh', canRefresh ? 'configured (username and password)' : 'not configured') +
    row('refresh state', tokens.state + (tokens.reason === undefined ? '' : ` (${tokens.reason})`) + (tokens.retryAfterS > 0 ? `, next login in ${tokens.retryAfterS} s` : ''), stateClass(tokens.state === 'ok')) +
    row('failed logins', String(tokens.failures), stateClass(tokens.failures === 0)) +
    row('last refresh', since(series.lastRefreshAt, now)) +
    row('in use since', since(series.lastRefreshAt ?? series.startedAt, now)) +
    '</table></div><div class="card"><h3>Circuit and Redis</h3><table>' +
    row('upstream circuit', breaker, stateClass(breaker === 'closed')) +
    row('Redis', redis, stateClass(redis !== 'down')) +
    '</table></div></div>' +
    '<h2>Consumers today</h2>' +
    `<div class="grid"><div class="card"><h3>Object units today (of daily_objects)</h3>${barChart('consumer-units', unitBars)}</div>` +
    `<div class="card"><h3>Upstream calls this hour (of upstream_share)</h3>${barChart('consumer-share', shareBars)}</div></div>` +
    (notShown === 0
      ? ''
      : `<p class="muted">${notShown} more consumers not shown: the ${usages.length} with the most object units today, then upstream calls this hour, are.</p>`)
}

export const pageRoutes = fp(async (app) => {
  const series = createStatusSeries(app.metrics)
  app.decorate('statusSeries', series)
  let timer: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    await series.sample()
    timer = setInterval(() => { series.sample().catch((err: unknown) => app.log.warn({ err }, 'status sample failed')) }, SAMPLE_INTERVAL_MS)
    timer.unref()
  })
  app.addHook('onClose', async () => { clearInterval(timer) })

  app.get('/', {
    config: { public: true },
    schema: {
      summary: 'The landing page: what this gateway is, links, how to get a key, a quick start',
      tags: ['operations'],
      response: { 200: htmlResponse('an HTML page'), 400: Type.Ref('Problem') }
    }
  }, async (request, reply) => {
    // The examples name the address the reader used (escaped); an odd Host only changes the examples.
    const host = /^[A-Za-z0-9.[\]:-]{1,255}$/.test(request.headers.host ?? '') ? request.headers.host as string : 'localhost:8080'
    return reply.header('content-security-policy', PAGE_POLICY).type(HTML).send(landing(`${request.protocol}://${host}`))
  })

  app.get('/status', {
    // Public to the route guard, like /metrics: METRICS_TOKEN, when set, guards it here.
    config: { public: true },
    schema: {
      summary: 'The operators\' status page: budget, cache, token, circuit, Redis and consumers\' usage',
      description: 'Server-rendered HTML with inline SVG charts, refreshed every 30 s. Needs `Authorization: Bearer <METRICS_TOKEN>` ' +
        '(or HTTP Basic with it as the password) when METRICS_TOKEN is set.',
      tags: ['operations'],
      security: [{ metricsToken: [] }],
      response: { 200: htmlResponse('an HTML page'), 400: Type.Ref('Problem'), 401: Type.Ref('Problem') }
    }
  }, async (request, reply) => {
    requireMetricsToken(request, reply, true)
    const body = await statusBody(app)
    return reply.header('content-security-policy', PAGE_POLICY).header('cache-control', 'no-store')
      .type(HTML).send(page({ title: 'atlas-gateway status', body, refreshS: STATUS_REFRESH_S }))
  })
}, { name: 'pages', fastify: '5.x', dependencies: ['metrics', 'upstream'] })
