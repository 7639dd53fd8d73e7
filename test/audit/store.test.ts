// The two audit stores behind one contract: the Redis stream and the JSON-lines file page the same way
// through more records than one read takes (store.ts SCAN_BATCH), filter alike, and skip what is past
// the retention.
import { test, type Test } from 'tap'
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { compareIds, type AuditDraft, type AuditRecord } from '../../src/audit/record.js'
import { createFileAuditStore, createRedisAuditStore, type AuditStore } from '../../src/audit/store.js'
import { TEST_REDIS_URL } from '../helper.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

const COUNT = 1100

function draft (k: number, time: number): AuditDraft {
  return {
    time: new Date(time).toISOString(),
    consumer: k % 100 === 7 ? 'rare' : 'common',
    request_id: `req-${k}`,
    route: 'POST /v1/vra/todo',
    dialect: 'v1',
    endpoint: 'vratodo',
    object_ids: [String(1000000000000000000n + BigInt(k % 10))],
    list: null,
    fields: { objectid: String(k) },
    outcome: 'created',
    upstream_status: 201,
    error: null
  }
}

async function contract (t: Test, store: AuditStore, name: string) {
  const start = Date.now()
  const written: AuditRecord[] = []
  for (let k = 0; k < COUNT; k++) written.push(await store.append(draft(k, start)))
  const ids: string[] = []
  for (let cursor: string | null | undefined; cursor !== null;) {
    const page = await store.query({ limit: 400, ...(cursor === undefined ? {} : { cursor }) })
    t.ok(page.records.length <= 400)
    ids.push(...page.records.map((r) => r.id))
    cursor = page.next
  }
  t.strictSame(ids, written.map((r) => r.id), `${name}: every record once, in order, across pages`)
  const rare = await store.query({ limit: 1000, consumer: 'rare' })
  t.strictSame(rare.records.map((r) => r.request_id), written.filter((r) => r.consumer === 'rare').map((r) => r.request_id), `${name}: a sparse filter reads past one batch`)
  t.equal(rare.next, null)
  const first = await store.query({ limit: 3, consumer: 'rare', object: '1000000000000000007' })
  t.equal(first.records.length, 3)
  t.ok(first.next !== null)
  t.equal((await store.query({ limit: 10, since: start + 60000 })).records.length, 0, `${name}: since`)
  t.equal((await store.query({ limit: 10, until: start - 60000 })).records.length, 0, `${name}: until`)
}

// The bounds apply to each record's `time`, taken before the append: an append that lands later (a busy
// Redis) or earlier (a replica's clock ahead of the store's) is still on the side its time says.
async function timeBounds (t: Test, store: AuditStore, name: string) {
  const late = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 10))
  const lagged = await store.append({ ...draft(1, late), consumer: 'bounds' })
  const ahead = await store.append({ ...draft(2, Date.now() + 5000), consumer: 'bounds' })
  const boundary = late + 1
  t.strictSame((await store.query({ limit: 10, consumer: 'bounds', until: boundary })).records.map((r) => r.id), [lagged.id], `${name}: until, on the record's time`)
  t.strictSame((await store.query({ limit: 10, consumer: 'bounds', since: boundary })).records.map((r) => r.id), [ahead.id], `${name}: since, on the record's time`)
  t.strictSame((await store.query({ limit: 10, consumer: 'bounds', since: Date.parse(ahead.time) })).records.map((r) => r.id), [ahead.id], `${name}: a time ahead of the append`)
  // Pages over a bounded range take each record once.
  const ids: string[] = []
  for (let cursor: string | null | undefined; cursor !== null;) {
    const page = await store.query({ limit: 1, consumer: 'bounds', since: late, until: Date.parse(ahead.time) + 1, ...(cursor === undefined ? {} : { cursor }) })
    ids.push(...page.records.map((r) => r.id))
    cursor = page.next
  }
  t.strictSame(ids, [lagged.id, ahead.id], `${name}: bounded pages`)
}

test('the file store', async (t) => {
  const path = join(t.testdir(), 'audit.jsonl')
  t.equal((await createFileAuditStore(path, { retentionDays: 30, maxEntries: 100 }).query({ limit: 10 })).records.length, 0, 'no file yet: no records')
  const store = createFileAuditStore(path, { retentionDays: 30, maxEntries: 100 })
  await contract(t, store, 'file')
  await timeBounds(t, store, 'file')
  // A line cut short by a crash, and a record older than the retention, are skipped.
  appendFileSync(path, '{"id":"1-0","time":"2000-01-01T00:00:00.000Z"\n' + JSON.stringify({ id: '2-0', ...draft(1, Date.parse('2001-01-01')) }) + '\n')
  const after = await store.append(draft(5, Date.now()))
  const last = await store.query({ limit: 1000, cursor: '0-0', since: Date.now() - 60000, consumer: 'common', object: '1000000000000000005' })
  t.equal(last.records[last.records.length - 1]?.id, after.id, 'appends continue after a damaged line')
  const all = await store.query({ limit: 1000, cursor: after.id })
  t.equal(all.records.length, 0)
})

test('the file store: ids keep increasing when the clock steps back', async (t) => {
  let clock = Date.now()
  const store = createFileAuditStore(join(t.testdir(), 'audit.jsonl'), { retentionDays: 30, maxEntries: 100, now: () => clock })
  const written = [await store.append(draft(0, clock)), await store.append(draft(1, clock))]
  clock -= 1
  written.push(await store.append(draft(2, clock)))
  clock += 5
  written.push(await store.append(draft(3, clock)))
  const ids = written.map((r) => r.id)
  t.strictSame([...ids].sort(compareIds), ids, 'in append order')
  t.equal(new Set(ids).size, ids.length, 'each once')
  const paged: string[] = []
  for (let cursor: string | null | undefined; cursor !== null;) {
    const page = await store.query({ limit: 1, ...(cursor === undefined ? {} : { cursor }) })
    paged.push(...page.records.map((r) => r.id))
    cursor = page.next
  }
  t.strictSame(paged, ids, 'pages of one take every record')
})

test('the file store: ids keep increasing across a restart with the clock behind the file', async (t) => {
  const path = join(t.testdir(), 'audit.jsonl')
  let clock = Date.now()
  const before = createFileAuditStore(path, { retentionDays: 30, maxEntries: 100, now: () => clock })
  const first = [await before.append(draft(0, clock)), await before.append(draft(1, clock))]
  // A new process whose clock is a second behind the last record's (a restart after NTP stepped it back).
  clock -= 1000
  const after = createFileAuditStore(path, { retentionDays: 30, maxEntries: 100, now: () => clock })
  const next = await after.append(draft(2, clock))
  t.ok(compareIds(next.id, first[1]?.id ?? '') > 0, `${next.id} after ${first[1]?.id ?? ''}`)
  const paged: string[] = []
  for (let cursor: string | null | undefined; cursor !== null;) {
    const page = await after.query({ limit: 1, ...(cursor === undefined ? {} : { cursor }) })
    paged.push(...page.records.map((r) => r.id))
    cursor = page.next
  }
  t.strictSame(paged, [...first, next].map((r) => r.id), 'pages of one take every record, in order')
})

test('the Redis stream', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const prefix = testKeyPrefix('audit-store')
  deleteKeysOnTeardown(t, TEST_REDIS_URL, prefix)
  const redis = await connectTestRedis(t, TEST_REDIS_URL)
  await contract(t, createRedisAuditStore(redis, prefix, { retentionDays: 30, maxEntries: 5000 }), 'redis')
  await timeBounds(t, createRedisAuditStore(redis, prefix + 'bounds:', { retentionDays: 30, maxEntries: 100 }), 'redis')
  // The cap: a stream capped at 100 keeps about that many (trimming is approximate, by whole nodes).
  const capped = createRedisAuditStore(redis, prefix + 'capped:', { retentionDays: 30, maxEntries: 100 })
  for (let k = 0; k < 400; k++) await capped.append(draft(k, Date.now()))
  const length = await redis.xlen(`${prefix}capped:audit`)
  t.ok(length >= 100 && length < 400, `capped (${length} kept of 400)`)
})

test('the Redis stream: a record appended long after its write (kept through a Redis outage) is still found by its time', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const prefix = testKeyPrefix('audit-late')
  deleteKeysOnTeardown(t, TEST_REDIS_URL, prefix)
  const redis = await connectTestRedis(t, TEST_REDIS_URL)
  const store = createRedisAuditStore(redis, prefix, { retentionDays: 30, maxEntries: 5000 })
  // Written 11 minutes ago, appended now (its stream id carries now): more than the ten minutes a
  // record's time and its id's may otherwise differ by.
  const written = Date.now() - 11 * 60000
  const late = await store.append({ ...draft(1, written), consumer: 'late' })
  const onTime = await store.append({ ...draft(2, Date.now()), consumer: 'late' })
  const around = (ms: number) => ({ limit: 10, consumer: 'late', since: ms - 60000, until: ms + 60000 })
  t.strictSame((await store.query(around(written))).records.map((r) => r.id), [late.id], 'a window around its time finds it (before: none)')
  t.strictSame((await store.query(around(Date.now()))).records.map((r) => r.id), [onTime.id], 'and not in a window around its append')
  t.strictSame((await store.query({ limit: 10, consumer: 'late', until: written + 1 })).records.map((r) => r.id), [late.id], 'until alone')
})

test('the Redis stream: a late append that fails leaves nothing behind to be appended twice', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  const prefix = testKeyPrefix('audit-late-fail')
  deleteKeysOnTeardown(t, TEST_REDIS_URL, prefix)
  const redis = await connectTestRedis(t, TEST_REDIS_URL)
  // The delay's bookkeeping times out once (as Redis comes back from an outage).
  let failures = 1
  const flaky = new Proxy(redis, {
    get (target, name, receiver) {
      if (name === 'eval' && failures > 0) return async () => { failures--; throw new Error('Command timed out') }
      const value = Reflect.get(target, name, receiver) as unknown
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
  const store = createRedisAuditStore(flaky, prefix, { retentionDays: 30, maxEntries: 5000 })
  const late = { ...draft(1, Date.now() - 20 * 60000), consumer: 'late' }
  await t.rejects(store.append(late), /timed out/)
  t.equal(await redis.xlen(`${prefix}audit`), 0, 'the failed append stored nothing (before: the record, with its delay unrecorded)')
  const kept = await store.append(late)
  t.strictSame((await store.query({ limit: 10, consumer: 'late', since: Date.parse(late.time) - 60000, until: Date.parse(late.time) + 60000 })).records.map((r) => r.id), [kept.id], 'the resend: once, and found by its time')
})
