// GET /v1/objects/{id}/lightcurve: points taken from the record the sandbox serves (compared with the
// upstream dialect read directly), the mjd rules, the three formats, and the read's economy (no upstream
// call when the record is cached, one object unit).
import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS, sandboxPost } from '../helper.js'
import { mjdToDate, ticks, esc, tickLabel, padded, linear } from '../../src/render/svg.js'

const A = FIXTURE_IDS.A

interface Row { mjd?: number, mjd_obs?: number, filter: string, expname: string, mag: number, magerr?: number, mag5sig?: number, uJy?: number, duJy?: number }
interface UpstreamRecord { object: { atlas_designation: string, other_designation: string }, lc: Row[], lcnondets: Row[], fp: Row[] }
interface Point { kind: string, mjd: number, date: string, filter: string, mag: number | null, mag_err: number | null, flux_ujy: number | null, flux_err_ujy: number | null, exposure: string | null }

async function upstreamRecord (sandbox: Parameters<typeof sandboxPost>[0], id: string): Promise<UpstreamRecord> {
  const res = await sandboxPost(sandbox, 'objects', { objects: id })
  return (JSON.parse(res.text) as UpstreamRecord[])[0] as UpstreamRecord
}

/** Every coordinate an SVG document holds (attributes and path data), and those that are NaN or Infinity. */
function svgNumbers (body: string): { numbers: string[], bad: string[] } {
  const numbers = [...body.matchAll(/ (?:x|y|x1|x2|y1|y2|cx|cy|width|height)="([^"]*)"/g)].map((m) => m[1] as string)
    .concat([...body.matchAll(/ d="([^"]*)"/g)].flatMap((m) => (m[1] as string).split(/[^-\d.eE+a-zA-Z]+/)))
  return { numbers, bad: numbers.filter((v) => /NaN|Infinity/.test(v)) }
}

test('JSON: one point per detection, non-detection and forced-photometry row, with the record\'s values', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const record = await upstreamRecord(sandbox, A)
  const res = await app.inject({ url: `/v1/objects/${A}/lightcurve`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json() as { id: string, name: string, other_name: string, points: Point[] }
  t.equal(body.id, A, 'the id as a string, digit for digit')
  t.equal(body.name, record.object.atlas_designation)
  t.equal(body.other_name, record.object.other_designation)
  const of = (kind: string): Point[] => body.points.filter((p) => p.kind === kind)
  t.equal(of('detection').length, record.lc.length)
  t.equal(of('non_detection').length, record.lcnondets.length)
  t.equal(of('forced').length, record.fp.length)
  t.ok(record.lc.length > 0 && record.fp.length > 0, 'the fixture has detections and forced photometry')
  const first = record.lc[0] as Row
  t.match(of('detection')[0], { mjd: first.mjd, filter: first.filter, mag: first.mag, mag_err: first.magerr, exposure: first.expname, flux_ujy: null, date: mjdToDate(first.mjd as number) })
  const nd = record.lcnondets[0] as Row
  t.match(of('non_detection')[0], { mjd: nd.mjd, mag: nd.mag5sig, mag_err: null, exposure: nd.expname })
  const fp = record.fp[0] as Row
  t.match(of('forced')[0], { mjd: fp.mjd_obs, flux_ujy: fp.uJy, flux_err_ujy: fp.duJy, exposure: fp.expname })
})

test('mjd_min: detections and non-detections keep mjd > value, forced photometry mjd >= value', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const record = await upstreamRecord(sandbox, A)
  // The sandbox takes forced photometry at every detection's exposure: this MJD is both a detection's
  // and a forced point's, so the two bounds differ on it.
  const mjd = (record.lc[2] as Row).mjd as number
  t.ok(record.fp.some((r) => r.mjd_obs === mjd), 'a forced point shares the MJD')
  const res = await app.inject({ url: `/v1/objects/${A}/lightcurve?mjd_min=${mjd}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  const points = (res.json() as { points: Point[] }).points
  t.equal(points.filter((p) => p.kind === 'detection').length, record.lc.filter((r) => (r.mjd as number) > mjd).length)
  t.equal(points.filter((p) => p.kind === 'non_detection').length, record.lcnondets.filter((r) => (r.mjd as number) > mjd).length)
  t.equal(points.filter((p) => p.kind === 'forced').length, record.fp.filter((r) => (r.mjd_obs as number) >= mjd).length)
  t.ok(points.some((p) => p.kind === 'forced' && p.mjd === mjd), 'the forced point at mjd_min is kept')
  t.notOk(points.some((p) => p.kind === 'detection' && p.mjd === mjd), 'the detection at mjd_min is not')
})

test('mjd_min with more than six decimals: detections and non-detections compare at six, as upstream', async (t) => {
  // The upstream writes the lc and lcnondets threshold into its SQL with '%f' (six decimals); forced
  // photometry compares the value itself. 4e-7 below a detection's MJD reads as that MJD at six decimals.
  const { app, sandbox } = await buildTestApp(t)
  const record = await upstreamRecord(sandbox, A)
  const at = (record.lc[2] as Row).mjd as number
  const mjd = at - 4e-7
  t.equal(mjd.toFixed(6), at.toFixed(6), 'the same MJD at six decimals')
  const res = await app.inject({ url: `/v1/objects/${A}/lightcurve?mjd_min=${mjd}`, headers: demoAuth(app) })
  const points = (res.json() as { points: Point[] }).points
  t.notOk(points.some((p) => p.kind === 'detection' && p.mjd === at), 'the detection at the six-decimal threshold is left out, as upstream')
  t.ok(points.some((p) => p.kind === 'forced' && p.mjd === at), 'the forced point above the exact value is kept')
})

test('CSV: a header and one row per point; SVG: one mark per point, legend, axes, title, headers', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const record = await upstreamRecord(sandbox, A)
  const total = record.lc.length + record.lcnondets.length + record.fp.length
  const csv = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=csv`, headers: demoAuth(app) })
  t.equal(csv.statusCode, 200)
  t.match(csv.headers['content-type'], /^text\/csv; charset=utf-8/)
  const lines = csv.body.split('\r\n')
  t.equal(lines[0], 'kind,mjd,date,filter,mag,mag_err,flux_ujy,flux_err_ujy,exposure')
  t.equal(lines.at(-1), '', 'ends with CRLF')
  t.equal(lines.length - 2, total, 'one row per point')
  const fp = record.fp[0] as Row
  t.ok(lines.includes(['forced', fp.mjd_obs, mjdToDate(fp.mjd_obs as number), fp.filter, fp.mag, (fp as unknown as { dm: number }).dm, fp.uJy, fp.duJy, fp.expname].join(',')), 'a forced row, every column')

  const svg = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(svg.statusCode, 200)
  t.match(svg.headers['content-type'], /^image\/svg\+xml/)
  t.equal(svg.headers['content-security-policy'], "default-src 'none'; style-src 'unsafe-inline'")
  t.ok(svg.headers.etag, 'a strong ETag')
  t.match(svg.headers['cache-control'], /max-age=/)
  const count = (kind: string): number => svg.body.split(`class="pt" data-kind="${kind}"`).length - 1
  t.equal(count('detection'), record.lc.length)
  t.equal(count('non_detection'), record.lcnondets.length)
  t.equal(count('forced'), record.fp.length)
  t.match(svg.body, new RegExp(`<text class="title"[^>]*>${record.object.atlas_designation} / ${record.object.other_designation} \\(${A}\\)</text>`))
  t.match(svg.body, /<g class="legend"><g class="item" data-filter="c"><circle[^>]*fill="#00a5c8"/, 'c is cyan in the legend')
  t.match(svg.body, /data-filter="o"><circle[^>]*fill="#f28c00"/, 'o is orange')
  t.match(svg.body, /class="axis y-mag"/)
  t.match(svg.body, /class="axis y-flux"/)
  t.match(svg.body, /class="date"[^>]*>\d{4}-\d\d-\d\d</, 'calendar dates under the MJD ticks')
  const again = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: { ...demoAuth(app), 'if-none-match': svg.headers.etag as string } })
  t.equal(again.statusCode, 304)
  const gz = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: { ...demoAuth(app), 'accept-encoding': 'gzip' } })
  t.equal(gz.headers['content-encoding'], 'gzip', 'SVG is compressed')
})

test('the SVG draws the brighter magnitude higher (inverted axis) and upper limits as triangles', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const record = await upstreamRecord(sandbox, A)
  const svg = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })).body
  const dets = [...svg.matchAll(/data-kind="detection"[^>]*>.*?<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => Number(m[2]))
  const mags = record.lc.map((r) => r.mag)
  const brightest = mags.indexOf(Math.min(...mags))
  const faintest = mags.indexOf(Math.max(...mags))
  t.ok((dets[brightest] as number) < (dets[faintest] as number), 'the brightest detection is above the faintest')
  t.equal([...svg.matchAll(/data-kind="non_detection"[^>]*>.*?<path d="M/g)].length, record.lcnondets.length)
})

test('economy: one object unit and one upstream call on a miss, none when the record is cached', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  sandbox.resetCalls()
  const units = async (): Promise<number> => (await app.inject({ url: '/v1/me', headers: demoAuth(app) })).json().usage.units_today
  const first = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(sandbox.calls.get('objects'), 1)
  t.equal(await units(), 1, 'one object unit, like GET /v1/objects/{id}')
  for (const format of ['json', 'csv', 'svg']) {
    const res = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=${format}`, headers: demoAuth(app) })
    t.equal(res.headers['x-cache'], 'HIT', `${format}: from the cache`)
  }
  const record = await app.inject({ url: `/v1/objects/${A}`, headers: demoAuth(app) })
  t.equal(record.headers['x-cache'], 'HIT', 'the same cached record serves the object read')
  t.equal(sandbox.calls.get('objects'), 1, 'no more upstream calls')
  t.equal(await units(), 5)
})

test('refusals: unknown object 404, bad format and id 400, no key 401', async (t) => {
  const { app } = await buildTestApp(t)
  const unknown = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.U}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(unknown.statusCode, 404)
  t.match(unknown.headers['content-type'], /^application\/problem\+json/)
  const format = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=png`, headers: demoAuth(app) })
  t.equal(format.statusCode, 400)
  t.equal(format.json().code, 'GW_VALIDATION')
  const id = await app.inject({ url: '/v1/objects/123/lightcurve', headers: demoAuth(app) })
  t.equal(id.statusCode, 400)
  const mjd = await app.inject({ url: `/v1/objects/${A}/lightcurve?mjd_min=-1`, headers: demoAuth(app) })
  t.equal(mjd.statusCode, 400)
  const anon = await app.inject({ url: `/v1/objects/${A}/lightcurve` })
  t.equal(anon.statusCode, 401)
})

test('svg helpers: ticks, labels, dates, escaping, scales', async (t) => {
  t.same(ticks(0, 10, 5), [0, 2, 4, 6, 8, 10])
  t.same(ticks(60743.2, 60871.9, 6), [60760, 60780, 60800, 60820, 60840, 60860])
  t.same(ticks(3, 3, 5), [3])
  t.same(ticks(Number.NaN, 1, 5), [])
  t.equal(tickLabel(0.25, 0.05), '0.25')
  t.equal(tickLabel(60800, 20), '60800')
  t.equal(mjdToDate(40587), '1970-01-01')
  t.equal(mjdToDate(60000.9), '2023-02-25')
  t.equal(esc('<a href="x">&\'</a>'), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;')
  t.same(padded([], 0.1, 1), [0, 1])
  t.same(padded([5], 0.1, 1), [4, 6])
  const s = linear(10, 20, 100, 0)
  t.equal(s(15), 50)
  t.equal(linear(3, 3, 0, 10)(3), 5, 'a zero-width domain maps to the middle')
})

test('ticks end when an axis spans a few ulps of its values', async (t) => {
  // Two points 2^-36 apart near MJD 60780 (a detection and its forced photometry, say): the step was
  // below half an ulp, `v += step` never moved, and the loop filled the heap until the process died.
  const a = 60780.00001
  const b = a + 2 ** -36
  const span = b - a
  const out = ticks(a - span * 0.03, b + span * 0.03, 7)
  t.ok(out.length >= 1 && out.length <= 8, `${out.length} ticks`)
  t.ok(out.every((v, i) => i === 0 || v > (out[i - 1] as number)), 'increasing, no repeats')
  t.ok(out.every((v) => v >= a - span && v <= b + span), 'inside the axis')
})

test('a format named like an Object member is a 400, not a 500', async (t) => {
  const { app } = await buildTestApp(t)
  for (const format of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
    for (const accept of ['*/*', 'application/json']) {
      const res = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=${format}`, headers: { ...demoAuth(app), accept } })
      t.equal(res.statusCode, 400, `format=${format}, Accept: ${accept}`)
      t.equal(res.json().code, 'GW_VALIDATION')
    }
  }
})

test('Accept chooses the rendering when format is absent; a format Accept excludes is a 406 before any charge', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  sandbox.resetCalls()
  const get = async (accept: string, query = '') => app.inject({ url: `/v1/objects/${A}/lightcurve${query}`, headers: { ...demoAuth(app), accept } })
  const units = async (): Promise<number> => (await app.inject({ url: '/v1/me', headers: demoAuth(app) })).json().usage.units_today
  const refused = await get('text/csv', '?format=svg')
  t.equal(refused.statusCode, 406)
  t.match(refused.headers['content-type'], /^application\/problem\+json/)
  t.equal(await units(), 0, 'the 406 charged nothing')
  t.equal(sandbox.calls.get('objects') ?? 0, 0, 'and called nothing')
  t.equal((await get('image/png')).statusCode, 406, 'no rendering the Accept header allows')
  t.match((await get('text/csv')).headers['content-type'], /^text\/csv/, 'Accept: text/csv alone gets CSV')
  t.match((await get('image/svg+xml')).headers['content-type'], /^image\/svg\+xml/)
  t.match((await get('*/*', '?format=csv')).headers['content-type'], /^text\/csv/)
})

test('without format, the highest q in Accept chooses the rendering (RFC 9110 §12.5.1); ties go to JSON, then CSV, then SVG', async (t) => {
  const { app } = await buildTestApp(t)
  const typeFor = async (accept: string): Promise<string> =>
    String((await app.inject({ url: `/v1/objects/${A}/lightcurve`, headers: { ...demoAuth(app), accept } })).headers['content-type']).split(';')[0] as string
  const cases: Array<[string, string, string]> = [
    ['text/csv, */*;q=0.1', 'text/csv', 'CSV asked for first, anything else at 0.1'],
    ['image/svg+xml,image/*,*/*;q=0.8', 'image/svg+xml', 'a browser\'s Accept for an image'],
    ['text/csv, application/json;q=0.5', 'text/csv', 'CSV at 1 over JSON at 0.5'],
    ['application/json;q=0.2, text/csv;q=0.3, image/svg+xml;q=0.4', 'image/svg+xml', 'the highest of three'],
    ['text/*;q=0.9, application/json;q=0.5', 'text/csv', 'a range matches CSV at its q'],
    ['text/csv, application/json', 'application/json', 'a tie: JSON first'],
    ['image/svg+xml, text/csv', 'text/csv', 'a tie: CSV before SVG'],
    ['text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8', 'application/json', 'a browser navigating: all at 0.8, JSON'],
    ['*/*', 'application/json', 'anything: JSON'],
    ['text/csv;q=0, */*', 'application/json', 'CSV refused, the rest equal']
  ]
  for (const [accept, type, why] of cases) t.equal(await typeFor(accept), type, `${why} (Accept: ${accept})`)
})

test('a rendering chosen by Accept says so in Vary (a cache must not give the CSV to a JSON request); one chosen by format does not', async (t) => {
  const { app } = await buildTestApp(t)
  const get = async (accept: string, query = '', more: Record<string, string> = {}) => app.inject({ url: `/v1/objects/${A}/lightcurve${query}`, headers: { ...demoAuth(app), accept, ...more } })
  const varyOf = (res: { headers: Record<string, unknown> }) => String(res.headers.vary).toLowerCase().split(/\s*,\s*/)
  const csv = await get('text/csv')
  t.ok(varyOf(csv).includes('accept'), `Vary: ${String(csv.headers.vary)}`)
  t.ok(varyOf(csv).includes('accept-encoding'), 'and Accept-Encoding still')
  const revalidated = await get('text/csv', '', { 'if-none-match': String(csv.headers.etag) })
  t.equal(revalidated.statusCode, 304)
  t.ok(varyOf(revalidated).includes('accept'), 'the 304 too')
  t.notOk(varyOf(await get('text/csv', '?format=csv')).includes('accept'), 'format= decides: Accept only refuses')
})

test('the light curve SVG colours a filter named like an object member as any unknown filter', async (t) => {
  const { lightCurveSvg } = await import('../../src/render/lightcurve.js')
  const point = (filter: string) => ({ kind: 'detection' as const, mjd: 60001.5, filter, mag: 18, mag_err: 0.1, flux_ujy: null, flux_err_ujy: null, exposure: 'x' })
  const svg = lightCurveSvg({ id: '1161600211221604900', name: null, other_name: null, points: [point('__proto__'), point('constructor'), point('w')] })
  t.notMatch(svg, /\[object Object\]|function Object/, 'no object member as a colour')
})

test('a point whose MJD has no calendar date (beyond year 9999) is kept with a null date, and the curve still renders', async (t) => {
  // Date covers about ±1e8 days around 1970, and YYYY-MM-DD only the years 0000–9999: a non-detection at
  // MJD 1e9 once made every format of the object a 500 until its record changed.
  const { app, sandbox } = await buildTestApp(t)
  const text = (await sandboxPost(sandbox, 'objects', { objects: A })).text
  const patched = text.replace(/("lcnondets":\s*\[\s*\{[^}]*?"mjd":\s*)[0-9.]+/, '$1' + '1000000000')
  t.not(patched, text, 'one non-detection moved to MJD 1e9')
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: patched, times: 1 })
  const json = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json`, headers: demoAuth(app) })
  t.equal(json.statusCode, 200)
  const far = ((json.json() as { points?: Point[] }).points ?? []).filter((p) => p.mjd === 1e9)
  t.same(far.map((p) => [p.kind, p.date]), [['non_detection', null]], 'the row, its MJD as sent, no date')
  const csv = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=csv`, headers: demoAuth(app) })
  t.equal(csv.statusCode, 200)
  t.ok(csv.body.split('\r\n').some((line) => line.startsWith('non_detection,1000000000,,')), 'the CSV row with an empty date')
  const svg = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(svg.statusCode, 200)
  t.match(svg.body, /MJD 1000000000[^(<]*<\/title>/, 'its tooltip has the MJD and no date')
  t.equal(mjdToDate(1e9), null)
  t.equal(mjdToDate(-1e9), null)
  t.equal(mjdToDate(2973483.99), '9999-12-31', 'the last day YYYY-MM-DD can write')
  t.equal(mjdToDate(2973484), null, 'and the day after it')
  t.equal(mjdToDate(-678941), '0000-01-01', 'the first')
  t.equal(mjdToDate(-678941.01), null, 'and the day before it')
})

test('upstream text with characters XML 1.0 forbids still makes a well-formed SVG (each shown as U+FFFD)', async (t) => {
  // A control character in a name or filter (or a lone surrogate) passed through esc made Chromium show a
  // parse error instead of the curve. The Char production of XML 1.0: tab, LF, CR, U+0020–U+D7FF,
  // U+E000–U+FFFD and U+10000 up; everything else cannot appear in the document, escaped or not.
  const notXmlChar = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u
  const { app, sandbox } = await buildTestApp(t)
  const text = (await sandboxPost(sandbox, 'objects', { objects: A })).text
  const patched = text
    .replace(/("atlas_designation":\s*)"[^"]*"/, '$1"ATLAS\\u0001x"')
    .replace(/("other_designation":\s*)"[^"]*"/, '$1"SN\\ud800\\u000b2024\\uffff"')
    .replace(/("lc":\s*\[\s*\{[^}]*?"filter":\s*)"[^"]*"/, '$1"o\\u0002"')
    .replace(/("lc":\s*\[\s*\{[^}]*?"expname":\s*)"[^"]*"/, '$1"e\\u0007\\ud83d\\ude00"')
  t.equal(patched.split('\\u').length - 1, 8, 'four upstream strings hold them')
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: patched, times: 1 })
  const svg = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(svg.statusCode, 200)
  const bad = notXmlChar.exec(svg.body)
  t.equal(bad === null ? null : `U+${(bad[0].codePointAt(0) as number).toString(16).padStart(4, '0')} at ${bad.index}`, null, 'only XML characters')
  t.ok(svg.body.includes('<text class="title" x="64" y="20">ATLAS\uFFFDx / SN\uFFFD\uFFFD2024\uFFFD ('), 'the names, each forbidden character as U+FFFD')
  t.ok(svg.body.includes('data-filter="o\uFFFD"'), 'the filter')
  t.ok(svg.body.includes('e\uFFFD\u{1F600}</title>'), 'the exposure: a surrogate pair is a character and stays')
  t.equal(esc('a\u0000b\u001fc\td\ne\rf\uFFFEg\uDC00h\uD83D\uDE00'), 'a\uFFFDb\uFFFDc\td\ne\rf\uFFFDg\uFFFDh\u{1F600}', 'esc: C0 controls but tab, LF and CR, U+FFFE, a lone surrogate; a pair stays')
})

/** The sandbox's record for `id` with `count` forced-photometry rows (one every 0.05 days from MJD 57000) instead of its own. */
async function withForcedRows (sandbox: Parameters<typeof sandboxPost>[0], id: string, count: number): Promise<string> {
  const text = (await sandboxPost(sandbox, 'objects', { objects: id })).text
  const rows = Array.from({ length: count }, (_, i) =>
    `{"mjd_obs":${(57000 + i * 0.05).toFixed(5)},"filter":"${i % 2 === 0 ? 'o' : 'c'}","expname":"02a${57000 + Math.floor(i / 20)}o${String(i % 10000).padStart(4, '0')}o","mag":18.1,"dm":0.05,"uJy":${100 + (i % 50)},"duJy":12.3}`)
  const big = text.replace(/"fp":\s*\[[^\]]*\]/, `"fp":[${rows.join(',')}]`)
  if (big === text) throw new Error('the record has no fp array to replace')
  return big
}

const lightCurveParses = async (app: Awaited<ReturnType<typeof buildTestApp>>['app']): Promise<number> => {
  const text = (await app.inject({ url: '/metrics' })).body
  return Number(/^gateway_lightcurve_parses_total (\d+)$/m.exec(text)?.[1] ?? Number.NaN)
}

test('a record is parsed into its light curve once per version: every format and mjd_min filters that one parse', async (t) => {
  // Each distinct mjd_min (and format) used to parse the whole cached record again: 5,000 forced rows
  // blocked the event loop ~650 ms per new mjd_min for the SVG, so one consumer could keep a replica busy.
  const { app, sandbox } = await buildTestApp(t)
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: await withForcedRows(sandbox, A, 500), times: 1 })
  const all = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json`, headers: demoAuth(app) })).json() as { points: Point[] }
  t.equal(all.points.filter((p) => p.kind === 'forced').length, 500)
  const queries = ['format=csv', 'format=svg', 'format=json&mjd_min=1', 'format=csv&mjd_min=1.5', 'format=svg&mjd_min=2', 'format=svg&mjd_min=57010', 'format=json&mjd_min=57010']
  for (const query of queries) {
    const res = await app.inject({ url: `/v1/objects/${A}/lightcurve?${query}`, headers: demoAuth(app) })
    t.equal(res.statusCode, 200, query)
  }
  const since = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json&mjd_min=57010`, headers: demoAuth(app) })).json() as { points: Point[] }
  t.equal(since.points.filter((p) => p.kind === 'forced').length, all.points.filter((p) => p.kind === 'forced' && p.mjd >= 57010).length, 'mjd_min still applies to the points')
  t.equal(await lightCurveParses(app), 1, `one parse for ${queries.length + 2} light curves of one record version`)
  await app.inject({ url: `/v1/objects/${FIXTURE_IDS.B}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(await lightCurveParses(app), 2, 'another record is another parse')
})

test('the SVG of a 20,000-point light curve draws at most SVG_MAX_POINTS of them, says so, and keeps every detection', async (t) => {
  const { SVG_MAX_POINTS } = await import('../../src/render/lightcurve.js')
  const { app, sandbox } = await buildTestApp(t)
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: await withForcedRows(sandbox, A, 20_000), times: 1 })
  const json = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json`, headers: demoAuth(app) })).json() as { points: Point[] }
  const total = json.points.length
  const detections = json.points.filter((p) => p.kind === 'detection').length
  t.equal(json.points.filter((p) => p.kind === 'forced').length, 20_000, 'JSON has every point')
  const csv = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=csv`, headers: demoAuth(app) })
  t.equal(csv.body.split('\r\n').length - 2, total, 'and so has the CSV')
  const svg = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })).body
  const drawn = svg.split('class="pt"').length - 1
  t.ok(drawn <= SVG_MAX_POINTS, `${drawn} marks drawn, at most ${SVG_MAX_POINTS}`)
  t.ok(drawn >= SVG_MAX_POINTS * 0.9, 'and not many fewer')
  t.equal(svg.split('class="pt" data-kind="detection"').length - 1, detections, 'every detection is drawn')
  t.match(svg, new RegExp(`data-drawn="${drawn}"`))
  t.match(svg, /data-forced="20000"/, 'the counts are the record\'s')
  t.match(svg, new RegExp(`<text class="note"[^>]*>${drawn} of ${total} points drawn`), 'a note says the curve is thinned')
  t.ok(svg.includes('MJD 57000 (') && svg.includes(`MJD ${(57000 + 19_999 * 0.05).toFixed(2)} (`), 'the first and last forced points are drawn')
  const small = (await app.inject({ url: `/v1/objects/${FIXTURE_IDS.B}/lightcurve?format=svg`, headers: demoAuth(app) })).body
  t.notMatch(small, /class="note"/, 'a curve drawn whole has no note')
})

test('tiny finite magnitudes, fluxes and MJDs (a span near 5e-324) leave every SVG coordinate finite, and every point is drawn', async (t) => {
  // The opposite end of the doubles from ±1e308: a span of a few subnormals. The tick step underflowed to
  // 0 (10 ** floor(log10(raw)) of a raw step below 1e-323 is 0), so every tick was NaN: 4 NaN for a
  // magnitude of 0 ± 1e-323 or a forced flux of 5e-323, 5 for MJDs 0 and 5e-323. Such a span is drawn
  // as a single value is: padded around it, the points in the middle.
  const detection = (mjd: number, mag: number, magerr: number): Row => ({ mjd, filter: 'o', expname: '02a60000o0001o', mag, magerr })
  const cases: Array<{ label: string, lc: Row[], fp: Row[] }> = [
    { label: 'a magnitude of 0 ± 1e-323', lc: [detection(60000, 0, 1e-323)], fp: [] },
    { label: 'a forced flux of 5e-323', lc: [], fp: [{ mjd_obs: 60000, filter: 'o', expname: '02a60000o0001o', mag: 18, uJy: 5e-323, duJy: 0 }] },
    { label: 'MJDs 0 and 5e-323', lc: [detection(0, 18, 0.1), detection(5e-323, 18.2, 0.1)], fp: [] }
  ]
  for (const c of cases) {
    await t.test(c.label, async (t) => {
      const { app, sandbox } = await buildTestApp(t)
      const text = (await sandboxPost(sandbox, 'objects', { objects: A })).text
      let patched = text
      for (const [key, rows] of [['lc', c.lc], ['lcnondets', []], ['fp', c.fp]] as const) {
        const before = patched
        patched = patched.replace(new RegExp(`"${key}":\\s*\\[[^\\]]*\\]`), `"${key}":${JSON.stringify(rows)}`)
        t.not(patched, before, `the ${key} array replaced`)
      }
      sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: patched, times: 1 })
      const json = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json`, headers: demoAuth(app) })).json() as { points: Point[] }
      t.equal(json.points.length, c.lc.length + c.fp.length, 'the record holds just these points')
      const svg = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
      t.equal(svg.statusCode, 200)
      const { numbers, bad } = svgNumbers(svg.body)
      t.equal(bad.length, 0, `no NaN or Infinity among ${numbers.length} coordinates (${bad.length} were)`)
      t.notMatch(svg.body, /NaN|Infinity/, 'nowhere in the document (tick labels included)')
      t.equal(svg.body.split('class="pt"').length - 1, json.points.length, 'every point is drawn')
      t.match(svg.body, /data-off-scale="0"/, 'none is off the scale')
    })
  }
})

test('svg helpers: a span of a few subnormals is a zero span', async (t) => {
  t.same(ticks(0, 5e-323, 5), [0], 'one tick, not NaN')
  t.same(ticks(-1e-323, 1e-323, 7), [-1e-323])
  t.same(padded([0, 5e-323], 0.08, 0.5), [-0.5, 0.5], 'padded as a single value')
  t.equal(linear(0, 5e-324, 0, 10)(0), 5, 'the middle of the range')
  t.same(ticks(0, 1e-299, 5), [0, 2e-300, 4e-300, 6e-300, 8e-300, 1e-299], 'a span of 1e-299 still gets round ticks')
})

test('magnitudes, errors and fluxes near ±1e308 leave every SVG coordinate finite: such points are not drawn and a note counts them', async (t) => {
  // Finite in the record, but the axis span (1e308 − −1e308, or 18 + an error of 1.5e308) overflowed to
  // Infinity and the scale made the coordinates NaN; an MJD of −1.7e308 alone overflowed the x scale's
  // product (Infinity): 170 of 239 coordinates here. Such a point is left out of the axes and the marks.
  const { app, sandbox } = await buildTestApp(t)
  const text = (await sandboxPost(sandbox, 'objects', { objects: A })).text
  const record = JSON.parse(text) as UpstreamRecord[]
  const rec = record[0] as UpstreamRecord
  const rows = rec.lc
  t.ok(rows.length >= 4 && rec.fp.length >= 3 && rec.lcnondets.length >= 1, 'enough rows to patch')
  ;(rows[0] as Row).mag = 1e308
  ;(rows[1] as Row).mag = -1e308
  ;(rows[2] as Row).magerr = 1.5e308
  ;(rec.fp[0] as Row).uJy = -1.7e308
  ;(rec.fp[1] as Row).duJy = 1e308
  ;(rec.fp[2] as Row).mjd_obs = 1.7e308
  ;(rec.lcnondets[0] as Row).mjd = -1.7e308
  // The record's ids are bigger than 2^53: put the patched arrays back into the text, leaving the ids as sent.
  let patched = text
  for (const key of ['lc', 'lcnondets', 'fp'] as const) {
    const before = patched
    patched = patched.replace(new RegExp(`"${key}":\\s*\\[[^\\]]*\\]`), `"${key}":${JSON.stringify(rec[key])}`)
    t.not(patched, before, `the ${key} array replaced`)
  }
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 200, body: patched, times: 1 })
  const json = (await app.inject({ url: `/v1/objects/${A}/lightcurve?format=json`, headers: demoAuth(app) })).json() as { points: Point[] }
  t.ok(json.points.some((p) => p.mag === 1e308) && json.points.some((p) => p.flux_ujy === -1.7e308), 'JSON carries the values as sent')
  const svg = await app.inject({ url: `/v1/objects/${A}/lightcurve?format=svg`, headers: demoAuth(app) })
  t.equal(svg.statusCode, 200)
  const { numbers, bad } = svgNumbers(svg.body)
  t.equal(bad.length, 0, `no NaN or Infinity among ${numbers.length} coordinates (${bad.length} were)`)
  t.notMatch(svg.body, /NaN|Infinity/, 'nowhere in the document')
  const total = json.points.length
  const drawn = svg.body.split('class="pt"').length - 1
  t.equal(drawn, total - 7, 'the seven points off the scale are not drawn, every other one is')
  t.match(svg.body, /data-off-scale="7"/)
  t.match(svg.body, new RegExp(`<text class="note"[^>]*>${drawn} of ${total} points drawn; 7 off the scale`), 'a note says so')
  t.match(svg.body, /class="axis y-mag"><line class="grid"[^>]*\/><text[^>]*>1\d(\.\d+)?</, 'the magnitude axis is the other points\' (tens)')
  t.match(svg.body, /data-detections="\d+"/, 'the counts are still every point\'s')
  const small = (await app.inject({ url: `/v1/objects/${FIXTURE_IDS.B}/lightcurve?format=svg`, headers: demoAuth(app) })).body
  t.match(small, /data-off-scale="0"/, 'an ordinary curve has none off the scale')
})
