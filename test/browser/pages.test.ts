// The pages in a real browser: Debian's Chromium (/usr/bin/chromium) driven by playwright-core, headless,
// with a new empty profile. Loads /, /status (HTTP Basic with METRICS_TOKEN, as an operator's browser
// would), /docs and a light-curve SVG; checks what matters on each, that nothing logs a console error
// and that no request leaves loopback (anything else is blocked and recorded). Screenshots go to
// test-artifacts/browser/ (ignored by git). Skips, saying why, only when Chromium is not installed
// (.ci/run installs it).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t0, { test } from 'tap'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { buildTestApp, demoAuth, FIXTURE_IDS } from '../helper.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/browser/', import.meta.url))
const METRICS_TOKEN = 'browser-status-token-0123456789'

// A browser on a loaded machine needs more than the suite's 180 s per file.
t0.setTimeout(480_000)

const skip = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install chromium; .ci/run does): browser tests skipped`

interface Watched { page: Page, errors: string[] }

// Each page records the Content-Security-Policy violations it meets (Chromium also logs them as
// console errors; this names the directive and what was blocked). Browser code as text: the tests are
// compiled without the DOM's types.
const RECORD_CSP_VIOLATIONS = 'window.cspViolations = []; document.addEventListener("securitypolicyviolation", ' +
  '(e) => { window.cspViolations.push(e.effectiveDirective + " blocked " + e.blockedURI) })'
const cspViolations = async (page: Page): Promise<unknown> => page.evaluate('window.cspViolations')

test('the pages in Chromium: landing, status, docs and a light curve', { skip, timeout: 480_000 }, async (t) => {
  const { app } = await buildTestApp(t, { config: { METRICS_TOKEN } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const origin = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  mkdirSync(ARTIFACTS, { recursive: true })

  // A record read first: the status page then has upstream calls and a consumer's usage to show.
  const A = FIXTURE_IDS.A
  const record = (await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })).json() as { lc: unknown[], lcnondets: unknown[], fp: unknown[] }
  await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })
  await app.statusSeries.sample()

  const profile = mkdtempSync(join(tmpdir(), 'agw-chromium-'))
  t.teardown(() => rmSync(profile, { recursive: true, force: true }))
  const context: BrowserContext = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 900 },
    httpCredentials: { username: 'operator', password: METRICS_TOKEN, origin }
  })
  t.teardown(() => context.close())
  await context.addInitScript({ content: RECORD_CSP_VIOLATIONS })
  const offLoopback: string[] = []
  await context.route('**/*', async (route) => {
    const url = new URL(route.request().url())
    if (url.protocol === 'data:' || url.hostname === '127.0.0.1') return route.continue()
    offLoopback.push(route.request().url())
    return route.abort()
  })

  async function open (path: string, viewport = { width: 1280, height: 900 }, headers?: Record<string, string>): Promise<Watched> {
    const page = await context.newPage()
    const errors: string[] = []
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
    page.on('pageerror', (e) => errors.push(e.message))
    await page.setViewportSize(viewport)
    if (headers !== undefined) await page.setExtraHTTPHeaders(headers)
    const res = await page.goto(origin + path, { waitUntil: 'networkidle' })
    t.equal(res?.status(), 200, `${path}: 200`)
    return { page, errors }
  }
  // A loaded machine can take long to paint: a generous timeout.
  const shot = async (page: Page, name: string, fullPage = true): Promise<void> => {
    const path = join(ARTIFACTS, name)
    await page.screenshot({ path, fullPage, timeout: 120_000 })
    t.comment(`screenshot: ${path}`)
  }

  const landing = await open('/')
  t.equal(await landing.page.textContent('h1'), 'atlas-gateway')
  for (const href of ['/docs', '/status', '/openapi.json']) t.equal(await landing.page.locator(`a[href="${href}"]`).count(), 1, `link to ${href}`)
  t.match(await landing.page.textContent('pre'), /curl -s -H "Authorization: Bearer \$KEY" http:\/\/127\.0\.0\.1:\d+\/v1\/objects\//)
  await shot(landing.page, 'landing.png')
  t.same(landing.errors, [], '/: no console error')
  t.same(await cspViolations(landing.page), [], '/: no CSP violation')

  const status = await open('/status', { width: 1280, height: 1400 })
  t.equal(await status.page.textContent('h1'), 'atlas-gateway status', 'the browser answered the Basic challenge with METRICS_TOKEN')
  for (const chart of ['budget-hour', 'budget-day', 'budget-left', 'endpoints', 'cache-ratio', 'consumer-units', 'consumer-share']) {
    const box = await status.page.locator(`svg.chart.${chart}`).boundingBox()
    t.ok(box !== null && box.width > 200 && box.height > 20, `${chart} chart is drawn (${Math.round(box?.width ?? 0)}×${Math.round(box?.height ?? 0)})`)
  }
  t.ok(await status.page.locator('svg.chart.budget-hour .mark').count() >= 1, 'the upstream call is in the last hour\'s columns')
  t.equal(await status.page.locator('svg.chart.consumer-units .bar').count(), 1, 'one bar per consumer')
  t.notOk((await status.page.content()).includes(METRICS_TOKEN), 'the token is not on the page')
  await shot(status.page, 'status.png')
  t.same(status.errors, [], '/status: no console error')
  t.same(await cspViolations(status.page), [], '/status: no CSP violation')

  const docs = await open('/docs')
  await docs.page.waitForSelector('.opblock', { timeout: 60_000 })
  const operations = await docs.page.locator('.opblock').count()
  t.ok(operations >= 40, `Swagger UI lists the operations (${operations})`)
  t.ok(await docs.page.locator('.opblock-tag[data-tag="compat"]').count() === 1, 'the compat tag')
  // Under the page's strict policy (plugins/openapi.ts): a key typed into "Authorize", then "Try it out"
  // on /v1/me, which Swagger UI sends from the page (connect-src 'self').
  await docs.page.locator('button.authorize').first().click()
  await docs.page.locator('.modal-ux input[type=text]').first().fill(app.consumers.demoKey as string)
  await docs.page.locator('.modal-ux button.authorize').first().click()
  await docs.page.locator('.modal-ux button.close-modal').first().click()
  const me = docs.page.locator('.opblock', { has: docs.page.locator('.opblock-summary-path[data-path="/v1/me"]') }).first()
  await me.locator('.opblock-summary').click()
  await me.locator('button.try-out__btn').click()
  await me.locator('button.execute').click()
  await me.locator('.live-responses-table tbody .response-col_status').first().waitFor({ timeout: 60_000 })
  t.match(await me.locator('.live-responses-table tbody .response-col_status').first().textContent(), /^200/, 'Try it out with the key typed in: 200')
  await shot(docs.page, 'docs.png', false)
  t.same(docs.errors, [], '/docs: no console error')
  t.same(await cspViolations(docs.page), [], '/docs: no CSP violation')

  const lcPath = `/v1/objects/${A}/lightcurve?format=svg`
  for (const viewport of [{ width: 800, height: 400 }, { width: 1600, height: 800 }]) {
    const lc = await open(lcPath, viewport, demoAuth(app))
    const count = async (selector: string): Promise<number> => lc.page.locator(selector).count()
    t.equal(await count('.pt[data-kind="detection"]'), record.lc.length, 'one mark per detection')
    t.equal(await count('.pt[data-kind="non_detection"]'), record.lcnondets.length, 'one per non-detection')
    t.equal(await count('.pt[data-kind="forced"]'), record.fp.length, 'one per forced-photometry point')
    for (const axis of ['.axis.x', '.axis.y-mag', '.axis.y-flux']) t.equal(await count(axis), 1, `${axis}`)
    t.equal(await count('.legend .item[data-filter="c"]'), 1, 'legend: c')
    t.equal(await count('.legend .item[data-filter="o"]'), 1, 'legend: o')
    t.match(await lc.page.locator('.title').textContent(), new RegExp(`\\(${A}\\)$`), 'the id in the title')
    // Every mark is drawn inside the picture, and the picture fills the viewport's width.
    const svg = await lc.page.locator('svg').first().boundingBox()
    t.ok(svg !== null && Math.abs(svg.width - viewport.width) <= 1, `the SVG scales to ${viewport.width} px`)
    const boxes = await lc.page.locator('.pt').evaluateAll((els) => els.map((e) => e.getBoundingClientRect()).map((r) => [r.left, r.top, r.width, r.height]))
    t.ok(boxes.every(([x, y, w, h]) => (w as number) > 0 && (h as number) > 0 && (x as number) >= 0 && (y as number) >= 0 &&
      (x as number) + (w as number) <= viewport.width + 1 && (y as number) + (h as number) <= viewport.height + 1), `${boxes.length} marks drawn inside ${viewport.width}×${viewport.height}`)
    await shot(lc.page, `lightcurve-${viewport.width}x${viewport.height}.png`, false)
    t.same(lc.errors, [], 'the SVG: no console error')
  }

  t.same(offLoopback, [], 'no request left loopback')
})
