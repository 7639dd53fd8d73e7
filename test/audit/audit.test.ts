// The audit of upstream writes: every write route of both dialects leaves exactly one record naming the
// consumer that sent it, across two replicas sharing Redis; records hold no secret; the admin route
// filters and pages them. Without Redis the records go to the JSON-lines file.
import { test } from 'tap'
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import type { AuditRecord } from '../../src/audit/record.js'
import { hashKey } from '../../src/consumers/keys.js'
import { buildTestApp, FIXTURE_IDS, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { bearer, consumersFile, makeConsumer, type TestConsumer } from '../consumer-helper.js'
import { testKeyPrefix } from '../fixtures/redis-keys.js'
import { clearOfMidnight } from '../fixtures/wait.js'

const { A, B, C } = FIXTURE_IDS
const VRA_GROUP = '73' // the custom list "vra"
const WRITE_SCOPES = ['read', 'write:vra', 'write:custom-lists', 'write:detection-list'] as const

interface Write {
  endpoint: string
  id: string
  v1: { method: 'POST' | 'PUT' | 'DELETE', url: string, body?: Record<string, unknown> }
  compat: Record<string, string>
}

// Every write of cache/tags.ts WRITES, as the invalidation matrix sends them.
const WRITES: Write[] = [
  { endpoint: 'objectgroups', id: A, v1: { method: 'PUT', url: `/v1/custom-lists/vra/objects/${A}` }, compat: { objectid: A, objectgroupid: VRA_GROUP } },
  { endpoint: 'objectgroupsdelete', id: C, v1: { method: 'DELETE', url: `/v1/custom-lists/vra/objects/${C}` }, compat: { objectid: C, objectgroupid: VRA_GROUP } },
  { endpoint: 'vrascores', id: B, v1: { method: 'POST', url: '/v1/vra/scores', body: { id: B, preal: 0.5 } }, compat: { objectid: B, preal: '0.5' } },
  { endpoint: 'vratodo', id: B, v1: { method: 'POST', url: '/v1/vra/todo', body: { id: B } }, compat: { objectid: B } },
  { endpoint: 'vrarank', id: B, v1: { method: 'POST', url: '/v1/vra/ranks', body: { id: B, rank: 9.25 } }, compat: { objectid: B, rank: '9.25' } },
  { endpoint: 'objectdetectionlist', id: C, v1: { method: 'PUT', url: `/v1/objects/${C}/detection-list`, body: { list: 'possible' } }, compat: { objectid: C, objectlist: '3' } }
]

async function send (app: FastifyInstance, who: TestConsumer, write: Write, dialect: 'v1' | 'compat'): Promise<string> {
  const res = dialect === 'v1'
    ? await app.inject({ method: write.v1.method, url: write.v1.url, headers: bearer(who.key), ...(write.v1.body === undefined ? {} : { payload: write.v1.body }) })
    : await app.inject({
      method: 'POST',
      url: `/atlas/api/${write.endpoint}/`,
      headers: { authorization: `Token ${who.key}`, 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(write.compat).toString()
    })
  // A write the upstream refuses (removing what another write removed) is still a write: it is audited.
  if (res.statusCode >= 500) throw new Error(`${dialect} ${write.endpoint}: ${res.statusCode} ${res.body}`)
  return String(res.headers['x-request-id'])
}

async function allRecords (app: FastifyInstance, admin: TestConsumer, query = ''): Promise<AuditRecord[]> {
  const res = await app.inject({ url: `/v1/admin/audit?limit=1000${query}`, headers: bearer(admin.key) })
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body}`)
  return (res.json() as { records: AuditRecord[] }).records
}

function consumers () {
  return {
    alice: makeConsumer('alice', { scopes: [...WRITE_SCOPES], lists: ['*'] }),
    bob: makeConsumer('bob', { scopes: [...WRITE_SCOPES], lists: ['*'] }),
    admin: makeConsumer('auditor', { scopes: ['admin'] })
  }
}

test('every write route, both dialects, two replicas: exactly one record each, with its consumer', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const sandbox = await startTestSandbox(t)
  const { alice, bob, admin } = consumers()
  const file = consumersFile(t, [alice, bob, admin])
  const prefix = testKeyPrefix('audit')
  const replicas = [
    await buildTestApp(t, { upstream: sandbox, config: { CONSUMERS_FILE: file, REDIS_KEY_PREFIX: prefix } }),
    await buildTestApp(t, { upstream: sandbox, config: { CONSUMERS_FILE: file, REDIS_KEY_PREFIX: prefix } })
  ]
  const sent: Array<{ requestId: string, consumer: string, endpoint: string, dialect: string, id: string }> = []
  let k = 0
  for (const write of WRITES) {
    for (const dialect of ['v1', 'compat'] as const) {
      // Consumers and replicas alternate out of step, so neither stands for the other.
      const who = k % 3 === 0 ? bob : alice
      const replica = replicas[k % 2] as { app: FastifyInstance }
      k++
      sent.push({ requestId: await send(replica.app, who, write, dialect), consumer: who.entry.id, endpoint: write.endpoint, dialect, id: write.id })
    }
  }
  t.equal(sent.length, 12)

  for (const { app } of replicas) {
    const records = await allRecords(app, admin)
    t.equal(records.length, sent.length, 'one record per write, on either replica')
    for (const s of sent) {
      const mine = records.filter((r) => r.request_id === s.requestId)
      t.equal(mine.length, 1, `${s.dialect} ${s.endpoint}: exactly one record`)
      t.match(mine[0], { consumer: s.consumer, endpoint: s.endpoint, dialect: s.dialect, object_ids: [s.id], upstream_status: Number, error: null })
      t.not(mine[0]?.outcome, 'error')
    }
  }
  const records = await allRecords(replicas[0]?.app as FastifyInstance, admin)
  t.match(records.find((r) => r.endpoint === 'objectgroups'), { list: VRA_GROUP, fields: { objectid: A, objectgroupid: VRA_GROUP }, outcome: 'created' })
  t.match(records.find((r) => r.endpoint === 'vrascores' && r.dialect === 'v1'), { route: 'POST /v1/vra/scores', fields: { preal: '0.5' } })
  t.match(records.find((r) => r.dialect === 'compat'), { route: /^POST \/atlas\/api\// })

  // No secret anywhere: not the consumers' keys or their hashes, the upstream tokens or passwords.
  const text = JSON.stringify(records)
  for (const c of [alice, bob, admin]) {
    t.notOk(text.includes(c.key), 'no consumer key')
    t.notOk(text.includes(hashKey(c.key)), 'no key hash')
  }
  for (const token of Object.values(sandbox.tokens)) t.notOk(text.includes(token), 'no upstream token')
  for (const user of Object.values(sandbox.users)) t.notOk(text.includes(user.password), 'no upstream password')
  t.equal(records.filter((r) => Object.keys(r.fields).some((f) => /token|password|key/i.test(f))).length, 0, 'no field named like a secret')

  // Filters and cursor pagination.
  const app = replicas[1]?.app as FastifyInstance
  const page = async (query: string) => {
    const res = await app.inject({ url: `/v1/admin/audit?${query}`, headers: bearer(admin.key) })
    t.equal(res.statusCode, 200, res.body)
    return res.json() as { records: AuditRecord[], next_cursor: string | null }
  }
  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const p: { records: AuditRecord[], next_cursor: string | null } = await page(`limit=5${cursor === null ? '' : `&cursor=${cursor}`}`)
    seen.push(...p.records.map((r) => r.request_id))
    cursor = p.next_cursor
    pages++
  } while (cursor !== null)
  t.equal(pages, 3, '12 records in pages of 5')
  t.strictSame(seen, sent.map((s) => s.requestId), 'every record once, in the order written')
  const bobs = await page('consumer=bob')
  t.strictSame(bobs.records.map((r) => r.request_id), sent.filter((s) => s.consumer === 'bob').map((s) => s.requestId))
  t.equal(bobs.next_cursor, null)
  const ofC = await page(`object=${C}&limit=2`)
  t.equal(ofC.records.length, 2)
  t.ok(ofC.records.every((r) => r.object_ids.includes(C)))
  const restOfC = await page(`object=${C}&limit=10&cursor=${String(ofC.next_cursor)}`)
  t.equal(ofC.records.length + restOfC.records.length, sent.filter((s) => s.id === C).length)
  t.equal((await page('since=2999-01-01')).records.length, 0, 'since filters by time')
  t.equal((await page('until=2000-01-01')).records.length, 0, 'until too')
  t.equal((await page(`since=${new Date(Date.now() - 3600000).toISOString()}`)).records.length, 12)
  const bad = await app.inject({ url: '/v1/admin/audit?since=2026-02-30', headers: bearer(admin.key) })
  t.equal(bad.statusCode, 400, 'an impossible date is a 400')
  t.equal((await app.inject({ url: '/v1/admin/audit?limit=0', headers: bearer(admin.key) })).statusCode, 400)
  t.equal((await app.inject({ url: '/v1/admin/audit?cursor=x', headers: bearer(admin.key) })).statusCode, 400)
})

test('without Redis: a JSON-lines file; a failed write is recorded once, with its error', async (t) => {
  const { alice, admin } = consumers()
  const { app, config, sandbox } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) } })
  await send(app, alice, WRITES[3] as Write, 'v1')
  // A 500 page may follow an applied write, so the gateway reads the to-do queue back: A is not in it
  // (the 500 came before the view ran), so the write failed. B, queued just before, would read back applied.
  sandbox.inject({ endpoint: 'vratodo', kind: 'status', status: 500 })
  const failed = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(alice.key), payload: { id: A } })
  t.ok(failed.statusCode >= 500, `the write failed: ${failed.statusCode}`)
  await send(app, alice, WRITES[2] as Write, 'compat')

  const lines = readFileSync(config.AUDIT_FILE, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditRecord)
  t.equal(lines.length, 3, 'one line per write')
  t.match(lines[0], { consumer: 'alice', endpoint: 'vratodo', outcome: 'created', upstream_status: Number })
  t.match(lines[1], { consumer: 'alice', endpoint: 'vratodo', request_id: String(failed.headers['x-request-id']), outcome: 'error', upstream_status: 500, error: /^GW_/ })
  t.match(lines[2], { consumer: 'alice', endpoint: 'vrascores', dialect: 'compat' })
  t.notOk(readFileSync(config.AUDIT_FILE, 'utf8').includes(alice.key))

  const records = await allRecords(app, admin)
  t.strictSame(records.map((r) => r.id), lines.map((l) => l.id), 'the admin route reads the file')
  const second = await app.inject({ url: `/v1/admin/audit?limit=1&cursor=${lines[0]?.id ?? ''}`, headers: bearer(admin.key) })
  t.match(second.json(), { records: [{ id: lines[1]?.id }], next_cursor: lines[1]?.id })
})

// A write the upstream answered with an error page, a refused token or a throttle was recorded with
// upstream_status null: the status was read from the reply only when the write returned one.
test('a write the upstream answered with an error page, 401 or 429 records the upstream\'s status, in either dialect', async (t) => {
  const { alice, admin } = consumers()
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) } })
  sandbox.inject({ endpoint: 'vrascores', kind: 'html500' })
  const page = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: bearer(alice.key), payload: { id: B, preal: 0.7 } })
  t.equal(page.statusCode, 504, page.body)
  sandbox.inject({ endpoint: 'vratodo', kind: 'html500' })
  const compatPage = await app.inject({
    method: 'POST',
    url: '/atlas/api/vratodo/',
    headers: { authorization: `Token ${alice.key}`, 'content-type': 'application/x-www-form-urlencoded' },
    payload: `objectid=${B}`
  })
  t.equal(compatPage.statusCode, 502, compatPage.body)
  // The token refused on every replay: the write fails on the upstream's 401.
  sandbox.inject({ endpoint: 'vrarank', kind: 'status', status: 401, times: 3, body: '{"detail":"Invalid token."}' })
  const refused = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: bearer(alice.key), payload: { id: B, rank: 9.25 } })
  t.equal(refused.json().code, 'GW_UPSTREAM_AUTH', refused.body)
  // Last: the throttle pauses every upstream call after it.
  sandbox.inject({ endpoint: 'vrascores', kind: 'throttle', retryAfterS: 1 })
  const throttled = await app.inject({ method: 'POST', url: '/v1/vra/scores', headers: bearer(alice.key), payload: { id: B, preal: 0.8 } })
  t.equal(throttled.json().code, 'GW_UPSTREAM_BUDGET', throttled.body)
  const records = await allRecords(app, admin)
  const statusOf = (res: { headers: Record<string, unknown> }) => records.find((r) => r.request_id === res.headers['x-request-id'])?.upstream_status
  t.strictSame([statusOf(page), statusOf(compatPage), statusOf(refused), statusOf(throttled)], [500, 500, 401, 429])
})

test('a write refused 401 whose token refresh then fails records the write\'s own 401, not the login\'s status', async (t) => {
  const { alice, admin } = consumers()
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) } })
  sandbox.inject({ endpoint: 'vrarank', kind: 'status', status: 401, times: 1, body: '{"detail":"Token has expired."}' })
  sandbox.inject({ endpoint: 'auth-token', kind: 'html500' })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: bearer(alice.key), payload: { id: B, rank: 9.25 } })
  t.equal(res.json().code, 'GW_UPSTREAM_AUTH_BACKOFF', res.body)
  const record = (await allRecords(app, admin)).find((r) => r.request_id === res.headers['x-request-id'])
  // Before: 500, the status of the auth-token/ call the refresh made, read from the error's cause.
  t.match(record, { outcome: 'error', upstream_status: 401, error: 'GW_UPSTREAM_AUTH_BACKOFF' })
})

test('a write refused 401 and replayed, whose replay\'s reply is lost, records no status rather than the superseded 401', async (t) => {
  const { alice, admin } = consumers()
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) } })
  sandbox.inject({ endpoint: 'vrarank', kind: 'status', status: 401, times: 1, body: '{"detail":"Token has expired."}' })
  sandbox.inject({ endpoint: 'vrarank', kind: 'reset', times: 1 })
  const res = await app.inject({ method: 'POST', url: '/v1/vra/ranks', headers: bearer(alice.key), payload: { id: B, rank: 9.25 } })
  t.equal(res.json().code, 'GW_WRITE_OUTCOME_UNKNOWN', res.body)
  const record = (await allRecords(app, admin)).find((r) => r.request_id === res.headers['x-request-id'])
  // Before: upstream_status 401, the first attempt's, beside the replay's unknown outcome.
  t.match(record, { outcome: 'unknown', upstream_status: null })
})

test('a bulk membership change: one record per object written, all with its request id', async (t) => {
  const { alice, admin } = consumers()
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin]) } })
  const res = await app.inject({ method: 'POST', url: '/v1/custom-lists/vra/members', headers: bearer(alice.key), payload: { add: [A, B], remove: [C] } })
  t.equal(res.statusCode, 200, res.body)
  const records = await allRecords(app, admin)
  t.strictSame(records.map((r) => [r.endpoint, r.object_ids[0]]).sort(), [['objectgroups', A], ['objectgroups', B], ['objectgroupsdelete', C]].sort())
  t.ok(records.every((r) => r.request_id === res.headers['x-request-id'] && r.consumer === 'alice' && r.list === VRA_GROUP))
})

test('a write refused before it goes upstream leaves no record; an idempotent replay none either', async (t) => {
  const { alice, admin } = consumers()
  const reader = makeConsumer('reader')
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [alice, admin, reader]) } })
  const refused = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(reader.key), payload: { id: B } })
  t.equal(refused.statusCode, 403)
  const headers = { ...bearer(alice.key), 'idempotency-key': 'audit-once' }
  t.equal((await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: B } })).statusCode, 201)
  const replay = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers, payload: { id: B } })
  t.equal(replay.headers['idempotent-replayed'], 'true')
  const records = await allRecords(app, admin)
  t.equal(records.length, 1)
  t.equal(records[0]?.consumer, 'alice')
})

test('a write the share or the budget stops before it is sent leaves no record and counts no write', async (t) => {
  await clearOfMidnight()
  const { alice, admin } = consumers()
  const spent = makeConsumer('spent', { scopes: [...WRITE_SCOPES], upstream_share: 0 })
  const { app, sandbox } = await buildTestApp(t, { useRedis: false, config: { CONSUMERS_FILE: consumersFile(t, [alice, spent, admin]) } })
  const refused = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(spent.key), payload: { id: B } })
  t.match({ status: refused.statusCode, code: refused.json().code }, { status: 429, code: 'GW_QUOTA_EXHAUSTED' })
  // The upstream throttles one write (it was sent: recorded), and every call then pauses, unsent.
  sandbox.inject({ kind: 'throttle', retryAfterS: 120 })
  const throttled = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(alice.key), payload: { id: B } })
  t.match({ status: throttled.statusCode, code: throttled.json().code }, { status: 503, code: 'GW_UPSTREAM_BUDGET' })
  sandbox.resetCalls()
  const paused = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(alice.key), payload: { id: A } })
  t.match({ status: paused.statusCode, code: paused.json().code }, { status: 503, code: 'GW_UPSTREAM_BUDGET' })
  t.equal(sandbox.totalCalls(), 0, 'the paused write was not sent')

  const records = await allRecords(app, admin)
  t.strictSame(records.map((r) => [r.consumer, r.request_id]), [['alice', String(throttled.headers['x-request-id'])]], 'only the write that reached the upstream')
  const month = new Date().toISOString().slice(0, 7)
  const usage = await app.inject({ url: `/v1/admin/usage?month=${month}`, headers: bearer(admin.key) })
  const rows = (usage.json() as { rows: Array<{ consumer: string, writes: number, rejections: Record<string, number> }> }).rows
  t.match(rows.find((r) => r.consumer === 'spent'), { writes: 0, rejections: { quota: 1 } })
  t.match(rows.find((r) => r.consumer === 'alice'), { writes: 1, rejections: { upstream_budget: 2 } })
})

test('an until before 1970 is an empty page, with either store', async (t) => {
  const { alice, admin } = consumers()
  const file = consumersFile(t, [alice, admin])
  const stores = [
    ...(TEST_REDIS_URL === '' ? [] : [{ name: 'redis', useRedis: true }]),
    { name: 'file', useRedis: false }
  ]
  for (const { name, useRedis } of stores) {
    const { app } = await buildTestApp(t, { useRedis, config: { CONSUMERS_FILE: file } })
    await send(app, alice, WRITES[3] as Write, 'v1')
    for (const query of ['until=1969-12-31', 'until=0001-01-01', 'since=0001-01-01&until=1970-01-01']) {
      const res = await app.inject({ url: `/v1/admin/audit?${query}`, headers: bearer(admin.key) })
      t.strictSame({ status: res.statusCode, body: res.json() }, { status: 200, body: { records: [], next_cursor: null } }, `${name}: ${query}`)
    }
    t.equal((await allRecords(app, admin, '&since=0001-01-01')).length, 1, `${name}: a since before 1970 reads from the start`)
  }
})
