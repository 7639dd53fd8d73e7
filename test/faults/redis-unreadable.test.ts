// Records in Redis that do not decode (another version's form during a rolling update or a rollback,
// or a damaged value), read inside a guarded Redis call: an Idempotency-Key record and an audit record.
// Redis answered, so its health stays up and nothing unrelated is refused; the idempotency record is
// never taken as absent (its write may have been applied: a retry must not send it again), and the
// audit page is served without the record.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, demoAuth, FIXTURE_IDS, TEST_REDIS_URL } from '../helper.js'
import { runAudit } from '../../src/cli/audit.js'

const { A } = FIXTURE_IDS
const skip = TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false

function redisOf (app: FastifyInstance) {
  if (app.redis === null) throw new Error('the test needs Redis')
  return app.redis
}

/** A cone position never read before: a miss that needs Redis for its fill lock and the budget. */
let conePosition = 10
async function unrelatedMiss (app: FastifyInstance): Promise<{ statusCode: number, code?: string }> {
  const res = await app.inject({ url: `/v1/cone?ra=${conePosition++}&dec=5&radius=10`, headers: demoAuth(app) })
  return { statusCode: res.statusCode, ...(res.statusCode === 200 ? {} : { code: res.json<{ code: string }>().code }) }
}

test('an Idempotency-Key record that does not decode: 409, never a second write, and Redis stays up', { skip }, async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t, { config: { LIMITS_ON_REDIS_ERROR: 'closed' } })
  const redis = redisOf(app)
  const { idempotency } = app.atlas
  const write = async (key: string) => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: { ...demoAuth(app), 'idempotency-key': key }, payload: { id: A, preal: 0.4 } })
  const first = await write('genuine')
  t.equal(first.statusCode, 201)
  const genuine = await redis.get(idempotency.storeKey('demo', 'genuine'))
  if (genuine === null) throw new Error('no record kept for the genuine write')
  const record = JSON.parse(genuine) as Record<string, unknown>
  const { headers: _headers, ...withoutHeaders } = record

  const variants: Record<string, (key: string) => Promise<unknown>> = {
    'cut short': async (k) => redis.set(k, genuine.slice(0, Math.floor(genuine.length / 2)), 'PX', 60000),
    'without headers': async (k) => redis.set(k, JSON.stringify(withoutHeaders), 'PX', 60000),
    'headers null': async (k) => redis.set(k, JSON.stringify({ ...record, headers: null }), 'PX', 60000),
    'a status that is not a number': async (k) => redis.set(k, JSON.stringify({ ...record, status: '201' }), 'PX', 60000),
    'JSON null': async (k) => redis.set(k, 'null', 'PX', 60000),
    'an unknown state': async (k) => redis.set(k, JSON.stringify({ ...record, state: 'finished' }), 'PX', 60000),
    'a marker without its owner': async (k) => redis.set(k, JSON.stringify({ state: 'running', fingerprint: record.fingerprint }), 'PX', 60000),
    'another Redis type (a hash)': async (k) => { await redis.hset(k, 'state', 'done'); await redis.pexpire(k, 60000) }
  }
  for (const [name, plantIn] of Object.entries(variants)) {
    const key = `planted-${name.replace(/[^a-z]+/g, '-')}`
    const storeKey = idempotency.storeKey('demo', key)
    await plantIn(storeKey)
    const stored = await redis.dumpBuffer(storeKey)
    const writes = sandbox.calls.get('vrascores') ?? 0
    const res = await write(key)
    t.equal(res.statusCode, 409, `${name}: 409`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${name}: a problem document`)
    t.equal(res.json().code, 'GW_IDEMPOTENCY_KEY_UNREADABLE', `${name}: its own code`)
    t.equal(res.headers['retry-after'], undefined, `${name}: not to be sent again as it is`)
    t.equal(sandbox.calls.get('vrascores') ?? 0, writes, `${name}: the write was not sent upstream`)
    t.equal(app.redisHealth.state, 'up', `${name}: Redis stays up`)
    t.same(await unrelatedMiss(app), { statusCode: 200 }, `${name}: an unrelated miss right after is served`)
    t.equal((await redis.dumpBuffer(storeKey))?.equals(stored as Buffer), true, `${name}: the record is left as it was`)
  }
  t.match(logs(), /idempotency record does not decode/, 'logged')

  const extra = idempotency.storeKey('demo', 'extra-fields')
  await redis.set(extra, JSON.stringify({ ...record, v: 2, extra: { a: 1 } }), 'PX', 60000)
  const replayed = await write('extra-fields')
  t.equal(replayed.statusCode, 201, 'a record with fields this version does not know is replayed')
  t.equal(replayed.headers['idempotent-replayed'], 'true')
  const writes = sandbox.calls.get('vrascores') ?? 0
  t.equal((await write('a-new-key')).statusCode, 201, 'a new key runs')
  t.equal(sandbox.calls.get('vrascores'), writes + 1)
  const metrics = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${app.config.METRICS_TOKEN}` } })
  t.match(metrics.body, /^gateway_redis_errors_total 0$/m, 'no Redis error counted')
})

test('an audit record that does not decode is left out of the page and logged; Redis stays up', { skip }, async (t) => {
  const { app, config, logs } = await buildTestApp(t, { config: { LIMITS_ON_REDIS_ERROR: 'closed' } })
  const redis = redisOf(app)
  const stream = `${app.config.REDIS_KEY_PREFIX}audit`
  const write = async (score: number) => app.inject({ method: 'POST', url: '/v1/vra/scores', headers: demoAuth(app), payload: { id: A, preal: score } })
  t.equal((await write(0.3)).statusCode, 201)
  const appended = async (count: number): Promise<void> => {
    for (let i = 0; i < 100 && await redis.xlen(stream) < count; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await appended(1)
  const [[, fields] = ['', []]] = await redis.xrange(stream, '-', '+', 'COUNT', 1)
  const json = String(fields[1])
  const bad = [json.slice(0, 40), 'null', '42', '"text"', JSON.stringify({ ...JSON.parse(json) as object, time: 7 })]
  for (const text of bad) await redis.xadd(stream, '*', 'r', text)
  t.equal((await write(0.5)).statusCode, 201)
  await appended(2 + bad.length)

  const audit = async (query = '') => app.inject({ url: `/v1/admin/audit${query}`, headers: demoAuth(app) })
  const page = await audit()
  t.equal(page.statusCode, 200, 'the page is served (before: 503 "Redis does not answer")')
  t.same((page.json().records ?? []).map((r: { fields: { preal: string } }) => r.fields.preal), ['0.3', '0.5'], 'the two records this version wrote, without the others')
  t.equal(app.redisHealth.state, 'up', 'Redis stays up')
  t.same(await unrelatedMiss(app), { statusCode: 200 }, 'an unrelated miss right after is served')

  const one = await audit('?limit=1')
  t.equal(one.statusCode, 200)
  t.equal(one.json().records?.length, 1)
  const next = await audit(`?limit=1&cursor=${String(one.json().next_cursor)}`)
  t.equal(next.statusCode, 200, 'the page after it too')
  t.same((next.json().records ?? []).map((r: { fields: { preal: string } }) => r.fields.preal), ['0.5'])
  t.equal(next.json().next_cursor, null)
  t.match(logs(), /audit record does not decode/, 'logged')

  // npm run audit reads the same stream: the two records, and a line on stderr for each one left out.
  const cli = { out: '', err: '' }
  const env = { REDIS_URL: config.REDIS_URL, REDIS_KEY_PREFIX: config.REDIS_KEY_PREFIX, AUDIT_FILE: config.AUDIT_FILE, USAGE_FILE: config.USAGE_FILE }
  const code = await runAudit(['--since', '2000-01-01', '--json'], { env, out: (text) => { cli.out += text }, err: (text) => { cli.err += text } })
  t.equal(code, 0, cli.err)
  t.equal(cli.out.trim().split('\n').length, 2, 'npm run audit: the two records')
  t.equal(cli.err.match(/left out: it does not decode/g)?.length, bad.length, 'and one line for each record left out')
  const metrics = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${app.config.METRICS_TOKEN}` } })
  t.match(metrics.body, /^gateway_redis_errors_total 0$/m, 'no Redis error counted')
})
