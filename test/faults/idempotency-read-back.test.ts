// Writes whose reply was lost (the upstream deadline passed, or the connection dropped once the request
// was sent) are read back where the upstream can show the effect: custom-list membership, the to-do
// queue and the detection list. The read goes to the upstream (never the cache) and is charged like
// any upstream call. The sandbox applies a write before it sleeps on a `delay` fault; a `hang` fault
// never reads the request, so that write is not applied.
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import { buildTestApp, demoAuth, FIXTURE_IDS, startTestSandbox, UNUSED_UPSTREAM } from '../helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'
import type { AuditRecord } from '../../src/audit/record.js'

const { A, C, D, E, F } = FIXTURE_IDS
// The writes' replies come after the timeout; every other call (reads, read-backs) must fit in it, also
// on a loaded CI machine (at 300 ms a first read of an object timed out there once; at 1000 ms once more,
// on a machine at a load of 13, a plain read of a record the sandbox in this process had to build).
const TIMEOUT_MS = 3000
const DELAY_MS = 3500
// The `vra` custom list is upstream object group 73.
const VRA_GROUP = 73

interface Replacement { status: number, contentType: string, body: string }

/**
 * A loopback proxy in front of the sandbox that, for the endpoints in `dropAfterSend`, forwards the
 * request, waits for the sandbox's answer (so the write is applied) and then destroys the gateway's
 * connection instead of relaying it; for those in `replaceAfterSend` it answers with the replacement
 * instead (a front proxy's 504 page, a reply the gateway cannot read).
 */
async function startDroppingProxy (t: Test, sandbox: Sandbox): Promise<{ url: string, dropAfterSend: Set<string>, replaceAfterSend: Map<string, Replacement> }> {
  const target = new URL(sandbox.baseUrl)
  const dropAfterSend = new Set<string>()
  const replaceAfterSend = new Map<string, Replacement>()
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const forward = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers, agent: false }, (up) => {
        const body: Buffer[] = []
        up.on('data', (c: Buffer) => body.push(c))
        up.on('end', () => {
          const endpoint = (req.url ?? '').split('?')[0]?.split('/').filter(Boolean).pop() ?? ''
          if (dropAfterSend.delete(endpoint)) {
            req.socket.destroy()
            return
          }
          const replacement = replaceAfterSend.get(endpoint)
          if (replacement !== undefined) {
            replaceAfterSend.delete(endpoint)
            res.writeHead(replacement.status, { 'content-type': replacement.contentType })
            res.end(replacement.body)
            return
          }
          res.writeHead(up.statusCode ?? 502, up.headers)
          res.end(Buffer.concat(body))
        })
      })
      forward.end(Buffer.concat(chunks))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}${target.pathname}`, dropAfterSend, replaceAfterSend }
}

/** The audit record of the write `res` answered: its outcome, upstream status and error. */
async function auditOf (app: FastifyInstance, res: { headers: Record<string, unknown> }): Promise<{ outcome: string, upstream_status: number | null, error: string | null } | undefined> {
  const records = (await app.inject({ url: '/v1/admin/audit?limit=1000', headers: demoAuth(app) })).json().records as AuditRecord[]
  const record = records.find((r) => r.request_id === res.headers['x-request-id'])
  return record === undefined ? undefined : { outcome: record.outcome, upstream_status: record.upstream_status, error: record.error }
}

function accessLine (logs: string, method: string, route: string): { upstream_calls: number, status: number } | undefined {
  return logs.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === 'request completed' && l.method === method && l.route === route)
    .pop() as { upstream_calls: number, status: number } | undefined
}

test('a membership add whose reply timed out is read back from the upstream, not the cache, and charged', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  const listsOf = async () => (await app.inject({ url: `/v1/objects/${D}/custom-lists`, headers: auth })).json().lists.map((l: { group_id: number }) => l.group_id)
  t.notOk((await listsOf()).includes(VRA_GROUP), 'cached now: D is not in the vra list')
  const shareBefore = (await app.inject({ url: '/v1/me', headers: auth })).json().usage.upstream_share_used
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objectgroups', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(res.statusCode, 201)
  t.same(res.json(), { list: 'vra', id: D, outcome: 'added' })
  t.equal(res.headers['write-read-back'], 'applied', 'the answer says it comes from a read-back')
  t.equal(sandbox.calls.get('objectgroups'), 1, 'the write was sent once')
  t.equal(sandbox.calls.get('objectgroupslist'), 1, 'one read-back, from the upstream although the cache held the answer')
  t.equal(accessLine(logs(), 'PUT', '/v1/custom-lists/:name/objects/:id')?.upstream_calls, 2, 'both calls are counted')
  const shareAfter = (await app.inject({ url: '/v1/me', headers: auth })).json().usage.upstream_share_used
  t.equal(shareAfter - shareBefore, 2, 'and both are charged to the consumer\'s upstream share')
  t.ok((await listsOf()).includes(VRA_GROUP), 'the cached view was invalidated')
})

test('a membership removal whose reply timed out reads back 204 removed', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  t.equal((await app.inject({ method: 'PUT', url: `/v1/custom-lists/salt/objects/${E}`, headers: auth })).statusCode, 201)
  sandbox.inject({ endpoint: 'objectgroupsdelete', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'DELETE', url: `/v1/custom-lists/salt/objects/${E}`, headers: auth })
  t.equal(res.statusCode, 204)
  t.equal(res.headers['write-read-back'], 'applied')
})

test('a to-do write: read back as queued when it landed; when it did not, a 504 that says so and is not kept', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  sandbox.inject({ endpoint: 'vratodo', kind: 'delay', delayMs: DELAY_MS })
  const landed = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: C } })
  t.equal(landed.statusCode, 201)
  t.same(landed.json(), { id: C, outcome: 'created' })
  t.equal(landed.headers['write-read-back'], 'applied')

  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'vratodo', kind: 'hang' })
  const headers = { ...auth, 'idempotency-key': 'todo-hung' }
  const lost = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: F } })
  t.equal(lost.statusCode, 504)
  t.equal(lost.json().code, 'GW_UPSTREAM_TIMEOUT')
  t.match(lost.json().detail, /a read-back shows that the object was not queued, so sending it again is safe/)
  t.equal(sandbox.calls.get('vratodolist'), 1)
  const retry = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: F } })
  t.equal(retry.statusCode, 201, 'the 504 was not kept: the retry with the same key ran')
  t.equal(retry.headers['idempotent-replayed'], undefined)
  t.equal(sandbox.calls.get('vratodo'), 2)
})

test('a detection-list move whose reply timed out reads back 200 moved', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objectdetectionlist', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'PUT', url: `/v1/objects/${C}/detection-list`, headers: demoAuth(app), payload: { list: 'eyeball' } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { id: C, list: 'eyeball', outcome: 'moved' })
  t.equal(res.headers['write-read-back'], 'applied')
  t.equal(sandbox.calls.get('objects'), 1, 'read from the object\'s record')
})

test('a connection dropped after the write was sent: membership is read back, a score is unknown', async (t) => {
  const sandbox = await startTestSandbox(t)
  const proxy = await startDroppingProxy(t, sandbox)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_BASE_URL: proxy.url } })
  const auth = demoAuth(app)
  proxy.dropAfterSend.add('objectgroups')
  const added = await app.inject({ method: 'PUT', url: `/v1/custom-lists/mookodi/objects/${C}`, headers: auth })
  t.equal(added.statusCode, 201)
  t.equal(added.headers['write-read-back'], 'applied')

  proxy.dropAfterSend.add('vrascores')
  const score = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: C, pfast: 0.5 } })
  t.equal(score.statusCode, 504)
  t.equal(score.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  t.match(score.json().detail, /The connection to the upstream broke during vrascores\/ after the request was sent/)
})

test('a read-back that cannot run (budget spent) says the outcome is open and that resending is safe', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS, UPSTREAM_RATE: '1/hour' } })
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objectgroups', kind: 'delay', delayMs: DELAY_MS })
  const res = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${A}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 504)
  t.equal(res.json().code, 'GW_UPSTREAM_TIMEOUT')
  t.match(res.json().detail, /the object may have been added and reading it back failed \(The shared upstream budget is spent/)
  t.match(res.json().detail, /cannot take effect twice, so sending it again is safe/)
  t.equal(sandbox.calls.get('objectgroupslist'), undefined, 'no call beyond the budget')
})

test('a refused connection never reached the upstream: no read-back', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { ATLAS_BASE_URL: UNUSED_UPSTREAM } })
  const res = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${A}`, headers: demoAuth(app) })
  t.ok(res.statusCode === 502 || res.statusCode === 503, `an upstream failure (${res.statusCode} ${res.json().code as string})`)
  t.equal(res.headers['write-read-back'], undefined)
  t.notMatch(logs(), /write reply lost/, 'nothing was read back')
})

// A reply that comes back after the view ran but says nothing the gateway can read (a front proxy's 5xx
// page, a 2xx that is not JSON or names no known outcome) does not show that the write was not
// applied. Taken as "not applied", a retry with the same Idempotency-Key sent a score a second time.
const GATEWAY_TIMEOUT_PAGE: Replacement = { status: 504, contentType: 'text/html', body: '<html><body><h1>504 Gateway Time-out</h1></body></html>' }

test('a 5xx page after the write was applied: a score\'s outcome is unknown and kept for its key, a membership is read back', async (t) => {
  const sandbox = await startTestSandbox(t)
  const proxy = await startDroppingProxy(t, sandbox)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_BASE_URL: proxy.url } })
  const auth = demoAuth(app)
  sandbox.resetCalls()
  proxy.replaceAfterSend.set('vrascores', GATEWAY_TIMEOUT_PAGE)
  const headers = { ...auth, 'idempotency-key': 'score-after-504' }
  const first = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers, payload: { id: C, preal: 0.5 } })
  t.equal(first.statusCode, 504)
  t.equal(first.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  t.match(first.json().detail, /The upstream answered vrascores\/ with status 504 and an HTML page after the request was sent/)
  const retry = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers, payload: { id: C, preal: 0.5 } })
  t.equal(retry.statusCode, 504)
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the retry gets the first outcome')
  t.equal(sandbox.calls.get('vrascores'), 1, 'the score was sent once')

  proxy.replaceAfterSend.set('objectgroups', GATEWAY_TIMEOUT_PAGE)
  const added = await app.inject({ method: 'PUT', url: `/v1/custom-lists/mookodi/objects/${E}`, headers: auth })
  t.equal(added.statusCode, 201)
  t.same(added.json(), { list: 'mookodi', id: E, outcome: 'added' })
  t.equal(added.headers['write-read-back'], 'applied')
  t.strictSame(await auditOf(app, first), { outcome: 'unknown', upstream_status: 504, error: 'GW_WRITE_OUTCOME_UNKNOWN' }, 'the score\'s record says what it was answered')
  t.strictSame(await auditOf(app, added), { outcome: 'created', upstream_status: 504, error: null }, 'and the add\'s its read-back')
})

// The audit recorded a write as its reply came (or did not), before the route read it back or named its
// outcome unknown: an add answered 201 from its read-back was recorded as error GW_UPSTREAM_TIMEOUT, a
// score answered 504 GW_WRITE_OUTCOME_UNKNOWN as error GW_UPSTREAM_TIMEOUT, and an add the upstream
// refused with 400 "Row created." as created.
test('the audit records the outcome each write was answered, after its read-back, in either dialect', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const auth = demoAuth(app)
  const score = async (preal: number) => await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: C, preal } })
  sandbox.inject({ endpoint: 'objectgroups', kind: 'delay', delayMs: DELAY_MS })
  const added = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.match({ status: added.statusCode, readBack: added.headers['write-read-back'] }, { status: 201, readBack: 'applied' })
  sandbox.inject({ endpoint: 'vratodo', kind: 'hang' })
  const notQueued = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: F } })
  t.equal(notQueued.json().code, 'GW_UPSTREAM_TIMEOUT', 'read back: not queued')
  sandbox.inject({ endpoint: 'vrascores', kind: 'hang' })
  const hung = await score(0.6)
  t.equal(hung.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  sandbox.inject({ endpoint: 'vrascores', kind: 'html500' })
  const page = await score(0.7)
  t.equal(page.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 400, body: `{"objectgroupid":${E},"info":"Row created."}` })
  const refused = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${E}`, headers: auth })
  t.equal(refused.json().code, 'GW_VALIDATION')
  // Compat answers the lost reply as an error, and reads nothing back.
  sandbox.inject({ endpoint: 'vratodo', kind: 'hang' })
  const compat = await app.inject({
    method: 'POST',
    url: '/atlas/api/vratodo/',
    headers: { authorization: `Token ${app.consumers.demoKey ?? ''}`, 'content-type': 'application/x-www-form-urlencoded' },
    payload: `objectid=${F}`
  })
  t.equal(compat.statusCode, 504)

  t.strictSame(await auditOf(app, added), { outcome: 'created', upstream_status: null, error: null }, '201 added, from its read-back')
  t.strictSame(await auditOf(app, notQueued), { outcome: 'error', upstream_status: null, error: 'GW_UPSTREAM_TIMEOUT' }, '504, read back: not queued')
  t.strictSame(await auditOf(app, hung), { outcome: 'unknown', upstream_status: null, error: 'GW_WRITE_OUTCOME_UNKNOWN' }, '504, outcome unknown')
  t.strictSame(await auditOf(app, page), { outcome: 'unknown', upstream_status: 500, error: 'GW_WRITE_OUTCOME_UNKNOWN' }, '504 after a 500 page, outcome unknown')
  t.strictSame(await auditOf(app, refused), { outcome: 'error', upstream_status: 400, error: 'GW_VALIDATION' }, '400: the upstream refused the fields')
  t.strictSame(await auditOf(app, compat), { outcome: 'error', upstream_status: null, error: 'GW_UPSTREAM_TIMEOUT' }, 'compat: the error it answered')
})

test('a 2xx the gateway cannot read after the write was applied is read back, not reported as a failure to resend', async (t) => {
  const sandbox = await startTestSandbox(t)
  const proxy = await startDroppingProxy(t, sandbox)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_BASE_URL: proxy.url } })
  const auth = demoAuth(app)
  sandbox.resetCalls()
  proxy.replaceAfterSend.set('vratodo', { status: 201, contentType: 'application/json', body: '{"info":"Row created"}' })
  const queued = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: F } })
  t.equal(queued.headers['write-read-back'], 'applied', `read back (${queued.statusCode} ${queued.body.slice(0, 200)})`)
  proxy.replaceAfterSend.set('vrascores', { status: 200, contentType: 'application/json', body: '{"info": ' })
  const score = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: F, preal: 0.5 } })
  t.equal(score.json().code, 'GW_WRITE_OUTCOME_UNKNOWN', `malformed JSON: the outcome is unknown (${score.statusCode})`)
  t.match(score.json().detail, /with status 200 and malformed JSON after the request was sent/)
  t.equal(sandbox.calls.get('vrascores'), 1)
})

// The VRA writes answer "Row created.", "Object does not exist." and (to-do) "Duplicate row. Cannot add
// row."; another known text on a 2xx ("Error updating row.", the detection list's failure) was passed on
// as 201 {"outcome":"rejected"}, a success status for a write that may or may not have been applied.
test('a VRA write answered with an outcome text it never sends is not a 201: read back, or outcome unknown', async (t) => {
  const sandbox = await startTestSandbox(t)
  const proxy = await startDroppingProxy(t, sandbox)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_BASE_URL: proxy.url } })
  const auth = demoAuth(app)
  const odd = (id: string): Replacement => ({ status: 201, contentType: 'application/json', body: `{"objectid":${id},"info":"Error updating row."}` })
  proxy.replaceAfterSend.set('vrascores', odd(C))
  const score = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: auth, payload: { id: C, preal: 0.5 } })
  t.equal(score.statusCode, 504, `not a success (${score.body.slice(0, 120)})`)
  t.equal(score.json().code, 'GW_WRITE_OUTCOME_UNKNOWN')
  proxy.replaceAfterSend.set('vratodo', odd(F))
  const queued = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: auth, payload: { id: F } })
  t.equal(queued.headers['write-read-back'], 'applied', `read back (${queued.statusCode})`)
})

// A compat write passes the upstream's reply back as it is, so nothing reads its effect back; a lost or
// unreadable reply invalidated nothing, and both dialects kept answering the state before the write
// (compat vratodolist [] and v1 todo count 0 from the cache, the object still on its old list).
async function compatViews (app: FastifyInstance) {
  const auth = demoAuth(app)
  const compat = { authorization: `Token ${app.consumers.demoKey ?? ''}`, 'content-type': 'application/x-www-form-urlencoded' }
  const read = async (url: string) => {
    const res = await app.inject({ url, headers: auth })
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    return res.json()
  }
  return {
    post: async (endpoint: string, payload: string) => await app.inject({ method: 'POST', url: `/atlas/api/${endpoint}/`, headers: compat, payload }),
    queued: async (id: string) => (await read(`/v1/vra/todo?ids=${id}`)).count as number,
    listOf: async (id: string) => (await read(`/v1/objects/${id}`)).object.detection_list_id as number
  }
}

test('a compat write whose reply timed out drops the cached views of both dialects', async (t) => {
  const { app, sandbox } = await buildTestApp(t, { config: { UPSTREAM_TIMEOUT_MS: TIMEOUT_MS } })
  const { post, queued, listOf } = await compatViews(app)
  t.equal((await post('vratodolist', `objects=${D}`)).body, '[]', 'cached: D is not queued')
  t.equal(await queued(D), 0, 'cached in v1 too')
  sandbox.inject({ endpoint: 'vratodo', kind: 'delay', delayMs: DELAY_MS })
  const lost = await post('vratodo', `objectid=${D}`)
  t.equal(lost.statusCode, 504, 'compat answers the lost reply as before')
  t.equal(lost.body, '{"detail":"The upstream did not answer vratodo/ in time; try again later."}')
  await new Promise((resolve) => setTimeout(resolve, DELAY_MS))
  t.not((await post('vratodolist', `objects=${D}`)).body, '[]', 'compat vratodolist shows the queued object')
  t.equal(await queued(D), 1, 'and so does v1')

  const before = await listOf(E)
  const target = before === 4 ? 3 : 4
  sandbox.inject({ endpoint: 'objectdetectionlist', kind: 'delay', delayMs: DELAY_MS })
  t.equal((await post('objectdetectionlist', `objectid=${E}&objectlist=${target}`)).statusCode, 504)
  await new Promise((resolve) => setTimeout(resolve, DELAY_MS))
  t.equal(await listOf(E), target, 'the object record shows the move')
})

test('a compat write answered with a 5xx page or malformed JSON after it was applied drops the cached views', async (t) => {
  const sandbox = await startTestSandbox(t)
  const proxy = await startDroppingProxy(t, sandbox)
  const { app } = await buildTestApp(t, { upstream: sandbox, config: { ATLAS_BASE_URL: proxy.url } })
  const { post, queued, listOf } = await compatViews(app)
  t.equal(await queued(F), 0)
  proxy.replaceAfterSend.set('vratodo', GATEWAY_TIMEOUT_PAGE)
  const page = await post('vratodo', `objectid=${F}`)
  t.equal(page.statusCode, 502, 'compat answers the 5xx page as before')
  t.equal(page.body, '{"detail":"The upstream answered vratodo/ with status 504 and an HTML page; try again later."}')
  t.equal(await queued(F), 1, 'the to-do view was dropped')

  const before = await listOf(C)
  const target = before === 4 ? 3 : 4
  proxy.replaceAfterSend.set('objectdetectionlist', { status: 200, contentType: 'application/json', body: '{"info": ' })
  t.equal((await post('objectdetectionlist', `objectid=${C}&objectlist=${target}`)).statusCode, 502)
  t.equal(await listOf(C), target, 'the record was dropped after malformed JSON')
})

// A membership change took any outcome text the gateway knows as its own: 201 "Error updating row."
// (which objectgroups/ never sends) was answered 200 {"outcome":"rejected"} for an add that did not
// happen, and kept under the Idempotency-Key. A 2xx naming no outcome of the endpoint is read back.
test('a membership change answered with an outcome it never sends is read back, not answered 2xx', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const headers = { ...auth, 'idempotency-key': '"odd-add"' }
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 201, body: `{"objectgroupid":${D},"info":"Error updating row."}` })
  const added = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers })
  t.equal(added.statusCode, 502, `not a success (${added.body.slice(0, 160)})`)
  t.equal(added.json().code, 'GW_UPSTREAM_ERROR')
  t.match(added.json().detail, /with status 201 and JSON with no known outcome after the request was sent; a read-back shows that the object was not added, so sending it again is safe/)
  t.equal(sandbox.calls.get('objectgroupslist'), 1, 'read back')
  const retry = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers })
  t.equal(retry.statusCode, 201, 'the 502 was not kept: the retry with the same key ran and added it')
  t.equal(retry.headers['idempotent-replayed'], undefined)

  sandbox.inject({ endpoint: 'objectgroupsdelete', kind: 'status', status: 200, body: `{"objectgroupid":${D},"info":"Row created."}` })
  const removed = await app.inject({ method: 'DELETE', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(removed.statusCode, 502, `a removal answered "Row created." is read back (${removed.body.slice(0, 160)})`)
  t.match(removed.json().detail, /a read-back shows that the object was not removed/)

  // Success texts on a 400 are no success: never a 2xx.
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 400, body: `{"objectgroupid":${E},"info":"Row created."}` })
  const refused = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${E}`, headers: auth })
  t.equal(refused.statusCode, 400, `a 400 stays a failure (${refused.body.slice(0, 160)})`)
  const bulk = await app.inject({
    method: 'POST', url: '/v1/custom-lists/vra/members', headers: auth, payload: { add: [E] }
  })
  t.equal(bulk.statusCode, 200)
  t.same(bulk.json().results, [{ id: E, op: 'add', status: 201, outcome: 'added' }], 'the fault was used once; E was not added before')
})

// The detection-list route took any known outcome as a move: a bare 204 (read as "removed") or 200
// "Duplicate row. Cannot add row.", which objectdetectionlist/ never sends, was answered 200 moved
// for a move that did not happen, where the same 204 on a to-do write was read back.
test('a detection-list move answered with an outcome it never sends is read back, not answered moved', async (t) => {
  const { app, sandbox } = await buildTestApp(t)
  const auth = demoAuth(app)
  const listOf = async (id: string) => (await app.inject({ url: `/v1/objects/${id}`, headers: auth })).json().object.detection_list_id as number
  const [list, listId] = (await listOf(E)) === 4 ? ['galcand', 12] : ['eyeball', 4]
  const move = async () => await app.inject({ method: 'PUT', url: `/v1/objects/${E}/detection-list`, headers: auth, payload: { list } })
  sandbox.resetCalls()
  sandbox.inject({ endpoint: 'objectdetectionlist', kind: 'status', status: 204, body: '', contentType: 'text/html' })
  const bare = await move()
  t.equal(bare.statusCode, 502, `a bare 204 is no move (${bare.body.slice(0, 160)})`)
  t.match(bare.json().detail, /with status 204 and an HTML page after the request was sent; a read-back shows that the object was not moved/)
  t.equal(sandbox.calls.get('objects'), 1, 'read back from the record')
  sandbox.inject({ endpoint: 'objectdetectionlist', kind: 'status', status: 200, body: `{"objectid":${E},"info":"Duplicate row. Cannot add row."}` })
  const duplicate = await move()
  t.equal(duplicate.statusCode, 502, `"Duplicate row." is no move (${duplicate.body.slice(0, 160)})`)
  t.match(duplicate.json().detail, /with status 200 and JSON with no known outcome after the request was sent; a read-back shows that the object was not moved/)
  t.not(await listOf(E), listId, 'and it was not')
  const moved = await move()
  t.equal(moved.statusCode, 200)
  t.same(moved.json(), { id: E, list, outcome: 'moved' })
  t.equal(moved.headers['write-read-back'], undefined, 'a real move is answered from its reply')
  t.equal(await listOf(E), listId)
})
