// Compat reads against the upstream's own semantics: VRA table rows in the order the ids were asked
// (repeated for a repeated id), and answers the gateway knows without asking the upstream (ids that
// cannot exist, NaN coordinates, too many ids) given locally, byte for byte, with no upstream call.
import { test, type Test } from 'tap'
import { FIXTURE_IDS, demoAuth } from '../../helper.js'
import { rowIds, startDialects, type Dialects, type Payload } from './dialect-helper.js'

const { A, B, C, D, U } = FIXTURE_IDS
// Integers DRF and Python's int() accept that no ATLAS id can be (ids are 19-digit positive integers).
const IMPOSSIBLE = ['12345', '-1', '0', '18446744073709551616', '999999999999999999', '10000000000000000000']
const STAMP = '2026-01-02T00:00:00Z'

/** The same rows on both sandboxes, written before the gateway reads anything (so nothing is cached). */
async function seedVraRows (d: Dialects): Promise<void> {
  for (const sandbox of [d.behind, d.direct]) {
    const send = async (endpoint: string, form: Record<string, string>) => {
      const res = await fetch(`${sandbox.baseUrl}${endpoint}/`, {
        method: 'POST',
        headers: { authorization: `Token ${sandbox.tokens.write}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(form).toString()
      })
      if (res.status !== 201) throw new Error(`seeding ${endpoint}: ${res.status}`)
    }
    // B already has a score row and a rank row, and C is queued: these land after them in table order.
    await send('vrascores', { objectid: A, preal: '0.5', insertdate: STAMP })
    await send('vrascores', { objectid: A, preal: '0.6', insertdate: STAMP })
    await send('vrarank', { objectid: A, rank: '2.5', insertdate: STAMP })
    await send('vratodo', { objectid: D, insertdate: STAMP })
  }
}

async function same (t: Test, d: Dialects, endpoint: string, payload: Payload, what: string): Promise<string> {
  const ours = await d.gateway(endpoint, payload)
  const theirs = await d.upstream(endpoint, payload)
  t.equal(ours.status, theirs.status, `${what}: status ${theirs.status}`)
  t.equal(ours.body, theirs.body, `${what}: same bytes`)
  return ours.body
}

test('VRA tables with objects=: rows grouped in the order asked, a repeated id repeats its rows', async (t) => {
  const d = await startDialects(t)
  await seedVraRows(d)
  const cases: Array<[string, string[], string[]]> = [
    // endpoint, ids asked, the transient_object_id of each row in the answer
    ['vrascoreslist', [A, B], [A, A, B]],
    ['vrascoreslist', [B, A], [B, A, A]],
    ['vrascoreslist', [B, B], [B, B]],
    ['vrascoreslist', [A, U, B, A], [A, A, B, A, A]],
    ['vratodolist', [D, C], [D, C]],
    ['vratodolist', [C, C, D], [C, C, D]],
    ['vraranklist', [A, B], [A, B]],
    ['vraranklist', [B, A, B], [B, A, B]]
  ]
  for (const [endpoint, ids, rows] of cases) {
    const what = `${endpoint} objects=${ids.map((id) => Object.entries(FIXTURE_IDS).find(([, v]) => v === id)?.[0]).join(',')}`
    const body = await same(t, d, endpoint, { form: { objects: ids.join(',') } }, what)
    t.strictSame(rowIds(body), rows, `${what}: rows in the order asked`)
  }
  // GET reads the query string the same way.
  const get = await d.gateway('vraranklist', { query: { objects: `${A},${B}` } })
  t.strictSame(rowIds(get.body), [A, B], 'GET: rows in the order asked')
})

test('objects/: ids that cannot exist get the upstream\'s placeholder, without an upstream call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  for (const id of IMPOSSIBLE) await same(t, d, 'objects', { form: { objects: id } }, `objects=${id}`)
  await same(t, d, 'objects', { form: { objects: IMPOSSIBLE.join(',') } }, 'all of them in one request')
  await same(t, d, 'objects', { json: '{"objects": -7, "mjd": 0}' }, 'a JSON number')
  await same(t, d, 'objects', { query: { objects: '12345' } }, 'GET objects=12345')
  // Over the id limit: the upstream's "Max number" reply, also without a call.
  await same(t, d, 'objects', { form: { objects: Array.from({ length: 50_001 }, () => '1').join(',') } }, '50,001 ids')
  t.equal(d.behind.totalCalls(), 0, 'none of these reached the upstream')

  // Mixed with real ids: only the ids that can exist are fetched, in one call; the order and repeats stay.
  const mixed = await same(t, d, 'objects', { form: { objects: [A, '12345', A, '0'].join(',') } }, 'real and impossible ids mixed')
  t.match(mixed, /^\[\{"object":\{"id":1161600211221604900,/, 'the real record first')
  t.equal(d.behind.totalCalls(), 1, 'one call for the real id')
  t.equal(d.behind.received.at(-1)?.body, `objects=${A}`, 'asking for the real id only')
  // Python's int() spellings of a real id (sign, leading zero) are that id, as upstream reads them.
  await same(t, d, 'objects', { form: { objects: ` +${A} , 0${B}` } }, 'int() spellings of real ids')
})

test('objects/ with an mjd of more than six decimals: the same rows as upstream (lc at six decimals, fp exact)', async (t) => {
  const d = await startDialects(t)
  const record = JSON.parse((await d.upstream('objects', { form: { objects: A } })).body) as Array<{ lc: Array<{ mjd: number }> }>
  const at = record[0]?.lc[2]?.mjd ?? 0
  // 4e-7 below a detection's MJD: the upstream's '%f' threshold is that MJD, so the detection goes.
  const body = await same(t, d, 'objects', { form: { objects: A, mjd: String(at - 4e-7) } }, `mjd=${at - 4e-7}`)
  t.notMatch(body, new RegExp(`"mjd":${at},`), 'the detection at the six-decimal threshold is not there')
})

test('objects/: a repeated id (in any spelling) costs one object unit, as in v1', async (t) => {
  const d = await startDialects(t)
  const me = async (): Promise<number> => (await d.app.inject({ url: '/v1/me', headers: { authorization: `Bearer ${d.app.consumers.demoKey ?? ''}` } })).json().usage.units_today
  const before = await me()
  await same(t, d, 'objects', { form: { objects: [A, A, `0${A}`, `+${A}`, B].join(',') } }, 'A four times, B once')
  t.equal(await me() - before, 2, 'two distinct ids, two units (was one per token: 5)')
})

test('VRA tables and objectgroupslist: ids that cannot exist have no rows, answered without a call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  for (const endpoint of ['vrascoreslist', 'vratodolist', 'vraranklist']) {
    await same(t, d, endpoint, { form: { objects: IMPOSSIBLE.join(',') } }, `${endpoint} impossible ids`)
    await same(t, d, endpoint, { form: { objects: '12345,ATLAS18qqn, ,x' } }, `${endpoint} impossible and non-integer ids`)
  }
  await same(t, d, 'vrascoreslist', { form: { objects: '-1', debug: 'true' } }, 'vrascoreslist with debug')
  for (const id of IMPOSSIBLE) await same(t, d, 'objectgroupslist', { form: { objectid: id } }, `objectgroupslist objectid=${id}`)
  t.equal(d.behind.totalCalls(), 0, 'none of these reached the upstream')

  // With a real id among them the table is read (once per table), and only the real id's rows come back.
  const body = await same(t, d, 'vrascoreslist', { form: { objects: `12345,${B},-1` } }, 'vrascoreslist impossible and real ids')
  t.strictSame(rowIds(body), [B])
  // Both filters (or neither) mean the whole table upstream, whatever the id: that needs the table.
  await same(t, d, 'objectgroupslist', { form: { objectid: '-1', objectgroupid: '73' } }, 'objectgroupslist both filters')
  t.equal(d.behind.totalCalls(), 2, 'one call per table')
})

test('cone/: NaN finds nothing, answered locally; infinite coordinates never reach the upstream', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  const base = { ra: '244.00092', dec: '22.26801', radius: '5' }
  for (const requestType of ['nearest', 'all', 'count']) {
    await same(t, d, 'cone', { form: { ...base, ra: 'nan', requestType } }, `ra=nan ${requestType}`)
    await same(t, d, 'cone', { form: { ...base, dec: 'NaN', requestType } }, `dec=NaN ${requestType}`)
    await same(t, d, 'cone', { form: { ...base, radius: 'nan', requestType } }, `radius=nan ${requestType}`)
    await same(t, d, 'cone', { form: { ...base, radius: '-inf', requestType } }, `radius=-inf ${requestType}`)
    await same(t, d, 'cone', { form: { ...base, radius: '-1', requestType } }, `radius=-1 ${requestType}`)
  }
  await same(t, d, 'cone', { query: { ...base, ra: 'nan', requestType: 'all' } }, 'GET ra=nan')
  await same(t, d, 'cone', { form: { ...base, radius: 'inf', requestType: 'all' } }, 'radius=inf is over the limit')
  // The upstream answers an infinite coordinate with a 500 page (a math domain error); the gateway
  // refuses it in DRF's words instead, as it does for its other 500-page inputs.
  for (const field of ['ra', 'dec']) {
    for (const value of ['inf', '-Infinity']) {
      const ours = await d.gateway('cone', { form: { ...base, [field]: value, requestType: 'all' } })
      t.equal(ours.status, 400, `${field}=${value}: 400`)
      t.equal(ours.body, JSON.stringify({ [field]: ['A valid number is required.'] }))
      const theirs = await d.upstream('cone', { form: { ...base, [field]: value, requestType: 'all' } })
      t.equal(theirs.status, 500, `${field}=${value}: the upstream's own answer is a 500 page`)
      t.match(theirs.contentType, /^text\/html/)
    }
  }
  t.equal(d.behind.totalCalls(), 0, 'none of these reached the upstream')
})

test('a NUL character in a text field is DRF\'s 400, as upstream, without a call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  t.equal(await same(t, d, 'externalxmlist', { form: { externalObjects: '2025abc\u0000' } }, 'externalObjects with a NUL'),
    '{"externalObjects":["Null characters are not allowed."]}')
  t.equal(await same(t, d, 'vraranklist', { query: { objects: `${A}\u0000` } }, 'GET objects with a NUL'),
    '{"objects":["Null characters are not allowed."]}')
  const res = await d.gateway('externalxmlist', { json: '{"externalObjects": "a\\u0000b"}' })
  t.equal(res.status, 400)
  t.equal(res.body, '{"externalObjects":["Null characters are not allowed."]}')
  t.equal(d.behind.totalCalls(), 0, 'none of these reached the upstream')
})

// Group and list ids are integers of any size to the upstream. They went through Number(), so above 2^53
// the upstream was sent another id (9007199254740993 became ...992) and 10^23 became `1e+23`.
test('group and custom-list ids of any size reach the upstream exactly as sent', async (t) => {
  const d = await startDialects(t)
  const lastField = (endpoint: string, name: string): string | null => {
    const hit = [...d.behind.received].reverse().find((r) => r.endpoint === endpoint)
    return hit === undefined ? null : new URLSearchParams(hit.body).get(name)
  }
  for (const id of ['9007199254740993', '100000000000000000000000']) {
    await same(t, d, 'objectgroupslist', { form: { objectgroupid: id } }, `objectgroupslist objectgroupid=${id}`)
    t.equal(lastField('objectgroupslist', 'objectgroupid'), id, `objectgroupid=${id} sent as it came`)
    await same(t, d, 'objectlist', { form: { objectlistid: id, getcustomlist: 'true' } }, `objectlist custom ${id}`)
    t.equal(lastField('objectlist', 'objectlistid'), id, `objectlistid=${id} sent as it came`)
  }
})

// The official client form-encodes the commas (%2C): 22 bytes an id, so 50,001 ids are over the gateway's
// 1 MiB default body limit. The gateway answered 413 where the upstream gives its "Max number" info; the
// upstream's own limit is Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) for a form.
test('objects/: a form up to Django\'s 2.5 MiB is read as the upstream reads it; a bigger one is refused as Django refuses it', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  const ids = (n: number) => Array.from({ length: n }, () => U).join(',')
  await same(t, d, 'objects', { form: { objects: ids(50_001) } }, '50,001 ids, commas encoded (1.1 MB)')
  await same(t, d, 'objects', { form: { objects: ids(119_000) } }, '119,000 ids, just under 2.5 MiB')
  t.equal(d.behind.totalCalls(), 0, 'over the id limit: answered without a call')
  // Over 2.5 MiB Django refuses a form (RequestDataTooBig, a 400 page): the gateway's 400 for it.
  const ours = await d.gateway('objects', { form: { objects: ids(120_000) } })
  const theirs = await d.upstream('objects', { form: { objects: ids(120_000) } })
  t.equal(theirs.status, 400, 'the upstream refuses a form over 2.5 MiB')
  t.equal(ours.status, 400, 'so does the gateway')
  t.equal(ours.body, '{"detail":"Bad request."}', 'in the words it gives Django\'s other refused forms')
  t.equal(d.behind.totalCalls(), 0, 'without a call')
})

// Django's query string is everything after the first `?`; a second `?` is part of a value. The gateway
// cut the query there, so `objectlistid=2?x=1` read as list 2 (a 200) where the upstream says 400.
test('a query string is everything after the first `?`, a later `?` part of a value', async (t) => {
  const d = await startDialects(t)
  await same(t, d, 'objectlist', { rawQuery: 'objectlistid=2?x=1' }, 'objectlistid=2?x=1')
  await same(t, d, 'objects', { rawQuery: `objects=${A}&mjd=61000?` }, 'mjd=61000?')
  // A malformed id (the upstream's 500 page; deliberately a 400 here) is read whole, `?` and all.
  const malformed = await d.gateway('objects', { rawQuery: `objects=${A}?,${B}` })
  t.equal(malformed.body, `{"objects":["\\"${A}?\\" is not an ATLAS id (19 digits)."]}`, 'objects=A?,B')
  // The trailing-slash redirect keeps the whole query too.
  const res = await d.app.inject({ url: '/atlas/api/objectlist?objectlistid=2?x=1' })
  t.equal(res.statusCode, 301)
  t.equal(res.headers.location, '/atlas/api/objectlist/?objectlistid=2?x=1')
})

// DRF reads `?format=` from Django's QueryDict, whose get() is the last value; the gateway took the first.
test('`?format=` given twice: the last one counts, as in Django', async (t) => {
  const d = await startDialects(t)
  await same(t, d, 'objects', { rawQuery: `objects=${A}&format=xml&format=json` }, 'format=xml&format=json')
  await same(t, d, 'objects', { rawQuery: `objects=${A}&format=json&format=xml` }, 'format=json&format=xml')
  await same(t, d, 'objects', { rawQuery: `objects=${A}&format=xml&format=` }, 'format=xml&format=')
  await same(t, d, 'objects', { rawQuery: `objects=${A}&format=%6Ason` }, 'format=%6Ason')
  // Reading it builds the QueryDict, which Django refuses over 1,000 fields (its 400 page), POST or GET.
  const crowded = await d.app.inject({ method: 'POST', url: `/atlas/api/cone/?${'a=1&'.repeat(1001)}`, payload: '' })
  t.equal(crowded.statusCode, 400)
  t.equal(crowded.body, '{"detail":"Bad request."}')
  // parse_qsl counts one more field than there are `&`s, empty pairs included: a form of one id and
  // 1,000 `&` is 1,001 fields, refused upstream; the gateway skipped the empty ones and read it.
  for (const [amps, status] of [[1000, 400], [999, 200]] as const) {
    const payload = `objects=${U}${'&'.repeat(amps)}`
    const ours = await d.app.inject({ method: 'POST', url: '/atlas/api/objects/', headers: { authorization: `Token ${d.app.consumers.demoKey ?? ''}`, 'content-type': 'application/x-www-form-urlencoded' }, payload })
    const theirs = await fetch(`${d.direct.baseUrl}objects/`, { method: 'POST', headers: { authorization: `Token ${d.direct.tokens.write}`, 'content-type': 'application/x-www-form-urlencoded' }, body: payload })
    t.equal(theirs.status, status, `upstream: one id and ${amps} \`&\``)
    t.equal(ours.statusCode, status, `gateway: one id and ${amps} \`&\``)
  }
})

// A JSON string may hold a lone UTF-16 surrogate; building its cache key threw (URIError), a 500.
test('a lone surrogate in a JSON string is read as the upstream reads it, never a 500', async (t) => {
  const d = await startDialects(t)
  await same(t, d, 'externalxmlist', { json: '{"externalObjects":"\\ud83d"}' }, 'externalObjects "\\ud83d"')
  await same(t, d, 'externalxmlist', { json: '{"externalObjects":"2025abc,\\udc00x"}' }, 'a lone low surrogate among names')
})

// DRF's FloatField is Python's float(), which takes an underscore only between digits: `_5` and `n_an`
// are 400s upstream, where the gateway had read them as 5 and NaN.
test('a number with a misplaced underscore is DRF\'s 400, as upstream', async (t) => {
  const d = await startDialects(t)
  for (const [field, value] of [['radius', '_5'], ['radius', '5_'], ['radius', '1__0'], ['ra', 'n_an'], ['ra', 'in_f']] as const) {
    const body = await same(t, d, 'cone', { form: { ra: '244.00092', dec: '22.26801', radius: '5', requestType: 'count', [field]: value } }, `${field}=${value}`)
    t.equal(body, JSON.stringify({ [field]: ['A valid number is required.'] }))
  }
})

// The gateway read each VRA table "whole" by sending no datethreshold, which the upstream reads as
// 1970-01-01: a row written with an earlier insertdate (the writes pass it through) was in no answer
// the gateway derived from that read, though the upstream's own objects= read returns it.
test('VRA rows stamped before 1970 are in every answer derived from the whole table', async (t) => {
  const d = await startDialects(t)
  const { E } = FIXTURE_IDS
  const writes: Array<[string, Record<string, string>]> = [
    ['vrascores', { objectid: A, preal: '0.5', insertdate: '1969-12-31T23:59:59Z' }],
    ['vrarank', { objectid: A, rank: '3', insertdate: '1960-01-01T00:00:00Z' }],
    ['vratodo', { objectid: D, insertdate: '1965-06-01T00:00:00Z' }],
    // The earliest instant the gateway's whole-table read asks for: inclusive, as upstream.
    ['vrascores', { objectid: E, preal: '0.1', insertdate: '1000-01-01T00:00:00Z' }]
  ]
  for (const [endpoint, form] of writes) {
    t.equal((await d.gateway(endpoint, { form })).status, 201, `${endpoint} ${form.insertdate}: written through the gateway`)
    t.equal((await d.upstream(endpoint, { form })).status, 201, `${endpoint} ${form.insertdate}: the same row straight`)
  }
  const reads: Array<[string, string]> = [['vrascoreslist', `${A},${E}`], ['vraranklist', A], ['vratodolist', D]]
  for (const [endpoint, ids] of reads) {
    const body = await same(t, d, endpoint, { form: { objects: ids } }, `${endpoint} objects=${ids}`)
    t.strictSame(rowIds(body), ids.split(','), `${endpoint}: the backdated rows are there`)
    await same(t, d, endpoint, { form: { datethreshold: '1900-01-01T00:00:00Z' } }, `${endpoint} datethreshold=1900`)
    await same(t, d, endpoint, { form: {} }, `${endpoint} without a threshold (1970-01-01 upstream)`)
  }
  const v1 = async (path: string): Promise<{ count: number, rows: Array<{ timestamp: string }> }> =>
    (await d.app.inject({ url: path, headers: demoAuth(d.app) })).json()
  const scores = await v1(`/v1/vra/scores?ids=${A},${E}`)
  t.strictSame(scores.rows.map((r) => r.timestamp), ['1969-12-31T23:59:59Z', '1000-01-01T00:00:00Z'], 'v1 scores of A and E')
  t.strictSame((await v1(`/v1/vra/ranks?ids=${A}`)).rows.map((r) => r.timestamp), ['1960-01-01T00:00:00Z'], 'v1 rank of A')
  t.strictSame((await v1(`/v1/vra/todo?ids=${D}`)).rows.map((r) => r.timestamp), ['1965-06-01T00:00:00Z'], 'v1 to-do row of D')
  t.equal((await v1('/v1/vra/scores?since=1900-01-01T00:00:00Z')).count, (await v1('/v1/vra/scores')).count - 1, 'v1 since=1900: all but the row of year 1000')
})
