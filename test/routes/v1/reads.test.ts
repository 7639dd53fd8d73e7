import { test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS, sandboxPost } from '../../helper.js'
import { parseLossless } from '../../../src/lib/json.js'

const { A, B, C } = FIXTURE_IDS

test('cone: nearest, all and count in the v1 shape; radius and mode checked first', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const nearest = await app.inject({ url: '/v1/cone?ra=244.00092&dec=22.26801&radius=5&mode=nearest', headers: auth })
  t.equal(nearest.statusCode, 200)
  t.same(nearest.json().results.map((h: { id: string }) => h.id), [A])
  t.same(Object.keys(nearest.json().results[0]).sort(), ['id', 'name', 'separation_arcsec'])
  const all = (await app.inject({ url: '/v1/cone?ra=244.00092&dec=22.26801&radius=20&mode=all', headers: auth })).json()
  t.same(all.results.slice(0, 2).map((h: { id: string }) => h.id), [A, B], 'sorted by separation, ids exact')
  const direct = parseLossless((await sandboxPost(sandbox, 'cone', { ra: '244.00092', dec: '22.26801', radius: '20', requestType: 'all' })).text) as Array<{ object: bigint }>
  t.same(all.results.map((h: { id: string }) => h.id), direct.map((h) => String(h.object)), 'same hits as the upstream, digit for digit')
  const count = (await app.inject({ url: '/v1/cone?ra=244.00092&dec=22.26801&radius=20&mode=count', headers: auth })).json()
  t.equal(count.count, direct.length)
  t.notOk('results' in count)
  const none = (await app.inject({ url: '/v1/cone?ra=100&dec=-60&radius=5&mode=nearest', headers: auth })).json()
  t.same(none.results, [])
  sandbox.resetCalls()
  for (const q of ['ra=1&dec=1&radius=301', 'ra=1&dec=1&radius=0', 'ra=1&dec=91&radius=5', 'ra=1&dec=1&radius=5&mode=Nearest', 'dec=1&radius=5']) {
    const res = await app.inject({ url: `/v1/cone?${q}`, headers: auth })
    t.equal(res.statusCode, 400, q)
    t.equal(res.json().code, 'GW_VALIDATION')
  }
  t.equal(sandbox.totalCalls(), 0)
})

test('lists: catalogue, members with local filters, unknown names', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const catalogue = (await app.inject({ url: '/v1/lists', headers: auth })).json().lists
  t.ok(catalogue.some((l: { name: string, kind: string }) => l.name === 'eyeball' && l.kind === 'detection'))
  t.ok(catalogue.some((l: { name: string, id: number, kind: string }) => l.name === 'vra' && l.id === 73 && l.kind === 'custom'))

  const good = await app.inject({ url: '/v1/lists/good/objects', headers: auth })
  t.equal(good.statusCode, 200)
  const rows = good.json().objects as Array<{ id: string, vra: number, followup_flag_date: string, sherlockClassification: string }>
  t.ok(rows.length > 0)
  t.ok(rows.every((r) => /^\d{19}$/.test(r.id)), 'row ids are strings')
  const direct = parseLossless((await sandboxPost(sandbox, 'objectlist', { objectlistid: '2' })).text) as Array<{ id: bigint }>
  t.same(rows.map((r) => r.id), direct.map((r) => String(r.id)), 'the same ids as the upstream, digit for digit')
  const vras = rows.map((r) => r.vra).filter((v) => typeof v === 'number').sort((a, b) => a - b)
  const mid = vras[Math.floor(vras.length / 2)] as number
  sandbox.resetCalls()
  const filtered = (await app.inject({ url: `/v1/lists/good/objects?vra_gte=${mid}`, headers: auth })).json()
  t.same(filtered.objects.map((r: { id: string }) => r.id), rows.filter((r) => typeof r.vra === 'number' && r.vra >= mid).map((r) => r.id))
  const cls = rows[0]?.sherlockClassification as string
  const byClass = (await app.inject({ url: `/v1/lists/good/objects?sherlock_class=${encodeURIComponent(cls)}`, headers: auth })).json()
  t.ok(byClass.objects.length > 0 && byClass.objects.every((r: { sherlockClassification: string }) => r.sherlockClassification === cls))
  const future = (await app.inject({ url: '/v1/lists/good/objects?since=2100-01-01', headers: auth })).json()
  t.equal(future.count, 0)
  t.equal(sandbox.calls.get('objectlist') ?? 0, 0, 'every variant was served from the one wide upstream read')

  const unknown = await app.inject({ url: '/v1/lists/nope/objects', headers: auth })
  t.equal(unknown.statusCode, 404, 'an unknown list is not found, as the README says')
  t.equal(unknown.json().code, 'GW_NOT_FOUND')
  t.equal((await app.inject({ url: '/v1/lists/good/objects?since=yesterday', headers: auth })).statusCode, 400)
})

test('custom lists: members and the lists of an object', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const members = (await app.inject({ url: '/v1/custom-lists/vra/objects', headers: auth })).json()
  t.ok(members.objects.some((r: { transient_object_id: string }) => r.transient_object_id === C))
  const lists = (await app.inject({ url: `/v1/objects/${C}/custom-lists`, headers: auth })).json()
  t.same(lists.lists, [{ name: 'vra', group_id: 73 }])
  t.equal((await app.inject({ url: '/v1/custom-lists/good/objects', headers: auth })).statusCode, 404, 'a detection list is not a custom list')
})

test('VRA tables: since, ids, after_id and debug applied locally', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const scores = (await app.inject({ url: '/v1/vra/scores', headers: auth })).json()
  t.ok(scores.count > 0)
  t.ok(scores.rows.every((r: { transient_object_id: string }) => typeof r.transient_object_id === 'string'))
  const forB = (await app.inject({ url: `/v1/vra/scores?ids=${B}`, headers: auth })).json()
  t.ok(forB.count >= 1 && forB.rows.every((r: { transient_object_id: string }) => r.transient_object_id === B))
  const maxId = Math.max(...scores.rows.map((r: { id: number }) => r.id))
  t.equal((await app.inject({ url: `/v1/vra/scores?after_id=${maxId}`, headers: auth })).json().count, 0)
  t.equal((await app.inject({ url: '/v1/vra/scores?since=2100-01-01', headers: auth })).json().count, 0)
  const todo = (await app.inject({ url: '/v1/vra/todo', headers: auth })).json()
  t.ok(todo.rows.some((r: { transient_object_id: string }) => r.transient_object_id === C))
  const ranks = (await app.inject({ url: `/v1/vra/ranks?ids=${B}`, headers: auth })).json()
  t.ok(ranks.count >= 1)
})

test('crossmatches by name, in the {results: {name: rows}} shape', async (t) => {
  const { app } = await buildTestApp(t)
  const res = await app.inject({ url: '/v1/crossmatches?names=2025abc,NOPE', headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body.results), ['2025abc', 'NOPE'])
  t.equal(body.results['2025abc'][0].transient_object_id, A)
  t.same(body.results.NOPE, [])
})

test('crossmatches: a name like __proto__ keeps its key and rows in results', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const row = `{"id":88,"transient_object_id":${A},"external_designation":"__proto__","matched_list":"Transient Name Server","type":"SN"}`
  sandbox.inject({ endpoint: 'externalxmlist', kind: 'status', status: 200, body: `[[${row}],[]]`, contentType: 'application/json' })
  const res = await app.inject({ url: '/v1/crossmatches?names=__proto__,2018cow', headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  // Parsed by hand: JSON.parse would make "__proto__" an own key too, but the point is the text sent.
  t.match(res.body, /^\{"results":\{"__proto__":\[\{"id":88,/)
  t.same(Object.keys(res.json().results), ['__proto__', '2018cow'])
  const name = '__proto__'
  t.equal(res.json().results[name][0].transient_object_id, A)
})

test('reads carry cache headers; If-None-Match gives 304', async (t) => {
  const { app } = await buildTestApp(t)
  const auth = demoAuth(app)
  const first = await app.inject({ url: '/v1/lists/good/objects', headers: auth })
  t.equal(first.headers['x-cache'], 'MISS')
  const etag = String(first.headers.etag)
  t.match(etag, /^"[^"]+"$/)
  t.match(String(first.headers['cache-control']), /max-age=\d+/)
  const second = await app.inject({ url: '/v1/lists/good/objects', headers: { ...auth, 'if-none-match': etag } })
  t.equal(second.statusCode, 304)
  t.equal(second.headers['x-cache'], 'HIT')
  const other = await app.inject({ url: '/v1/lists/good/objects?vra_gte=100', headers: { ...auth, 'if-none-match': etag } })
  t.equal(other.statusCode, 200, 'different bytes, different ETag')
})
