// Compat writes whose object id cannot be an ATLAS id: every write endpoint checks the object first
// upstream, so the answer ("Object does not exist." with that endpoint's status) is known. The gateway
// gives it locally, byte for byte what the upstream gives, and nothing reaches the upstream.
import { test, type Test } from 'tap'
import { FIXTURE_IDS } from '../../helper.js'
import { startDialects, type Dialects, type Payload } from './dialect-helper.js'

const { A, U } = FIXTURE_IDS
const IMPOSSIBLE = ['-1', '0', '12345', '18446744073709551616', '999999999999999999', '4.0', ' -0 ']

// Each write endpoint with the other fields it needs; the object id goes in `objectid`.
const WRITES: Array<[string, Record<string, string>]> = [
  ['vrascores', { preal: '0.9', debug: 'True' }],
  ['vratodo', {}],
  ['vrarank', { rank: '1.4' }],
  ['objectgroups', { objectgroupid: '73' }],
  // The object is checked before the group: an unknown group changes nothing.
  ['objectgroups', { objectgroupid: '999' }],
  ['objectgroupsdelete', { objectgroupid: '73' }],
  ['objectgroupsdelete', { objectgroupid: '999' }],
  ['objectdetectionlist', { objectlist: '4' }],
  // The object is checked before the list number.
  ['objectdetectionlist', { objectlist: '2' }]
]

async function same (t: Test, d: Dialects, endpoint: string, payload: Payload, what: string): Promise<void> {
  const ours = await d.gateway(endpoint, payload)
  const theirs = await d.upstream(endpoint, payload)
  t.equal(ours.status, theirs.status, `${what}: status ${theirs.status}`)
  t.equal(ours.body, theirs.body, `${what}: same bytes`)
  t.equal(ours.contentType, theirs.contentType, `${what}: same content type`)
}

test('writes for ids that cannot exist: the upstream\'s "Object does not exist." reply, without a call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  for (const [endpoint, fields] of WRITES) {
    for (const id of IMPOSSIBLE) {
      await same(t, d, endpoint, { form: { objectid: id, ...fields } }, `${endpoint} ${JSON.stringify(fields)} objectid=${id}`)
    }
    await same(t, d, endpoint, { json: JSON.stringify({ objectid: -5, ...fields }) }, `${endpoint} JSON objectid -5`)
  }
  t.equal(d.behind.totalCalls(), 0, 'none of these reached the upstream')
  const metrics = await d.app.inject({ url: '/metrics' })
  t.notMatch(metrics.body, /gateway_upstream_calls_total\{endpoint="(vrascores|vratodo|vrarank|objectgroups|objectgroupsdelete|objectdetectionlist)"/,
    'the gateway counted no upstream write call either')
})

test('writes for a 19-digit id still go upstream (it may exist), however it is spelled', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  await same(t, d, 'vratodo', { form: { objectid: U } }, 'vratodo unknown 19-digit id')
  await same(t, d, 'vrascores', { form: { objectid: `+0${U}` } }, 'vrascores the same id with a sign and a leading zero')
  t.equal(d.behind.totalCalls(), 2, 'both reached the upstream')
  t.match(d.behind.received.at(-1)?.body ?? '', new RegExp(`(^|&)objectid=${U}(&|$)`), 'as the id itself, digit for digit')
  await same(t, d, 'objectdetectionlist', { form: { objectid: A, objectlist: '4' } }, 'a real object')
  t.equal(d.behind.totalCalls(), 3)
})

test('writes with a float the upstream cannot store (nan, inf) get DRF\'s field error, without a call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  for (const [endpoint, field] of [['vrascores', 'preal'], ['vrascores', 'rank'], ['vrarank', 'rank'], ['vrarank', 'rank_alt1']] as const) {
    for (const value of ['nan', 'inf', '-Infinity']) {
      const fields: Record<string, string> = { objectid: A, ...(endpoint === 'vrarank' && field !== 'rank' ? { rank: '1' } : {}), [field]: value }
      const res = await d.gateway(endpoint, { form: fields })
      t.equal(res.status, 400, `${endpoint} ${field}=${value}`)
      t.equal(res.body, JSON.stringify({ [field]: ['A valid number is required.'] }), `${endpoint} ${field}=${value}: DRF's words`)
    }
  }
  t.equal(d.behind.totalCalls(), 0, 'none reached the upstream')
})

// A written datetime was re-sent normalised to UTC: 0001-01-01T00:00:00+01:00 became
// 0000-12-31T23:00:00Z, which the upstream refuses (a 400 where the same request straight gives 201).
test('a written datetime reaches the upstream exactly as the client wrote it', async (t) => {
  const d = await startDialects(t)
  const { E } = FIXTURE_IDS
  for (const insertdate of ['0001-01-01T00:00:00+01:00', '2026-01-01 00:00:00.0000009+05:30', '2026-01-01', '2026-01-02T03:04Z']) {
    await same(t, d, 'vrascores', { form: { objectid: E, preal: '0.5', insertdate } }, `insertdate=${insertdate}`)
    t.equal(new URLSearchParams(d.behind.received.at(-1)?.body).get('insertdate'), insertdate, `${insertdate}: sent as written`)
  }
  await same(t, d, 'vrarank', { json: JSON.stringify({ objectid: E, rank: 1, insertdate: '0001-01-01T00:30:00+00:45' }) }, 'vrarank JSON insertdate')
})

// A JSON float is a Python float upstream, read through str(): a float field takes it, and a string
// field gets its repr ("1.1616002112216049e+18"), which is no id. JavaScript's text of it was A's id.
test('JSON floats: written as the upstream reads them; a float is not an id however it prints in JavaScript', async (t) => {
  const d = await startDialects(t)
  const { E } = FIXTURE_IDS
  await same(t, d, 'vrarank', { json: `{"objectid": ${E}, "rank": 2.0, "rank_alt1": 1e-05}` }, 'vrarank rank 2.0')
  t.equal(new URLSearchParams(d.behind.received.at(-1)?.body).get('rank'), '2', 'the rank reached the upstream')
  const float = await d.gateway('objects', { json: `{"objects": ${A}.0}` })
  const upstream = await d.upstream('objects', { json: `{"objects": ${A}.0}` })
  t.equal(upstream.status, 500, 'upstream: int("1.1616002112216049e+18") fails, its 500 page')
  t.equal(float.status, 400, 'the gateway: not an ATLAS id (its 400 for the upstream\'s 500-page inputs)')
  t.equal(float.body, '{"objects":["\\"1.1616002112216049e+18\\" is not an ATLAS id (19 digits)."]}')
})
