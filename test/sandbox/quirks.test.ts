// One case per quirk of the upstream a gateway must absorb (docs/architecture.md, "The upstream, in
// brief", lists them), run against a real sandbox over loopback HTTP.
import { test } from 'tap'
import { deriveToken } from '../../src/sandbox/auth.js'
import { call, post, startTestSandbox, type CallOptions } from '../fixtures/sandbox-client.js'
import { waitFor } from '../fixtures/wait.js'

const A = '1161600211221604900'
const B = '1161601191221611900'
const C = '1033249000275412900'
const D = '1123049421122328000'
const E = '1004244331411607400'
const U = '1132507360113744501'
const SEED = 11
const CONE = { ra: '244.00092', dec: '22.26801', radius: '5', requestType: 'nearest' }

test('failures come with success codes', async (t) => {
  const sb = await startTestSandbox(t, { seed: SEED, maxObjectsPerCall: 3 })
  const scores = await post(sb, 'vrascores/', { objectid: U })
  t.equal(scores.status, 201)
  t.strictSame(scores.json, { objectid: BigInt(U), info: 'Object does not exist.' })
  const group = await post(sb, 'objectgroups/', { objectid: A, objectgroupid: '999' })
  t.equal(group.status, 201)
  t.strictSame(group.json, { objectgroupid: 999, info: 'Object group ID does not exist.' })
  t.equal((await post(sb, 'vratodo/', { objectid: A })).status, 201)
  const dup = await post(sb, 'vratodo/', { objectid: A })
  t.equal(dup.status, 201)
  t.strictSame(dup.json, { objectid: BigInt(A), info: 'Duplicate row. Cannot add row.' })
  const detection = await post(sb, 'objectdetectionlist/', { objectid: A, objectlist: '5' })
  t.equal(detection.status, 200)
  t.strictSame(detection.json, { objectid: BigInt(A), info: 'Error updating row.' })
  const tooMany = await post(sb, 'objects/', { objects: [A, B, C, D].join(',') })
  t.equal(tooMany.status, 200)
  t.strictSame(tooMany.json, { info: 'Max number of objects for each requests is 3' })
  const placeholder = await post(sb, 'objects/', { objects: `${A},${U}` })
  t.equal(placeholder.status, 200)
  const records = placeholder.json as Array<Record<string, unknown>>
  t.equal(records.length, 2)
  t.equal(records[1]?.object, 'AtlasDiffObjects matching query does not exist.')
  t.equal(records[1]?.lc, null)
})

test('the default limit is 50,000 ids, worded with a thousands separator', async (t) => {
  const sb = await startTestSandbox(t, { objects: 10 })
  const res = await post(sb, 'objects/', { objects: Array.from({ length: 50001 }, () => A).join(',') })
  t.strictSame(res.json, { info: 'Max number of objects for each requests is 50,000' })
  sb.setOptions({ maxObjectsPerCall: 1 })
  t.strictSame((await post(sb, 'objects/', { objects: `${A},${A}` })).json, { info: 'Max number of objects for each requests is 1' })
})

test('objectgroupsdelete: 204 with no body, then 400 on a repeat', async (t) => {
  const sb = await startTestSandbox(t)
  const first = await post(sb, 'objectgroupsdelete/', { objectid: C, objectgroupid: '73' })
  t.equal(first.status, 204)
  t.equal(first.text, '')
  t.equal(first.headers['content-type'], undefined)
  const again = await post(sb, 'objectgroupsdelete/', { objectid: C, objectgroupid: '73' })
  t.equal(again.status, 400)
  t.strictSame(again.json, { objectgroupid: 73, objectid: BigInt(C), info: 'Object group ID does not exist or object ID does not exist.' })
  t.strictSame((await post(sb, 'objectgroupsdelete/', { objectid: U, objectgroupid: '73' })).json, { objectid: BigInt(U), info: 'Object does not exist.' })
  t.strictSame((await post(sb, 'objectgroupsdelete/', { objectid: A, objectgroupid: '999' })).json, { objectgroupid: 999, info: 'Object group ID does not exist.' })
})

test('one id per write: a comma list is a 400', async (t) => {
  const sb = await startTestSandbox(t)
  const res = await post(sb, 'objectgroups/', { objectid: `${A},${B}`, objectgroupid: '73' })
  t.equal(res.status, 400)
  t.strictSame(res.json, { objectid: ['A valid integer is required.'] })
  t.strictSame((await post(sb, 'objectgroupslist/', { objectid: `${A},${B}` })).json, { objectid: ['A valid integer is required.'] })
})

test('objectgroups success puts the object id under "objectgroupid"', async (t) => {
  const sb = await startTestSandbox(t)
  const res = await post(sb, 'objectgroups/', { objectid: A, objectgroupid: '16' })
  t.strictSame(res.json, { objectgroupid: BigInt(A), info: 'Row created.' })
  t.strictSame((await post(sb, 'objectgroups/', { objectid: A, objectgroupid: '16' })).json, { objectgroupid: BigInt(A), info: 'Duplicate row. Cannot add row.' })
  t.strictSame((await post(sb, 'objectgroups/', { objectid: U, objectgroupid: '16' })).json, { objectid: BigInt(U), info: 'Object does not exist.' })
  const members = await post(sb, 'objectgroupslist/', { objectgroupid: '16' })
  t.ok((members.json as Array<Record<string, unknown>>).some((r) => r.transient_object_id === BigInt(A)), 'later reads see the write')
})

test('write endpoints answer GET with a capital-E 200 stub', async (t) => {
  const sb = await startTestSandbox(t)
  for (const path of ['vrascores/', 'vratodo/', 'objectgroups/', 'objectgroupsdelete/', 'vrarank/']) {
    const res = await call(sb, 'GET', path, { token: 'read' })
    t.equal(res.status, 200, path)
    t.strictSame(res.json, { Error: 'GET is not implemented for this service.' }, path)
  }
})

test('objectdetectionlist: a GET by a read-only user writes', async (t) => {
  const sb = await startTestSandbox(t)
  t.strictSame((await post(sb, 'objectlist/', { objectlistid: '3' })).json, [], 'list 3 starts empty')
  t.equal((await post(sb, 'objectdetectionlist/', { objectid: E, objectlist: '3' }, 'read')).status, 403, 'POST needs write access')
  const res = await call(sb, 'GET', 'objectdetectionlist/', { token: 'read', query: { objectid: E, objectlist: '3' } })
  t.equal(res.status, 200)
  t.strictSame(res.json, { objectid: BigInt(E), info: 'Row created.' })
  const list = (await post(sb, 'objectlist/', { objectlistid: '3' })).json as Array<Record<string, unknown>>
  t.same(list.map((r) => r.id), [BigInt(E)], 'list 3 now holds E')
  const record = (await post(sb, 'objects/', { objects: E })).json as Array<{ object: Record<string, unknown> }>
  t.equal(record[0]?.object.detection_list_id, 3, 'the object record changed too')
})

test('auth: a read-only user writing gets 403, without WWW-Authenticate', async (t) => {
  const sb = await startTestSandbox(t)
  for (const [path, form] of [['vrascores/', { objectid: A }], ['vratodo/', { objectid: A }], ['objectgroups/', { objectid: A, objectgroupid: '73' }],
    ['objectgroupsdelete/', { objectid: C, objectgroupid: '73' }], ['vrarank/', { objectid: A, rank: '1' }], ['objectdetectionlist/', { objectid: A, objectlist: '4' }]] as const) {
    const res = await post(sb, path, form, 'read')
    t.equal(res.status, 403, path)
    t.equal(res.headers['www-authenticate'], undefined)
    t.strictSame(res.json, { detail: 'You do not have permission to perform this action.' })
  }
  t.equal((await post(sb, 'vrascores/', {}, 'write')).status, 400, 'a write user gets as far as validation')
  t.equal((await post(sb, 'vrascores/', { objectid: A }, 'staff')).status, 201, 'staff may write without a group')
})

test('bad input gives a 500 HTML page', async (t) => {
  const sb = await startTestSandbox(t)
  const bad = [
    await post(sb, 'objects/', { objects: 'abc' }),
    await post(sb, 'objects/', { objects: `${A},` }),
    await post(sb, 'objects/', { objects: `${A},,${B}` }),
    await post(sb, 'objectlist/', { objectlistid: '14' }),
    await post(sb, 'objectlist/', { objectlistid: '-15' }),
    await post(sb, 'objectgroupsdelete/', {}),
    await call(sb, 'POST', 'objectgroupsdelete/', { token: 'write', json: { objectid: 'x', objectgroupid: 73 } }),
    await call(sb, 'POST', 'auth-token/', { form: { username: 'sandbox_noprofile', password: sb.users.noprofile?.password ?? '' } })
  ]
  for (const res of bad) {
    t.equal(res.status, 500)
    t.equal(res.headers['content-type'], 'text/html; charset=utf-8')
    t.ok(res.text.includes('Error 500: Server Error'))
  }
})

test('negative list ids index from the end', async (t) => {
  const sb = await startTestSandbox(t)
  for (const [negative, positive] of [['-1', '13'], ['-12', '2'], ['-14', '0']]) {
    const a = await post(sb, 'objectlist/', { objectlistid: negative ?? '' })
    const b = await post(sb, 'objectlist/', { objectlistid: positive ?? '' })
    t.equal(a.status, 200)
    t.equal(a.text, b.text, `${negative} is list ${positive}`)
  }
})

test('non-JSON errors: 301, oversized form 400, 404 and 500 are HTML', async (t) => {
  const sb = await startTestSandbox(t)
  const redirect = await call(sb, 'GET', 'objects', { token: 'write', query: { objects: A } })
  t.equal(redirect.status, 301)
  t.equal(redirect.headers.location, `/api/objects/?objects=${A}`)
  t.equal(redirect.text, '')
  const big = await post(sb, 'objects/', { objects: A, pad: 'x'.repeat(2.6 * 1024 * 1024) })
  t.equal(big.status, 400)
  t.ok(big.text.includes('Error 400: Bad Request'))
  const missing = await call(sb, 'GET', 'nosuch/', { token: 'write' })
  t.equal(missing.status, 404)
  t.ok(missing.text.includes('Error 404: Page not found'))
  t.equal((await call(sb, 'GET', '/', {})).status, 404, 'outside the prefix')
  t.equal((await call(sb, 'GET', 'cone/extra/', {})).status, 404, 'below an endpoint')
})

// Django's QueryDict refuses more than 1,000 fields (TooManyFieldsSent, its 400 page), counted as
// parse_qsl counts them: one more than the number of `&`, empty pairs included.
test('more than 1,000 fields, in a query string or a form, is the 400 page', async (t) => {
  const sb = await startTestSandbox(t)
  for (const auth of [{ token: 'write' }, {}]) {
    const crowded = await call(sb, 'GET', `cone/?${Array.from({ length: 1001 }, (_, i) => `f${i}=1`).join('&')}`, auth)
    t.equal(crowded.status, 400, 'a query string of 1,001 fields')
    t.ok(crowded.text.includes('Error 400: Bad Request'))
  }
  const full = await call(sb, 'GET', `cone/?${'a=1&'.repeat(999)}a=1`, { token: 'write' })
  t.equal(full.status, 400, 'but 1,000 are read (the cone fields are missing)')
  t.match(full.json, { ra: ['This field is required.'] })
  const form = new URLSearchParams({ objects: A }).toString()
  const type = { 'Content-Type': 'application/x-www-form-urlencoded' }
  const padded = await call(sb, 'POST', 'objects/', { token: 'write', raw: form + '&'.repeat(1000), headers: type })
  t.equal(padded.status, 400, 'a form with 1,000 empty pairs after its one field')
  t.ok(padded.text.includes('Error 400: Bad Request'))
  const edge = await call(sb, 'POST', 'objects/', { token: 'write', raw: form + '&'.repeat(999), headers: type })
  t.equal(edge.status, 200, '999 `&` make 1,000 fields')
})

test('ignored parameters', async (t) => {
  const sb = await startTestSandbox(t)
  const plain = await post(sb, 'objectlist/', { objectlistid: '2' })
  const filtered = await post(sb, 'objectlist/', { objectlistid: '2', vra_gte: '100', sherlock_class: 'NOPE', ra_lte: '0' })
  t.equal(filtered.text, plain.text, 'objectlist filters are ignored')
  const ranks = await post(sb, 'vraranklist/', {})
  t.equal((await post(sb, 'vraranklist/', { idthreshold: '999999999999' })).text, ranks.text, 'vraranklist ignores idthreshold')
  const scores = await post(sb, 'vrascoreslist/', {})
  t.equal((await post(sb, 'vrascoreslist/', { objectid: U })).text, scores.text, 'vrascoreslist ignores objectid')
  t.equal((await post(sb, 'vrascoreslist/', { debug: 'true' })).text, scores.text, 'debug applies only with objects')
  t.strictSame((await post(sb, 'externalxmlist/', { externalobjects: '2025abc' })).json, [], 'lowercase externalobjects is ignored')
  const table = await post(sb, 'objectgroupslist/', {})
  t.equal((await post(sb, 'objectgroupslist/', { objectid: B, objectgroupid: '999' })).text, table.text, 'both filters: whole table')
  const rows = (await post(sb, 'vrascoreslist/', { objects: `${B},abc, ${U}` })).json as unknown[]
  t.equal(rows.length, 1, 'non-integer tokens of objects are skipped')
})

test('strict and inclusive bounds', async (t) => {
  const sb = await startTestSandbox(t)
  const rows = (await post(sb, 'objectlist/', { objectlistid: '2' })).json as Array<Record<string, unknown>>
  const a = rows.find((r) => r.id === BigInt(A))
  const flag = String(a?.followup_flag_date)
  const after = (await post(sb, 'objectlist/', { objectlistid: '2', datethreshold: flag })).json as Array<Record<string, unknown>>
  t.notOk(after.some((r) => r.id === BigInt(A)), 'objectlist datethreshold is strict (>)')
  const scores = (await post(sb, 'vrascoreslist/', {})).json as Array<Record<string, unknown>>
  const first = scores[0]
  const since = (await post(sb, 'vrascoreslist/', { datethreshold: String(first?.timestamp), idthreshold: String(first?.id) })).json as Array<Record<string, unknown>>
  t.ok(since.some((r) => r.id === first?.id), 'VRA lists are inclusive (>=) on time and id')
  const todo = (await post(sb, 'vratodolist/', {})).json as Array<Record<string, unknown>>
  const c = todo.find((r) => r.transient_object_id === BigInt(C))
  const todoSince = (await post(sb, 'vratodolist/', { datethreshold: String(c?.timestamp), idthreshold: C })).json as Array<Record<string, unknown>>
  t.ok(todoSince.some((r) => r.transient_object_id === BigInt(C)), 'vratodolist idthreshold compares object ids, inclusively')
})

test('objects mjd: lc and lcnondets keep mjd > value, fp keeps mjd_obs >= value', async (t) => {
  const sb = await startTestSandbox(t)
  type Rec = { lc: Array<{ mjd: number }>, lcnondets: Array<{ mjd: number }>, fp: Array<{ mjd_obs: number }> }
  const full = ((await post(sb, 'objects/', { objects: A })).json as Rec[])[0]
  const pivot = full?.lc[Math.floor(full.lc.length / 2)]?.mjd ?? 0
  t.ok(full?.fp.some((r) => r.mjd_obs === pivot), 'fp has a row at the same MJD as the lc row')
  const cut = ((await post(sb, 'objects/', { objects: A, mjd: String(pivot) })).json as Rec[])[0]
  t.ok(cut?.lc.every((r) => r.mjd > pivot), 'lc: strictly after')
  t.equal(cut?.lc.length, full?.lc.filter((r) => r.mjd > pivot).length)
  t.ok(cut?.lcnondets.every((r) => r.mjd > pivot), 'lcnondets: strictly after')
  t.ok(cut?.fp.some((r) => r.mjd_obs === pivot), 'fp: the row at the threshold is kept')
  t.equal(cut?.fp.length, full?.fp.filter((r) => r.mjd_obs >= pivot).length)
  // The lc and lcnondets SQL gets the threshold as '%f' text (six decimals); fp's ORM filter the value.
  const below = ((await post(sb, 'objects/', { objects: A, mjd: String(pivot - 0.0000004) })).json as Rec[])[0]
  t.notOk(below?.lc.some((r) => r.mjd === pivot), 'lc: just under the row, the six-decimal threshold is the row itself, which is dropped')
  t.equal(below?.lc.length, full?.lc.filter((r) => r.mjd > pivot).length)
  t.ok(below?.fp.some((r) => r.mjd_obs === pivot), 'fp: the exact value, under the row, keeps it')
  const above = ((await post(sb, 'objects/', { objects: A, mjd: String(pivot + 0.0000004) })).json as Rec[])[0]
  t.equal(above?.lc.length, full?.lc.filter((r) => r.mjd > pivot).length, 'lc: just over the row, the threshold is the row')
  t.notOk(above?.fp.some((r) => r.mjd_obs === pivot), 'fp: the exact value, over the row, drops it')
})

test('datetime input: date-only, no zone (UTC), offsets; bad formats are 400s', async (t) => {
  const sb = await startTestSandbox(t)
  const list = async (datethreshold: string): Promise<string> => (await post(sb, 'objectlist/', { objectlistid: '2', datethreshold })).text
  t.equal(await list('2025-06-03'), await list('2025-06-03T00:00:00Z'))
  t.equal(await list('2025-06-03 00:00'), await list('2025-06-03T00:00:00Z'))
  t.equal(await list('2025-06-03T02:00:00+02:00'), await list('2025-06-03T00:00:00.000000Z'))
  for (const bad of ['04/06/2025', '2025-13-01', '2025-02-30T00:00', '2025-06-03T25:00', '2025-06-03T00:00+24:00', 'yesterday']) {
    const res = await post(sb, 'objectlist/', { objectlistid: '2', datethreshold: bad })
    t.equal(res.status, 400, bad)
  }
})

test('requestType is case-sensitive', async (t) => {
  const sb = await startTestSandbox(t)
  const res = await post(sb, 'cone/', { ...CONE, requestType: 'ALL' })
  t.strictSame(res.json, { requestType: ['"ALL" is not a valid choice.'] })
})

test('19-digit ids come out as bare JSON integers, digit for digit; lc[].id repeats the object id', async (t) => {
  const sb = await startTestSandbox(t, { objects: 300 })
  const ids = sb.ids().slice(0, 200)
  const res = await post(sb, 'objects/', { objects: ids.join(',') })
  t.notMatch(res.text, /"\d{19}"/, 'no quoted ids')
  const records = res.json as Array<{ object: { id: unknown }, lc: Array<{ id: unknown }>, fp: Array<{ atlas_object_id: unknown }> }>
  t.strictSame(records.map((r) => r.object.id), ids)
  for (const r of records) {
    t.ok(r.lc.every((row) => row.id === r.object.id) && r.fp.every((row) => row.atlas_object_id === r.object.id))
    t.match(String(r.object.id), /^\d{19}$/)
  }
})

test('datetimes: Z on records, naive date_modified on main-list rows', async (t) => {
  const sb = await startTestSandbox(t)
  const main = (await post(sb, 'objectlist/', { objectlistid: '2' })).json as Array<Record<string, unknown>>
  t.match(String(main[0]?.date_modified), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/)
  t.match(String(main[0]?.followup_flag_date), /Z$/)
  const custom = (await post(sb, 'objectlist/', { objectlistid: '73', getcustomlist: 'true' })).json as Array<Record<string, unknown>>
  t.match(String(custom[0]?.date_modified), /Z$/)
})

test('token lifecycle and every 401 detail string', async (t) => {
  const sb = await startTestSandbox(t, { seed: SEED })
  const detail = async (opts: CallOptions): Promise<unknown> => {
    const res = await call(sb, 'POST', 'cone/', { form: CONE, ...opts })
    t.equal(res.status, 401)
    t.equal(res.headers['www-authenticate'], 'Token')
    return (res.json as { detail: unknown }).detail
  }
  t.equal(await detail({}), 'Authentication credentials were not provided.')
  t.equal(await detail({ headers: { Authorization: `Bearer ${sb.tokens.write}` } }), 'Authentication credentials were not provided.')
  t.equal(await detail({ token: '0'.repeat(40) }), 'Invalid token.')
  t.equal(await detail({ token: 'expired' }), 'Token has expired.')
  t.equal(await detail({ query: { token: 'a.b' } }), 'Invalid token format.')
  t.equal(await detail({ headers: { Authorization: 'Token' } }), 'Invalid token header. No credentials provided.')
  t.equal(await detail({ headers: { Authorization: 'Token a b' } }), 'Invalid token header. Token string should not contain spaces.')
  t.equal(await detail({ headers: { Authorization: 'Token \u00ff' } }), 'Invalid token header. Token string should not contain invalid characters.')
  t.equal(await detail({ token: deriveToken(SEED, 'sandbox_inactive') }), 'User inactive or deleted.')
  t.equal(await detail({ token: deriveToken(SEED, 'sandbox_noprofile') }),
    'Could not authenticate: Group has no profile. Please contact administrator.')

  // Using a token does not extend it; expiry is measured from creation.
  t.equal((await post(sb, 'cone/', CONE, 'read')).status, 200)
  sb.expireToken('read')
  t.equal(await detail({ token: 'read' }), 'Token has expired.')
  // Staff never expire in use.
  sb.expireToken('staff')
  t.equal((await post(sb, 'cone/', CONE, 'staff')).status, 200)

  const login = async (key: string): Promise<{ token: string, expires_in: number, refreshed: boolean }> => {
    const user = sb.users[key]
    const res = await call(sb, 'POST', 'auth-token/', { form: { username: user?.username ?? '', password: user?.password ?? '' } })
    t.equal(res.status, 200)
    return res.json as { token: string, expires_in: number, refreshed: boolean }
  }
  const writeKey = sb.tokens.write
  const same = await login('write')
  t.same([same.token, same.refreshed], [writeKey, false], 'a valid token comes back unchanged')
  t.ok(same.expires_in > 0 && same.expires_in <= 90 * 86400)
  const rotated = await login('read')
  t.equal(rotated.refreshed, true, 'an expired token is rotated')
  t.equal(sb.tokens.read, rotated.token, 'sandbox.tokens follows the rotation')
  const staff = await login('staff')
  t.equal(staff.refreshed, true, 'an old staff token is rotated too')
  const old = sb.tokens.write
  const fresh = sb.rotateToken('write')
  t.not(fresh, old)
  t.match(fresh, /^[0-9a-f]{40}$/)
  t.equal(await detail({ token: old }), 'Invalid token.', 'a rotated key is invalid everywhere')
  t.equal((await call(sb, 'POST', 'cone/', { form: CONE, query: { token: fresh } })).status, 200, '?token= works on API endpoints')
  t.equal((await call(sb, 'GET', 'vratodo/', { query: { token: fresh } })).status, 200)
  const first = await call(sb, 'POST', 'auth-token/', { form: { username: 'golden_newuser', password: sb.users.golden_newuser?.password ?? '' } })
  t.equal((first.json as { refreshed: boolean }).refreshed, true, 'a first token is "refreshed"')
})

test('auth-token: anonymous, Basic auth only, JSON or form, POST only', async (t) => {
  const sb = await startTestSandbox(t)
  const w = sb.users.write
  const basic = (text: string): Record<string, string> => ({ Authorization: `Basic ${text}` })
  const body = { username: w?.username ?? '', password: w?.password ?? '' }
  const viaJson = await call(sb, 'POST', 'auth-token/', { json: body })
  t.equal((viaJson.json as { token: string }).token, sb.tokens.write)
  const multipartLogin = await call(sb, 'POST', 'auth-token/', { multipart: body })
  t.equal(multipartLogin.status, 200)
  // ObtainAuthToken lists its parsers as form, multipart, JSON: a wildcard type picks the form parser.
  const form = new URLSearchParams(body).toString()
  for (const type of ['*/*', 'application/*']) {
    const wild = await call(sb, 'POST', 'auth-token/', { raw: form, headers: { 'Content-Type': type } })
    t.equal(wild.status, 200, `${type} with a form body logs in`)
    t.equal((wild.json as { token: string }).token, sb.tokens.write)
  }
  t.strictSame((await call(sb, 'POST', 'auth-token/', { raw: JSON.stringify(body), headers: { 'Content-Type': '*/*' } })).json,
    { username: ['This field is required.'], password: ['This field is required.'] }, '*/* with a JSON body is read as a form')
  t.match((await call(sb, 'POST', 'cone/', { token: 'write', raw: 'ra=1', headers: { 'Content-Type': '*/*' } })).json,
    { detail: /^JSON parse error/ }, 'the API views list JSON first')
  // One renderer, so no Vary: Accept; SessionAuthentication reads the session, so Vary: Cookie once
  // authentication has run (the Accept check comes before it).
  t.equal(viaJson.headers.vary, 'Cookie', 'a login: Vary: Cookie')
  t.equal((await call(sb, 'POST', 'auth-token/', { form: { username: 'x', password: 'y' } })).headers.vary, 'Cookie', 'a failed login')
  t.equal((await call(sb, 'GET', 'auth-token/', {})).headers.vary, 'Cookie', 'the 405')
  t.equal((await call(sb, 'POST', 'auth-token/', { form: body, headers: basic('abc') })).headers.vary, 'Cookie', 'a malformed Basic header')
  t.equal((await call(sb, 'OPTIONS', 'auth-token/', {})).headers.vary, 'Cookie', 'OPTIONS')
  const refused = await call(sb, 'POST', 'auth-token/', { form: body, headers: { Accept: 'text/html' } })
  t.equal(refused.status, 406)
  t.equal(refused.headers.vary, undefined, 'the 406: no Vary')
  t.equal((await call(sb, 'POST', 'cone/', { token: 'write', form: CONE })).headers.vary, 'Accept', 'the API views: Vary: Accept')
  const empty = await call(sb, 'POST', 'auth-token/', { raw: '', headers: { 'Content-Type': '*/*' } })
  t.strictSame(empty.json, { username: ['This field is required.'], password: ['This field is required.'] }, 'no body: empty data')
  const good = Buffer.from(`${body.username}:${body.password}`).toString('base64')
  t.equal((await call(sb, 'POST', 'auth-token/', { form: body, headers: basic(good) })).status, 200, 'valid Basic credentials')
  const failures: Array<[string, string]> = [
    ['a b', 'Invalid basic header. Credentials string should not contain spaces.'],
    ['abc', 'Invalid basic header. Credentials not correctly base64 encoded.'],
    [Buffer.from('nobody:x').toString('base64'), 'Invalid username/password.'],
    // ModelBackend does not authenticate an inactive user, so DRF's "User inactive or deleted." is never reached.
    [Buffer.from(`sandbox_inactive:${sb.users.inactive?.password ?? ''}`).toString('base64'), 'Invalid username/password.']
  ]
  for (const [value, message] of failures) {
    const res = await call(sb, 'POST', 'auth-token/', { form: body, headers: basic(value) })
    t.equal(res.status, 403)
    t.equal(res.headers['www-authenticate'], undefined)
    t.strictSame(res.json, { detail: message })
  }
  t.equal((await call(sb, 'POST', 'auth-token/', { form: body, headers: basic(Buffer.from([0xff, 0x3a, 0x78]).toString('base64')) })).status, 403, 'Latin-1 credentials')
  const withToken = await call(sb, 'POST', 'auth-token/', { form: body, query: { token: '0'.repeat(40) }, headers: { Authorization: `Token ${'0'.repeat(40)}` } })
  t.equal(withToken.status, 200, 'Token header and ?token= are ignored there')
  t.strictSame((await call(sb, 'POST', 'auth-token/', { form: { ...body, password: ` ${body.password}` } })).json,
    { non_field_errors: ['Unable to log in with provided credentials.'] }, 'passwords are not trimmed')
  const options = await call(sb, 'OPTIONS', 'auth-token/', {})
  t.equal(options.status, 200)
  t.equal(options.headers.allow, 'POST, OPTIONS')
  t.match(options.json, { name: 'Obtain Expiring Auth Token', renders: ['application/json'], actions: { POST: { username: { required: true } } } })
  t.equal((await call(sb, 'HEAD', 'auth-token/', {})).status, 405)
  t.equal((await call(sb, 'GET', 'auth-token/', { query: { format: 'api' } })).status, 404, 'no browsable renderer there')
})

test('throttling: one bucket per user across endpoints, 429 with Retry-After', async (t) => {
  const sb = await startTestSandbox(t, { throttleRate: '3/min', anonThrottleRate: '2/min' })
  t.equal((await post(sb, 'cone/', CONE, 'read')).status, 200)
  t.equal((await post(sb, 'objects/', { objects: A }, 'read')).status, 200)
  t.equal((await post(sb, 'objectlist/', { objectlistid: 'x' }, 'read')).status, 400, '400s count too')
  const limited = await post(sb, 'vrascoreslist/', {}, 'read')
  t.equal(limited.status, 429)
  t.equal(limited.headers['retry-after'], '60')
  t.strictSame(limited.json, { detail: 'Request was throttled. Expected available in 60 seconds.' })
  t.equal((await call(sb, 'POST', 'cone/', { form: CONE, token: '0'.repeat(40) })).status, 401, 'auth runs before throttling')
  t.equal((await post(sb, 'vrascores/', { objectid: A }, 'read')).status, 403, 'so do permissions')
  t.equal((await post(sb, 'cone/', CONE, 'write')).status, 200, 'other users have their own bucket')
  for (let i = 0; i < 5; i++) t.equal((await post(sb, 'cone/', CONE, 'staff')).status, 200, 'staff use the admin rate')
  const login = { username: 'nobody', password: 'x' }
  t.equal((await call(sb, 'POST', 'auth-token/', { form: login })).status, 400)
  t.equal((await call(sb, 'POST', 'auth-token/', { form: login })).status, 400)
  const anon = await call(sb, 'POST', 'auth-token/', { form: login })
  t.equal(anon.status, 429, 'failed logins count')
  t.equal(anon.headers['retry-after'], '60')
  const other = await call(sb, 'POST', 'auth-token/', { form: login, headers: { 'X-Forwarded-For': '203.0.113.9' } })
  t.equal(other.status, 400, 'a different X-Forwarded-For gets a fresh bucket')
  sb.resetThrottle()
  t.equal((await post(sb, 'cone/', CONE, 'read')).status, 200, 'resetThrottle empties every bucket')
  sb.setOptions({ throttleRate: '1/hour' })
  t.equal((await post(sb, 'cone/', CONE, 'write')).status, 200)
  t.equal((await post(sb, 'cone/', CONE, 'write')).headers['retry-after'], '3600', 'setOptions changes the user rate')
})

test('at production rates: the 101st call in an hour and the 11th auth-token call are throttled', async (t) => {
  const sb = await startTestSandbox(t, { objects: 10, throttleRate: '100/hour', anonThrottleRate: '10/hour' })
  const first = Date.now()
  for (let i = 0; i < 100; i++) {
    const res = await post(sb, i % 2 === 0 ? 'cone/' : 'vraranklist/', i % 2 === 0 ? CONE : {}, 'write')
    if (res.status !== 200) t.fail(`call ${i + 1} answered ${res.status}`)
  }
  const res = await post(sb, 'cone/', CONE, 'write')
  t.equal(res.status, 429)
  // DRF's wait: the hour less the age of the oldest call it counts, so the 100 calls' own time comes off
  // it (a loaded machine takes a few seconds over them).
  const retryAfter = Number(res.headers['retry-after'])
  const elapsedS = Math.ceil((Date.now() - first) / 1000)
  t.ok(retryAfter <= 3600 && retryAfter >= 3600 - elapsedS, `Retry-After ${retryAfter}: an hour less the ${elapsedS} s the calls took at most`)
  t.strictSame(res.json, { detail: `Request was throttled. Expected available in ${retryAfter} seconds.` })
  for (let i = 0; i < 10; i++) await call(sb, 'POST', 'auth-token/', { form: { username: 'x', password: 'y' } })
  const anon = await call(sb, 'POST', 'auth-token/', { form: { username: 'x', password: 'y' } })
  t.equal(anon.status, 429)
  t.equal(anon.headers['retry-after'], '3600')
})

test('no pagination: a whole list in one array', async (t) => {
  const sb = await startTestSandbox(t, { objects: 3000 })
  const attic = (await post(sb, 'objectlist/', { objectlistid: '5' })).json as unknown[]
  t.ok(attic.length > 500, `${attic.length} rows at once`)
})

test('protocol: 405, 406, 415 and 301', async (t) => {
  const sb = await startTestSandbox(t)
  const put = await call(sb, 'PUT', 'objects/', { token: 'write' })
  t.equal(put.status, 405)
  t.equal(put.headers.allow, 'GET, POST, HEAD, OPTIONS')
  t.strictSame(put.json, { detail: 'Method "PUT" not allowed.' })
  t.equal((await call(sb, 'PUT', 'vrascores/', { token: 'read' })).status, 403, 'permissions come before the method check')
  const accept = await post(sb, 'cone/', CONE)
  t.equal(accept.status, 200)
  const xml = await call(sb, 'POST', 'cone/', { token: 'write', form: CONE, headers: { Accept: 'application/xml' } })
  t.equal(xml.status, 406)
  t.strictSame(xml.json, { detail: 'Could not satisfy the request Accept header.' })
  t.equal((await call(sb, 'POST', 'cone/', { token: 'write', form: CONE, headers: { Accept: 'application/*' } })).status, 200)
  t.equal((await call(sb, 'POST', 'cone/', { token: 'write', form: CONE, headers: { Accept: 'application/json; indent=4' } })).status, 200)
  const forced = await call(sb, 'POST', 'cone/', { token: 'write', form: CONE, query: { format: 'json' }, headers: { Accept: 'text/html, */*' } })
  t.equal(forced.headers['content-type'], 'application/json', '?format=json picks JSON')
  t.equal((await call(sb, 'POST', 'cone/', { token: 'write', form: CONE, query: { format: 'xml' } })).status, 404, 'an unknown format is a 404')
  const html = await call(sb, 'GET', 'cone/', { token: 'write', query: { format: 'api' } })
  t.equal(html.headers['content-type'], 'text/html; charset=utf-8')
  t.ok(html.text.includes('Django REST framework'))
  const text = await call(sb, 'POST', 'cone/', { token: 'write', raw: 'ra=1', headers: { 'Content-Type': 'text/plain; charset=utf-8' } })
  t.strictSame(text.json, { detail: 'Unsupported media type "text/plain; charset=utf-8" in request.' })
  const none = await call(sb, 'POST', 'cone/', { token: 'write', raw: 'ra=1' })
  t.equal(none.status, 415)
  t.strictSame(none.json, { detail: 'Unsupported media type "" in request.' })
  const redirect = await call(sb, 'POST', 'cone', { token: 'write', form: CONE })
  t.equal(redirect.status, 301)
  t.equal(redirect.headers.location, '/api/cone/')
  const head = await call(sb, 'HEAD', 'vraranklist/', { token: 'write' })
  t.equal(head.status, 200)
  t.equal(head.text, '')
  t.equal((await call(sb, 'OPTIONS', 'cone/', { token: 'write' })).headers.allow, 'GET, POST, HEAD, OPTIONS')
})

test('bad input: JSON, multipart and serializer errors are worded as DRF does', async (t) => {
  const sb = await startTestSandbox(t)
  const raw = async (text: string, type = 'application/json'): Promise<unknown> =>
    (await call(sb, 'POST', 'cone/', { token: 'write', raw: text, headers: { 'Content-Type': type } })).json
  t.strictSame(await raw('x'), { detail: 'JSON parse error - Expecting value: line 1 column 1 (char 0)' })
  t.strictSame(await raw('{"ra": 1} x'), { detail: 'JSON parse error - Extra data: line 1 column 11 (char 10)' })
  t.strictSame(await raw('{"ra" 1}'), { detail: 'JSON parse error - Expecting \':\' delimiter: line 1 column 7 (char 6)' })
  t.strictSame(await raw('[1 2]'), { detail: 'JSON parse error - Expecting \',\' delimiter: line 1 column 4 (char 3)' })
  t.strictSame(await raw('{"ra": NaN}'), { detail: 'JSON parse error - Out of range float values are not JSON compliant: \'NaN\'' })
  t.strictSame(await raw('{"a":\n"b'), { detail: 'JSON parse error - Unterminated string starting at: line 2 column 1 (char 6)' })
  t.strictSame(await raw('[1, 2]'), { non_field_errors: ['Invalid data. Expected a dictionary, but got list.'] })
  t.strictSame(await raw('null'), { non_field_errors: ['No data provided'] })
  t.strictSame(await raw('{"ra": 1, "ra": "x", "dec": 1, "radius": 1, "requestType": "count"}'), { ra: ['A valid number is required.'] },
    'duplicate keys: the last one wins, as in Python')
  t.strictSame(await raw('ra=1', 'multipart/form-data'), { detail: 'Multipart form parse error - Invalid boundary in multipart: None' })
  const file = '--b\r\nContent-Disposition: form-data; name="objects"; filename="ids.txt"\r\nContent-Type: text/plain\r\n\r\n1\r\n--b--\r\n'
  t.strictSame((await call(sb, 'POST', 'objects/', { token: 'write', raw: file, headers: { 'Content-Type': 'multipart/form-data; boundary=b' } })).json,
    { objects: ['Not a valid string.'] })
  t.strictSame((await call(sb, 'POST', 'cone/', { token: 'write', json: { ra: true, dec: [1], radius: '1e1', requestType: 1 } })).json,
    { dec: ['A valid number is required.'], requestType: ['"1" is not a valid choice.'] })
  t.strictSame((await call(sb, 'POST', 'objectlist/', { token: 'write', json: { objectlistid: 4.5, getcustomlist: 'maybe' } })).json,
    { objectlistid: ['A valid integer is required.'], getcustomlist: ['Must be a valid boolean.'] })
  t.equal((await call(sb, 'POST', 'objectlist/', { token: 'write', json: { objectlistid: 2.0, getcustomlist: 0 } })).status, 200)
  t.strictSame((await post(sb, 'objects/', { objects: '   ' })).json, { objects: ['This field may not be blank.'] })
  t.strictSame((await call(sb, 'POST', 'objects/', { token: 'write', json: { objects: true } })).json, { objects: ['Not a valid string.'] })
  t.strictSame((await post(sb, 'cone/', { ...CONE, ra: '1'.repeat(1001) })).json, { ra: ['String value too large.'] })
  t.equal((await post(sb, 'cone/', { ...CONE, ra: ' 2_44.000_92 ', radius: 'inf', requestType: 'count' })).status, 400, 'an infinite radius is over the limit')
  t.strictSame((await post(sb, 'cone/', { ...CONE, ra: 'nan', requestType: 'count' })).json, { count: 0 }, 'NaN passes validation and finds nothing')
  t.strictSame((await post(sb, 'cone/', { ...CONE, radius: '-1', requestType: 'all' })).json, [], 'a negative radius finds nothing')
  t.equal((await post(sb, 'objects/', { objects: ` +${A} , 0${B}` })).status, 200, 'tokens are read as Python int() reads them')
  t.equal((await call(sb, 'GET', `objects/?objects=${'1'.repeat(9000)}`, { token: 'write' })).status, 414, 'the request line is limited')
  const latin = await call(sb, 'POST', 'objects/', { token: 'write', raw: '{"objects": "\u00ff', headers: { 'Content-Type': 'application/json' } })
  t.equal(latin.status, 400)
  const bytes = Buffer.from([0x7b, 0xff, 0x7d])
  const bad = await call(sb, 'POST', 'objects/', { token: 'write', raw: bytes.toString('latin1'), headers: { 'Content-Type': 'application/json; charset=latin-1' } })
  t.equal(bad.status, 400)
})

// DRF's ChoiceField and CharField read a JSON value through Python's str(): a list, an object or a
// float is not the text JavaScript would make of it ("['all']" is not "all", 12.0 is "12.0").
test('JSON values are read through Python\'s str(): choices and strings of lists, objects and floats', async (t) => {
  const sb = await startTestSandbox(t)
  const cone = async (requestType: string): Promise<unknown> => (await call(sb, 'POST', 'cone/', {
    token: 'write', raw: `{"ra": 244.00092, "dec": 22.26801, "radius": 20, "requestType": ${requestType}}`, headers: { 'Content-Type': 'application/json' }
  })).json
  const choice = (text: string) => ({ requestType: [`"${text}" is not a valid choice.`] })
  t.strictSame(await cone('["all"]'), choice("['all']"), 'a list is not its one element')
  t.strictSame(await cone('1.0'), choice('1.0'))
  t.strictSame(await cone('{"a": 1}'), choice("{'a': 1}"))
  t.strictSame(await cone('[1e16, 0.00001, -0.0, 1e400, null, true, "it\'s", "a\\"b", "\\n"]'), choice("[1e+16, 1e-05, -0.0, inf, None, True, \"it's\", 'a\"b', '\\n']"))
  t.strictSame(await cone('1161600211221604900.0'), choice('1.1616002112216049e+18'))
  const objects = async (value: string) => await call(sb, 'POST', 'objects/', { token: 'write', raw: `{"objects": ${value}}`, headers: { 'Content-Type': 'application/json' } })
  // "12.0" and "1.1616002112216049e+18" are not integers: the upstream's int() fails, its 500 page.
  for (const value of ['12.0', '1161600211221604900.0']) {
    const res = await objects(value)
    t.equal(res.status, 500, `objects ${value}`)
    t.ok(res.text.includes('Error 500: Server Error'))
  }
  t.equal((await objects('12')).status, 200, 'an integer is read as its digits (the placeholder)')
  t.equal((await objects(A)).status, 200)
  const external = await call(sb, 'POST', 'externalxmlist/', { token: 'write', raw: '{"externalObjects": 2025.0}', headers: { 'Content-Type': 'application/json' } })
  t.equal(external.status, 200, 'a float name is searched as its text, 2025.0')
  t.strictSame((await call(sb, 'POST', 'cone/', { token: 'write', raw: '1.5', headers: { 'Content-Type': 'application/json' } })).json,
    { non_field_errors: ['Invalid data. Expected a dictionary, but got float.'] })
  t.equal((await call(sb, 'POST', 'objectlist/', { token: 'write', raw: '{"objectlistid": 2.0, "getcustomlist": 1.0}', headers: { 'Content-Type': 'application/json' } })).status, 200,
    'an integral float is an integer and 1.0 a boolean, as in Python')
  t.strictSame((await call(sb, 'POST', 'objectlist/', { token: 'write', raw: '{"objectlistid": 1e16}', headers: { 'Content-Type': 'application/json' } })).json,
    { objectlistid: ['A valid integer is required.'] }, 'str(1e16) is "1e+16"')
})

// Python's float() takes an underscore only between two digits (PEP 515).
test('numbers: underscores between digits only, as float() reads them', async (t) => {
  const sb = await startTestSandbox(t)
  for (const [field, value] of [['radius', '_5'], ['radius', '5_'], ['radius', '1__0'], ['radius', '1_.5'], ['radius', '1e_1'], ['ra', 'n_an'], ['ra', 'in_f']]) {
    const res = await post(sb, 'cone/', { ...CONE, requestType: 'count', [field as string]: value as string })
    t.equal(res.status, 400, `${field}=${value}`)
    t.strictSame(res.json, { [field as string]: ['A valid number is required.'] })
  }
  const five = await post(sb, 'cone/', { ...CONE, requestType: 'all', radius: '0_5.0_0e0_0' })
  t.equal(five.status, 200)
  t.equal(five.text, (await post(sb, 'cone/', { ...CONE, requestType: 'all', radius: '5' })).text, '0_5.0_0e0_0 is 5')
})

// APIView.get_view_name(): the class name split at capitals, then str.title(), so "VRA" is "Vra".
test('OPTIONS view names are title-cased as DRF does', async (t) => {
  const sb = await startTestSandbox(t)
  const names: Record<string, string> = {
    vrascores: 'Vra Scores',
    vrascoreslist: 'Vra Scores List',
    vratodo: 'Vra Todo',
    vratodolist: 'Vra Todo List',
    vrarank: 'Vra Rank',
    vraranklist: 'Vra Rank List',
    objectdetectionlist: 'Object Detection List',
    objectgroups: 'Tcs Object Groups',
    'auth-token': 'Obtain Expiring Auth Token'
  }
  for (const [endpoint, name] of Object.entries(names)) {
    t.match((await call(sb, 'OPTIONS', `${endpoint}/`, { token: 'write' })).json, { name }, `${endpoint}: ${name}`)
  }
})

// Python's json writes a float as its repr: 30.0, not 30; 1e-05 and 1e+16, not 0.00001 and 10000000000000000.
test('floats are written as Python writes them', async (t) => {
  const sb = await startTestSandbox(t)
  await post(sb, 'vrascores/', { objectid: A, preal: '1', pgal: '0.00001', pfast: '1e16' })
  const scores = await post(sb, 'vrascoreslist/', { objects: A })
  t.match(scores.text, /"preal":1\.0,"pgal":1e-05,"pfast":1e\+16,/)
  await post(sb, 'vrarank/', { objectid: A, rank: '2' })
  t.match((await post(sb, 'vraranklist/', { objects: A })).text, /"rank":2\.0,/)
  const record = (await post(sb, 'objects/', { objects: A })).text
  t.match(record, /"exptime":30\.0,/)
  t.match(record, /"texp":30\.0}/)
  t.match(record, /"original_search_radius_arcsec":180\.0,/)
  t.match(record, /"id":\d+,"mag"/, 'integer columns stay integers')
  t.match((await post(sb, 'cone/', { ...CONE, requestType: 'nearest' })).text, /"separation":\d+\.\d+/)
})

test('cone: results sorted by true angular separation (arcsec), nearest first', async (t) => {
  const sb = await startTestSandbox(t)
  const rec = (await post(sb, 'objects/', { objects: `${A},${B}` })).json as Array<{ object: { ra: number, dec: number } }>
  const [a, b] = [rec[0]?.object, rec[1]?.object]
  // 10" west of A along the sky (away from B): an RA offset of 10"/cos(dec), which a flat
  // distance in degrees would overstate.
  const dec = a?.dec ?? 0
  const ra = (a?.ra ?? 0) - 10 / 3600 / Math.cos(dec * Math.PI / 180)
  const hits = (await post(sb, 'cone/', { ra: String(ra), dec: String(dec), radius: '60', requestType: 'all' })).json as Array<{ object: bigint, separation: number }>
  t.same(hits.map((h) => h.object), [BigInt(A), BigInt(B)])
  t.ok(Math.abs((hits[0]?.separation ?? 0) - 10) < 0.01, `separation ${hits[0]?.separation} is the true 10"`)
  t.ok((hits[0]?.separation ?? 0) <= (hits[1]?.separation ?? 0), 'ascending')
  // Near B, B comes first.
  const nearB = (await post(sb, 'cone/', { ra: String(b?.ra), dec: String((b?.dec ?? 0) + 1 / 3600), radius: '60', requestType: 'all' })).json as Array<{ object: bigint }>
  t.same(nearB.map((h) => h.object), [BigInt(B), BigInt(A)])
  t.strictSame((await post(sb, 'cone/', { ra: String(ra), dec: String(dec), radius: '60', requestType: 'count' })).json, { count: 2 })
  t.strictSame((await post(sb, 'cone/', { ...CONE, radius: '300.5' })).json, { error: 'Max radius is 300 arcsec.' })
})

test('paths override: a renamed upstream path serves, the old one is a 404', async (t) => {
  const sb = await startTestSandbox(t, { paths: { objects: 'objects2', cone: '/cone-search/' }, prefix: 'sne/atlas4/api' })
  t.match(sb.baseUrl, /^http:\/\/127\.0\.0\.1:\d+\/sne\/atlas4\/api\/$/)
  t.equal(sb.origin, sb.baseUrl.replace(/\/sne\/atlas4\/api\/$/, ''))
  const renamed = await post(sb, 'objects2/', { objects: A })
  t.equal(renamed.status, 200)
  t.equal((await post(sb, 'objects/', { objects: A })).status, 404)
  t.equal((await post(sb, 'cone-search/', CONE)).status, 200)
  const redirect = await post(sb, 'objects2', { objects: A })
  t.equal(redirect.headers.location, '/sne/atlas4/api/objects2/', 'the redirect keeps the mount prefix')
  t.equal(sb.calls.get('objects'), 2, 'counted under the endpoint name')
  t.equal(sb.calls.get('unknown'), 1)
})

test('calls: per endpoint, whatever the outcome; unknown paths apart', async (t) => {
  const sb = await startTestSandbox(t)
  await post(sb, 'cone/', CONE)
  await call(sb, 'POST', 'cone/', { form: CONE })
  await call(sb, 'GET', 'cone')
  await post(sb, 'objects/', { objects: 'abc' })
  await call(sb, 'GET', 'nosuch/')
  t.equal(sb.calls.get('cone'), 3)
  t.equal(sb.calls.get('objects'), 1)
  t.equal(sb.calls.get('unknown'), 1)
  t.equal(sb.totalCalls(), 5)
  sb.resetCalls()
  t.equal(sb.totalCalls(), 0)
  t.equal(sb.calls.size, 0)
})

test('faults: html500, status, throttle, delay, n-shot, per endpoint, cleared', async (t) => {
  const sb = await startTestSandbox(t)
  sb.inject({ kind: 'html500' })
  const html = await post(sb, 'cone/', CONE)
  t.equal(html.status, 500)
  t.ok(html.text.includes('Error 500: Server Error'))
  sb.inject({ kind: 'status', status: 503, times: 2 })
  t.same([(await post(sb, 'cone/', CONE)).status, (await post(sb, 'cone/', CONE)).status, (await post(sb, 'cone/', CONE)).status], [503, 503, 200])
  sb.inject({ kind: 'status', status: 502 })
  t.strictSame((await post(sb, 'cone/', CONE)).json, { detail: 'injected' })
  sb.inject({ kind: 'status', status: 200, body: '<p>maintenance</p>', contentType: 'text/html' })
  const custom = await post(sb, 'cone/', CONE)
  t.same([custom.status, custom.headers['content-type'], custom.text], [200, 'text/html', '<p>maintenance</p>'])
  sb.inject({ kind: 'throttle', retryAfterS: 7 })
  const throttled = await post(sb, 'cone/', CONE)
  t.same([throttled.status, throttled.headers['retry-after'], throttled.json], [429, '7', { detail: 'Request was throttled. Expected available in 7 seconds.' }])
  sb.inject({ kind: 'throttle', retryAfterS: 1 })
  t.strictSame((await post(sb, 'cone/', CONE)).json, { detail: 'Request was throttled. Expected available in 1 second.' })
  sb.inject({ kind: 'throttle' })
  t.equal((await post(sb, 'cone/', CONE)).headers['retry-after'], '3600')
  sb.inject({ kind: 'delay', delayMs: 20 })
  const delayed = await post(sb, 'objects/', { objects: A })
  t.equal(delayed.status, 200, 'a delayed answer is the normal answer')
  sb.inject({ endpoint: 'objects', kind: 'status', status: 504 })
  t.equal((await post(sb, 'cone/', CONE)).status, 200, 'another endpoint is unaffected')
  t.equal((await post(sb, 'objects/', { objects: A })).status, 504)
  sb.inject({ kind: 'status', status: 500, times: 5 })
  sb.inject({ kind: 'status', status: 500, times: 0 })
  sb.clearFaults()
  t.equal((await post(sb, 'cone/', CONE)).status, 200, 'clearFaults drops what is queued')
})

test('faults: slow-body sends the headers, then the body in slices', async (t) => {
  const sb = await startTestSandbox(t)
  const normal = await post(sb, 'objects/', { objects: A })
  sb.inject({ kind: 'slow-body', delayMs: 50 })
  const { request } = await import('node:http')
  const chunks = await new Promise<Buffer[]>((resolve, reject) => {
    const body = `objects=${A}`
    const req = request(`${sb.baseUrl}objects/`, {
      method: 'POST',
      headers: { Authorization: `Token ${sb.tokens.write}`, 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(body.length) }
    }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve(parts))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.ok(chunks.length > 1, `${chunks.length} slices`)
  t.equal(Buffer.concat(chunks).toString(), normal.text, 'the same body in the end')
  sb.inject({ kind: 'slow-body' })
  t.equal((await post(sb, 'cone/', CONE)).status, 200)
})

test('faults: reset drops the connection; hang never answers, and close() still returns', async (t) => {
  const sb = await startTestSandbox(t)
  sb.inject({ kind: 'reset' })
  await t.rejects(post(sb, 'cone/', CONE), 'the request fails without a response')
  t.equal((await post(sb, 'cone/', CONE)).status, 200)
  sb.inject({ kind: 'hang', endpoint: 'objects' })
  sb.setOptions({ latencyMs: 10_000 })
  const hung = post(sb, 'objects/', { objects: A })
  const slow = post(sb, 'cone/', CONE)
  await waitFor('the sandbox to hold the hung objects/ and the slow cone/ request', () => (sb.calls.get('objects') ?? 0) >= 1 && (sb.calls.get('cone') ?? 0) >= 2)
  // Both outcomes are awaited from here on: a rejection while close() runs is never unhandled.
  const ended = [t.rejects(hung, 'the hung request ends when the sandbox closes'), t.rejects(slow, 'so does one waiting out its latency')]
  await sb.close()
  await Promise.all(ended)
  await sb.close()
})

test('knobs: errorRate, latency and jitter', async (t) => {
  const sb = await startTestSandbox(t, { errorRate: 1, latencyMs: 1, jitterMs: 1 })
  t.equal((await post(sb, 'cone/', CONE)).status, 500)
  sb.setOptions({ errorRate: 0, latencyMs: 0, jitterMs: 2 })
  t.equal((await post(sb, 'cone/', CONE)).status, 200)
})

test('VRA tables with objects=: rows grouped in the order of the ids asked, repeated for a repeated id', async (t) => {
  const sb = await startTestSandbox(t)
  const stamp = '2026-01-02T00:00:00Z'
  // B already has a score row and a rank row, C is queued: these rows land after them in table order.
  for (const preal of ['0.5', '0.6']) t.equal((await post(sb, 'vrascores/', { objectid: A, preal, insertdate: stamp })).status, 201)
  t.equal((await post(sb, 'vrarank/', { objectid: A, rank: '2.5', insertdate: stamp })).status, 201)
  t.equal((await post(sb, 'vratodo/', { objectid: D, insertdate: stamp })).status, 201)
  const ids = async (path: string, objects: string[], extra: Record<string, string> = {}): Promise<string[]> => {
    const rows = (await post(sb, path, { objects: objects.join(','), ...extra })).json as Array<{ transient_object_id: bigint }>
    return rows.map((r) => String(r.transient_object_id))
  }
  t.strictSame(await ids('vrascoreslist/', [A, B]), [A, A, B])
  t.strictSame(await ids('vrascoreslist/', [B, A, B]), [B, A, A, B])
  t.strictSame(await ids('vrascoreslist/', [A, 'x', U, ' ', A]), [A, A, A, A], 'non-integer tokens are skipped, a repeat repeats')
  t.strictSame(await ids('vrascoreslist/', [A, B], { debug: 'true' }), [], 'debug still filters')
  t.strictSame(await ids('vratodolist/', [D, C, D]), [D, C, D])
  t.strictSame(await ids('vraranklist/', [A, B, A]), [A, B, A])
  const scores = (await post(sb, 'vrascoreslist/', { objects: `${A},${B}` })).json as Array<{ id: number }>
  t.ok((scores[0]?.id ?? 0) < (scores[1]?.id ?? 0), 'within one id, rows keep table order')
})

test('cone: an infinite coordinate is a 500 page upstream (a math domain error); NaN finds nothing', async (t) => {
  const sb = await startTestSandbox(t)
  for (const [field, value] of [['ra', 'inf'], ['ra', '-inf'], ['dec', 'Infinity'], ['dec', '-infinity']]) {
    const res = await post(sb, 'cone/', { ...CONE, [field as string]: value as string })
    t.equal(res.status, 500, `${field}=${value}`)
    t.ok(res.text.includes('Error 500: Server Error'))
  }
  t.strictSame((await post(sb, 'cone/', { ...CONE, ra: 'nan', requestType: 'all' })).json, [])
  t.strictSame((await post(sb, 'cone/', { ...CONE, dec: 'nan' })).json, {})
  t.strictSame((await post(sb, 'cone/', { ...CONE, radius: 'nan', requestType: 'count' })).json, { count: 0 })
  t.strictSame((await post(sb, 'cone/', { ...CONE, radius: '-inf', requestType: 'all' })).json, [], 'a negative radius finds nothing')
})

test('a JSON nesting bomb is a DRF 400 parse error (Python\'s decoder gives up), not a crash', async (t) => {
  const sb = await startTestSandbox(t)
  const raw = async (text: string) => await call(sb, 'POST', 'objects/', { token: 'write', raw: text, headers: { 'Content-Type': 'application/json' } })
  const deep = await raw('['.repeat(10_000) + ']'.repeat(10_000))
  t.equal(deep.status, 400)
  t.strictSame(deep.json, { detail: 'JSON parse error - maximum recursion depth exceeded while decoding a JSON array from a unicode string' })
  t.strictSame((await raw('{"a":'.repeat(10_000))).json,
    { detail: 'JSON parse error - maximum recursion depth exceeded while decoding a JSON object from a unicode string' })
  t.equal((await post(sb, 'cone/', CONE)).status, 200, 'the sandbox still answers')
})
