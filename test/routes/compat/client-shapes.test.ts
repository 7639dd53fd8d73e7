// The official Python client's request shapes, replayed over loopback HTTP both
// through the gateway's compatibility path and straight to an identical sandbox; statuses and bodies
// must be the same bytes, except where the gateway is deliberately safer (tested further down).
import { test, type Test } from 'tap'
import { request } from 'undici'
import { buildTestApp, FIXTURE_IDS, startTestSandbox } from '../../helper.js'
import { consumersFile, makeConsumer } from '../../consumer-helper.js'

const { A, B, C, D, E, U } = FIXTURE_IDS

// What python-requests sends for requests.post(url, payload, headers={"Authorization": "Token …"}).
function clientHeaders (token: string): Record<string, string> {
  return {
    authorization: `Token ${token}`,
    'content-type': 'application/x-www-form-urlencoded',
    accept: '*/*',
    'user-agent': 'python-requests/2.32.3'
  }
}

interface Exchange { status: number, body: string, headers: Record<string, unknown> }

async function post (base: string, endpoint: string, payload: Record<string, string>, token: string): Promise<Exchange> {
  const res = await request(`${base}${endpoint}/`, { method: 'POST', headers: clientHeaders(token), body: new URLSearchParams(payload).toString() })
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
}

async function setup (t: Test) {
  const direct = await startTestSandbox(t)
  const behind = await startTestSandbox(t)
  const reader = makeConsumer('reader', { scopes: ['read'] })
  const bot = makeConsumer('bot', { scopes: ['read', 'write:vra', 'write:custom-lists', 'write:detection-list'], lists: ['*'] })
  // No prefetch calls of their own: 2 s after a list read the gateway fetched its members (308 records for
  // list 2) from the sandbox, which runs in this process and renders them synchronously: seconds on a
  // loaded machine, during which this process did nothing else. A read that fell into it could fail:
  // vrascoreslist/ answered 503 ("Every upstream connection is busy…"), its call not written within
  // UPSTREAM_POOL_WAIT_MS. Prefetching has tests of its own (test/economy/).
  const { app } = await buildTestApp(t, { upstream: behind, config: { CONSUMERS_FILE: consumersFile(t, [reader, bot]), PREFETCH_DELAY_MS: 3_600_000 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const gateway = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/atlas/api/`
  /**
   * Sends one client request both ways and compares status and bytes. Rows that a write stamped with
   * the server's "now" differ by the microseconds between the two sandboxes' writes: `maskNow` hides
   * exactly those stamps (today's date), nothing else.
   */
  const same = async (t2: typeof t, endpoint: string, payload: Record<string, string>, what: string, maskNow = false) => {
    const ours = await post(gateway, endpoint, payload, bot.key)
    const theirs = await post(direct.baseUrl, endpoint, payload, direct.tokens.write)
    // Today's and yesterday's date: the two writes may fall on either side of a UTC midnight.
    const days = [0, 86_400_000].map((ago) => new Date(Date.now() - ago).toISOString().slice(0, 10)).join('|')
    const mask = (text: string) => maskNow ? text.replaceAll(new RegExp(`"(?:${days})T[0-9:.]+Z?"`, 'g'), '"<now>"') : text
    t2.equal(ours.status, theirs.status, `${what}: status ${theirs.status}`)
    t2.equal(mask(ours.body), mask(theirs.body), `${what}: same bytes`)
    t2.equal(ours.headers['content-type'], theirs.headers['content-type'], `${what}: content type ${String(theirs.headers['content-type'])}`)
    return ours
  }
  /** One POST with this Content-Type and body, to the gateway and straight to the upstream. */
  const postBoth = async (endpoint: string, type: string, body: string) => {
    const send = async (base: string, token: string) => {
      const res = await request(`${base}${endpoint}/`, { method: 'POST', headers: { authorization: `Token ${token}`, 'content-type': type }, body })
      return { status: res.statusCode, text: await res.body.text() }
    }
    return { ours: await send(gateway, bot.key), theirs: await send(direct.baseUrl, direct.tokens.write) }
  }
  return { app, direct, behind, gateway, reader, bot, same, postBoth }
}

test('read endpoints answer what the upstream answers, byte for byte', async (t) => {
  const { same } = await setup(t)
  await same(t, 'cone', { ra: '150', dec: '60', radius: '60', requestType: 'nearest' }, 'cone nearest (client test payload)')
  await same(t, 'cone', { ra: '244.00092', dec: '22.26801', radius: '20', requestType: 'all' }, 'cone all')
  await same(t, 'cone', { ra: '244.00092', dec: '22.26801', radius: '20', requestType: 'count' }, 'cone count')
  await same(t, 'cone', { ra: '1', dec: '1', radius: '400', requestType: 'all' }, 'cone radius over 300')
  await same(t, 'cone', { ra: '1', dec: '1', radius: '5', requestType: 'Nearest' }, 'cone case-sensitive mode')
  const one = await same(t, 'objects', { objects: A, mjd: '0' }, 'objects one id, mjd=0')
  t.match(one.body, new RegExp(`^\\[\\{"object":\\{"id":${A},`), 'the 19-digit id is a bare integer, digit-exact')
  await same(t, 'objects', { objects: `${A},${B}`, mjd: '60790.5' }, 'objects two ids with the client look-back')
  await same(t, 'objects', { objects: [A, U, B, A].join(',') }, 'objects with an unknown id and a duplicate')
  await same(t, 'objects', { objects: ` ${A} , ${B}` }, 'objects with spaces')
  await same(t, 'objects', {}, 'objects missing field')
  await same(t, 'objects', { objects: A, mjd: 'x' }, 'objects bad mjd')
  await same(t, 'objectlist', { objectlistid: '2', getcustomlist: 'False', datethreshold: '1858-11-17' }, 'objectlist everything')
  await same(t, 'objectlist', { objectlistid: '2', getcustomlist: 'False', datethreshold: '2025-06-03', vra_gte: '5.0', sherlock_class: 'SN' }, 'objectlist with client filters')
  await same(t, 'objectlist', { objectlistid: '-1' }, 'objectlist negative id')
  await same(t, 'objectlist', { objectlistid: '73', getcustomlist: 'True' }, 'objectlist custom list')
  await same(t, 'objectlist', { objectlistid: '2', datethreshold: 'soon' }, 'objectlist bad datethreshold')
  await same(t, 'vrascoreslist', { datethreshold: '2025-01-01' }, 'vrascoreslist since')
  await same(t, 'vrascoreslist', { objects: `${B},${A}`, debug: 'False' }, 'vrascoreslist by ids')
  await same(t, 'vrascoreslist', { idthreshold: '3' }, 'vrascoreslist idthreshold')
  await same(t, 'vratodolist', { datethreshold: '2025-01-01' }, 'vratodolist')
  await same(t, 'vraranklist', { datethreshold: '2025-01-01', idthreshold: '99' }, 'vraranklist ignores idthreshold')
  await same(t, 'objectgroupslist', { objectgroupid: '73' }, 'objectgroupslist by list')
  await same(t, 'objectgroupslist', { objectid: C }, 'objectgroupslist by object')
  await same(t, 'objectgroupslist', { objectgroupid: '6' }, 'objectgroupslist group 6 (client integration test)')
  await same(t, 'objectgroupslist', { objectid: `${A},${B}` }, 'objectgroupslist CSV id')
  await same(t, 'externalxmlist', { externalObjects: '2025abc,NOPE,2025abc' }, 'externalxmlist')
  await same(t, 'externalxmlist', { externalobjects: '2025abc' }, 'externalxmlist lowercase field is ignored')
})

test('write endpoints: the client\'s one-id-per-request shapes, then reads see the writes', async (t) => {
  const { same } = await setup(t)
  await same(t, 'vrascores', { objectid: '1132507360113744501', debug: '1' }, 'vrascores unknown object (client integration test)')
  await same(t, 'vrascores', { objectid: D, preal: '0.9', pgal: '0.05', pfast: '0.1', rank: '7.5', is_gal_cand: '0', debug: 'True', insertdate: '2026-01-02T00:00:00Z' }, 'vrascores row')
  await same(t, 'vrascores', { preal: '0.9' }, 'vrascores without objectid')
  await same(t, 'vratodo', { objectid: D }, 'vratodo new')
  await same(t, 'vratodo', { objectid: C }, 'vratodo duplicate')
  await same(t, 'vrarank', { objectid: '1103337110432157700', rank: '1.4' }, 'vrarank (client integration test id)')
  await same(t, 'vrarank', { objectid: A, rank: '1.4', insertdate: '2026-01-02T00:00:00Z' }, 'vrarank')
  await same(t, 'vrarank', { objectid: A }, 'vrarank without rank')
  for (const id of [D, E]) await same(t, 'objectgroups', { objectid: id, objectgroupid: '73' }, `objectgroups add ${id}`)
  await same(t, 'objectgroups', { objectid: D, objectgroupid: '73' }, 'objectgroups duplicate')
  await same(t, 'objectgroups', { objectid: D, objectgroupid: '999' }, 'objectgroups dummy list')
  await same(t, 'objectgroups', { objectid: `${D},${E}`, objectgroupid: '73' }, 'objectgroups comma list (old client)')
  await same(t, 'objectgroupslist', { objectgroupid: '73' }, 'members after adds')
  for (const id of [D, E]) await same(t, 'objectgroupsdelete', { objectid: id, objectgroupid: '73' }, `objectgroupsdelete ${id}`)
  await same(t, 'objectgroupsdelete', { objectid: D, objectgroupid: '73' }, 'objectgroupsdelete repeat → 400')
  await same(t, 'objectgroupslist', { objectgroupid: '73' }, 'members after deletes')
  await same(t, 'objectdetectionlist', { objectid: E, objectlist: '4' }, 'objectdetectionlist eyeball')
  await same(t, 'objectdetectionlist', { objectid: E, objectlist: '2' }, 'objectdetectionlist disallowed list')
  await same(t, 'objectlist', { objectlistid: '4' }, 'eyeball list after the move', true)
  await same(t, 'vratodolist', { objects: `${D},${C}` }, 'vratodolist after the write (by ids)', true)
})

test('where the gateway is deliberately safer than the upstream', async (t) => {
  const { gateway, behind, bot, direct } = await setup(t)
  behind.resetCalls()
  // GET on a write endpoint never writes, objectdetectionlist included (the upstream's GET writes).
  for (const endpoint of ['objectdetectionlist', 'vrascores', 'objectgroups']) {
    const res = await request(`${gateway}${endpoint}/?objectid=${E}&objectlist=4&objectgroupid=73`, { headers: { authorization: `Token ${bot.key}` } })
    t.equal(res.statusCode, 200)
    t.equal(await res.body.text(), '{"Error":"GET is not implemented for this service."}')
  }
  // Non-numeric ids: a DRF-shaped 400 instead of the upstream's 500 page.
  const bad = await post(gateway, 'objects', { objects: `${A},ATLAS18qqn` }, bot.key)
  t.equal(bad.status, 400)
  t.same(Object.keys(JSON.parse(bad.body)), ['objects'])
  const upstreamBad = await post(direct.baseUrl, 'objects', { objects: `${A},ATLAS18qqn` }, direct.tokens.write)
  t.equal(upstreamBad.status, 500, 'the upstream itself answers a 500 page')
  const trailing = await post(gateway, 'objects', { objects: `${A},` }, bot.key)
  t.equal(trailing.status, 400)
  const list14 = await post(gateway, 'objectlist', { objectlistid: '14' }, bot.key)
  t.equal(list14.status, 400)
  t.same(Object.keys(JSON.parse(list14.body)), ['objectlistid'])
  const emptyDelete = await post(gateway, 'objectgroupsdelete', {}, bot.key)
  t.equal(emptyDelete.status, 400, 'an invalid delete payload is a 400, not the upstream\'s 500')
  t.equal(behind.totalCalls(), 0, 'none of these reached the upstream')
})

test('auth, scopes and throttling in the upstream\'s words', async (t) => {
  const { gateway, reader, bot, behind } = await setup(t)
  const none = await request(`${gateway}cone/`, { method: 'POST' })
  t.equal(none.statusCode, 401)
  t.equal(none.headers['www-authenticate'], 'Token')
  t.same(await none.body.json(), { detail: 'Authentication credentials were not provided.' })
  const bearer = await request(`${gateway}cone/`, { method: 'POST', headers: { authorization: `Bearer ${bot.key}` } })
  t.same(await bearer.body.json(), { detail: 'Authentication credentials were not provided.' }, 'Bearer is not a scheme the upstream reads')
  const wrong = await post(gateway, 'cone', { ra: '1', dec: '1', radius: '5', requestType: 'all' }, '0'.repeat(40))
  t.equal(wrong.status, 401)
  t.same(JSON.parse(wrong.body), { detail: 'Invalid token.' })
  const lower = await request(`${gateway}cone/`, { method: 'POST', headers: { ...clientHeaders(bot.key), authorization: `token ${bot.key}` }, body: 'ra=1&dec=1&radius=5&requestType=count' })
  t.equal(lower.statusCode, 200, 'the keyword is case-insensitive')
  const query = await request(`${gateway}cone/?token=${bot.key}&ra=1&dec=1&radius=5&requestType=count`)
  t.equal(query.statusCode, 200, '?token= works')
  // Python's `^\w+$` lets one trailing newline through (`$` matches before it), and \w takes combining
  // marks: such a token is well-formed, just unknown.
  for (const token of [`${bot.key}%0A`, 'abc%CC%81']) {
    const res = await request(`${gateway}cone/?token=${token}&ra=1&dec=1&radius=5&requestType=count`)
    t.equal(res.statusCode, 401)
    t.same(await res.body.json(), { detail: 'Invalid token.' }, `?token=${token}`)
  }
  const twoLines = await request(`${gateway}cone/?token=abc%0A%0A&ra=1`)
  t.same(await twoLines.body.json(), { detail: 'Invalid token format.' }, 'not two newlines')
  for (const endpoint of ['vrascores', 'vratodo', 'vrarank', 'objectgroups', 'objectgroupsdelete', 'objectdetectionlist']) {
    const res = await post(gateway, endpoint, { objectid: A, objectgroupid: '73', objectlist: '4', rank: '1' }, reader.key)
    t.equal(res.status, 403, `${endpoint} needs a write scope`)
    t.same(JSON.parse(res.body), { detail: 'You do not have permission to perform this action.' })
  }
  // The upstream budget spent: the client sees the upstream's 429 form.
  behind.inject({ kind: 'throttle', retryAfterS: 60 })
  const throttled = await post(gateway, 'cone', { ra: '7', dec: '7', radius: '5', requestType: 'all' }, bot.key)
  t.equal(throttled.status, 429)
  t.match(JSON.parse(throttled.body).detail, /^Request was throttled\. Expected available in \d+ seconds?\.$/)
  t.ok(Number(throttled.headers['retry-after']) > 0)
})

test('auth-token/: a consumer logs in with its id and key', async (t) => {
  const { gateway, bot } = await setup(t)
  const form = (o: Record<string, string>) => ({ method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(o).toString() })
  const good = await request(`${gateway}auth-token/`, form({ username: 'bot', password: bot.key }))
  t.equal(good.statusCode, 200)
  const body = await good.body.json() as { token: string, expires_in: number, refreshed: boolean }
  t.equal(body.token, bot.key)
  t.ok(body.expires_in > 86400)
  t.equal(body.refreshed, false)
  const bad = await request(`${gateway}auth-token/`, form({ username: 'bot', password: 'nope' }))
  t.equal(bad.statusCode, 400)
  t.same(await bad.body.json(), { non_field_errors: ['Unable to log in with provided credentials.'] })
  const missing = await request(`${gateway}auth-token/`, form({}))
  t.same(await missing.body.json(), { username: ['This field is required.'], password: ['This field is required.'] })
  // ObtainAuthToken's parsers are form, multipart, JSON (the API views': JSON first): */* reads a form.
  const wild = await request(`${gateway}auth-token/`, { ...form({ username: 'bot', password: bot.key }), headers: { 'content-type': '*/*' } })
  t.equal(wild.statusCode, 200, '*/* with a form body logs in')
  t.equal((await wild.body.json() as { token: string }).token, bot.key)
})

test('auth-token/: Allow and Vary as the upstream sends them (POST, OPTIONS; Cookie)', async (t) => {
  const { gateway, direct } = await setup(t)
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const cases = [
    ['a login refused', 'POST', form, 'username=a&password=b'],
    ['GET', 'GET', {}, undefined],
    ['PUT', 'PUT', form, 'username=a'],
    ['OPTIONS', 'OPTIONS', {}, undefined]
  ] as const
  for (const [what, method, headers, body] of cases) {
    const ours = await request(`${gateway}auth-token/`, { method, headers, ...(body === undefined ? {} : { body }) })
    const theirs = await request(`${direct.baseUrl}auth-token/`, { method, headers, ...(body === undefined ? {} : { body }) })
    await ours.body.dump()
    await theirs.body.dump()
    t.equal(ours.statusCode, theirs.statusCode, `${what}: status ${theirs.statusCode}`)
    t.equal(ours.headers.allow, theirs.headers.allow, `${what}: Allow ${String(theirs.headers.allow)}`)
    t.equal(ours.headers.vary, theirs.headers.vary, `${what}: Vary ${String(theirs.headers.vary)}`)
  }
})

test('auth-token/: an expired key cannot log in, and a key that expires says so in expires_in', async (t) => {
  const old = makeConsumer('old-bot', { scopes: ['read'], expires: '2020-01-01' })
  const soon = new Date(Date.now() + 3 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z')
  const ending = makeConsumer('ending-bot', { scopes: ['read'], expires: soon })
  const { app } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [old, ending]) } })
  const login = async (username: string, password: string) => app.inject({
    method: 'POST', url: '/atlas/api/auth-token/', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ username, password }).toString()
  })
  const refused = await login('old-bot', old.key)
  t.equal(refused.statusCode, 400)
  t.same(refused.json(), { non_field_errors: ['This key\'s access expired on 2020-01-01 (UTC); ask the gateway\'s operator to extend it.'] })
  const granted = await login('ending-bot', ending.key)
  t.equal(granted.statusCode, 200)
  const left = granted.json<{ expires_in: number }>().expires_in
  t.ok(left > 3 * 86400 - 60 && left <= 3 * 86400, `expires_in ${left} s: until the key's expiry, not a year`)
})

/** One raw HTTP/1.1 exchange, so the request target reaches the server exactly as written. */
async function rawRequest (port: number, target: string, headers: string): Promise<string> {
  const { connect } = await import('node:net')
  return await new Promise<string>((resolve, reject) => {
    let text = ''
    const socket = connect(port, '127.0.0.1', () => {
      // Content-Length from the body (it was 26 for 27 bytes: the byte left over made a second, broken
      // request that could be answered first).
      const body = `objects=${FIXTURE_IDS.A}`
      socket.write(`POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    })
    socket.on('data', (c: Buffer) => { text += c.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(text))
  })
}

test('only the listed endpoints exist: path escapes never reach the upstream', async (t) => {
  const { gateway, bot, behind } = await setup(t)
  const origin = new URL(gateway).origin
  const port = Number(new URL(gateway).port)
  behind.resetCalls()
  const attempts = [
    '/atlas/api/../admin/', '/atlas/api/%2e%2e/admin/', '/atlas/api/%2E%2E%2Fadmin/', '/atlas/api//evil.example/',
    '/atlas/api/cone/../objects/', '/atlas/api/cone%2F..%2Fobjects/', '/atlas/api/admin/', '/atlas/api/objects/%2e%2e/',
    '/atlas/api//objects/', '/atlas/api/./objects/', '//evil.example/atlas/api/objects/'
  ]
  for (const target of attempts) {
    const reply = await rawRequest(port, target, `Authorization: Token ${bot.key}\r\n`)
    t.match(reply, /^HTTP\/1\.1 4\d\d /, `${target} → ${reply.slice(9, 12)}`)
  }
  t.equal(behind.totalCalls(), 0, 'no upstream call was made')
  // The trailing-slash rule: 301 with the slash added and the query kept, as upstream.
  const noSlash = await request(`${origin}/atlas/api/cone?ra=1`, { method: 'POST', headers: clientHeaders(bot.key) })
  t.equal(noSlash.statusCode, 301)
  t.equal(noSlash.headers.location, '/atlas/api/cone/?ra=1')
  t.equal(await noSlash.body.text(), '')
  t.equal(noSlash.headers['content-type'], 'text/html; charset=utf-8', 'Django\'s redirect type')
  // An absolute-form target (RFC 9112 §3.2.2: a server must accept it) is served by its path, and the
  // redirect names the path only, as Django's does: it used to send the caller on to the host it named.
  const absolute = await rawRequest(port, 'http://evil.example/atlas/api/cone?ra=1', `Authorization: Token ${bot.key}\r\n`)
  t.match(absolute, /^HTTP\/1\.1 301 /)
  t.match(absolute, /\r\nlocation: \/atlas\/api\/cone\/\?ra=1\r\n/i, 'the path and query only')
  t.notMatch(absolute, /evil\.example/)
  const served = await rawRequest(port, 'http://evil.example/atlas/api/objects/', `Authorization: Token ${bot.key}\r\n`)
  t.match(served, /^HTTP\/1\.1 200 /, 'an absolute-form target is the request for its path')
  t.match(served, new RegExp(`\\{"object":\\{"id":${FIXTURE_IDS.A},`))
})

test('compat reads share the v1 cache: a list polled both ways costs one upstream call', async (t) => {
  const { gateway, bot, behind, app } = await setup(t)
  behind.resetCalls()
  await post(gateway, 'objectlist', { objectlistid: '2', datethreshold: '2025-01-01' }, bot.key)
  const v1 = await app.inject({ url: '/v1/lists/good/objects?since=2025-01-01', headers: { authorization: `Bearer ${bot.key}` } })
  t.equal(v1.statusCode, 200)
  t.equal(behind.calls.get('objectlist'), 1)
})

test('JSON and multipart bodies are read as the upstream reads them; big ids in JSON stay exact', async (t) => {
  const { postBoth } = await setup(t)
  const bodies: Array<[string, string, string]> = [
    ['objects', 'application/json', `{"objects": ${FIXTURE_IDS.A}, "mjd": 0}`],
    ['objects', 'application/json', `{"objects": [${FIXTURE_IDS.A}]}`],
    ['objects', 'application/json', '{"objects": null}'],
    ['objects', 'application/json', '{"objects": '],
    ['vratodo', 'application/json', `{"objectid": ${FIXTURE_IDS.B}}`],
    ['cone', 'text/plain', 'ra=1'],
    ['cone', 'multipart/form-data; boundary=XyZ', '--XyZ\r\nContent-Disposition: form-data; name="ra"\r\n\r\n244.00092\r\n--XyZ\r\nContent-Disposition: form-data; name="dec"\r\n\r\n22.26801\r\n--XyZ\r\nContent-Disposition: form-data; name="radius"\r\n\r\n5\r\n--XyZ\r\nContent-Disposition: form-data; name="requestType"\r\n\r\ncount\r\n--XyZ--\r\n']
  ]
  for (const [endpoint, type, body] of bodies) {
    const { ours, theirs } = await postBoth(endpoint, type, body)
    t.equal(ours.status, theirs.status, `${endpoint} ${type} ${body.slice(0, 30)}: status`)
    t.equal(ours.text, theirs.text, `${endpoint} ${type}: same bytes`)
  }
})

// Fastify refused a Content-Type it cannot read as a media type with its own 415 ("Unsupported Media
// Type"), even for an empty body; DRF echoes the header in its 415, and never parses an empty body.
test('the Content-Type is judged as DRF judges it: its 415 echoes the header; an empty body is never parsed', async (t) => {
  const { postBoth, app } = await setup(t)
  const cases: Array<[string, string, string]> = [
    ['objects', 'json', `objects=${FIXTURE_IDS.A}`],
    ['objects', 'application/json charset=utf-8', `{"objects": "${FIXTURE_IDS.A}"}`],
    ['objects', 'application/x-www-form-urlencoded, text/plain', `objects=${FIXTURE_IDS.A}`],
    ['objects', '', `objects=${FIXTURE_IDS.A}`],
    ['objects', 'json', ''],
    ['objects', 'x', ''],
    ['auth-token', 'json', ''],
    ['auth-token', 'form', 'username=a']
  ]
  for (const [endpoint, type, body] of cases) {
    const { ours, theirs } = await postBoth(endpoint, type, body)
    t.equal(ours.status, theirs.status, `${endpoint} "${type}" ${body === '' ? 'no body' : 'with a body'}: status ${theirs.status}`)
    t.equal(ours.text, theirs.text, `${endpoint} "${type}": same bytes`)
  }
  // Without the slash, the redirect comes first whatever the type, as upstream.
  const redirect = await app.inject({ method: 'POST', url: '/atlas/api/objects', headers: { 'content-type': 'json' }, payload: 'objects=1' })
  t.equal(redirect.statusCode, 301)
})

// Allow lists OPTIONS, and the upstream answers it with DRF's SimpleMetadata; the gateway said 404.
test('OPTIONS answers DRF\'s metadata as upstream, with the key the endpoint needs, without a call', async (t) => {
  const { gateway, bot, direct, behind } = await setup(t)
  behind.resetCalls()
  const options = async (base: string, endpoint: string, token?: string) => {
    const res = await request(`${base}${endpoint}/`, { method: 'OPTIONS', headers: token === undefined ? {} : { authorization: `Token ${token}` } })
    return { status: res.statusCode, type: res.headers['content-type'], text: await res.body.text() }
  }
  for (const endpoint of ['cone', 'objects', 'vrascores', 'objectgroupsdelete', 'objectdetectionlist', 'auth-token']) {
    const ours = await options(gateway, endpoint, bot.key)
    const theirs = await options(direct.baseUrl, endpoint, direct.tokens.write)
    t.equal(ours.status, 200, `${endpoint}: 200`)
    // DRF title-cases the view name (str.title()): "Vra Scores", "Object Detection List".
    if (endpoint === 'vrascores') t.match(JSON.parse(ours.text), { name: 'Vra Scores' })
    if (endpoint === 'objectdetectionlist') t.match(JSON.parse(ours.text), { name: 'Object Detection List' })
    t.equal(ours.type, theirs.type, `${endpoint}: ${String(theirs.type)}`)
    t.equal(ours.text, theirs.text, `${endpoint}: same metadata`)
  }
  // Without a key: the upstream's 401 for the API views; auth-token/ needs none.
  for (const endpoint of ['cone', 'auth-token']) {
    const ours = await options(gateway, endpoint)
    const theirs = await options(direct.baseUrl, endpoint)
    t.equal(ours.status, theirs.status, `${endpoint} without a key: ${theirs.status}`)
    t.equal(ours.text, theirs.text, `${endpoint} without a key: same bytes`)
  }
  const noSlash = await request(`${gateway}cone`, { method: 'OPTIONS' })
  t.equal(noSlash.statusCode, 301, 'without the slash: the redirect, as for the other methods')
  t.equal(behind.totalCalls(), 0, 'answered without a call')
})
