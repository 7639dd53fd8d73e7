// A realistic mixed workload through the gateway against the sandbox, counting upstream calls.
// 20 consumers run 12 rounds together; in each round every consumer polls a detection list and the VRA
// scores (with its own filters), reads 3 objects picked by Zipf-like popularity from 300 ids, every 4th
// round runs a cone search at one of 5 positions, and every 6th round queues one object for VRA.
//
// Ceiling the design makes possible, derived from the workload (all of it runs inside one freshness
// window, so nothing expires):
//   - tables: 2 wide reads (one list, one VRA table); our to-do writes invalidate only the to-do table,
//     which nobody reads here, so no refetch;
//   - cones: at most 5 (distinct positions);
//   - writes: one upstream call each (20 consumers × 2 write rounds = 40);
//   - objects: the 20 consumers' reads of a wave are sent together and are batched into one objects/ call
//     per wave: at most 12 rounds × 3 waves = 36 calls (fewer once popular ids are cached). The batching
//     window is widened to 250 ms here so that a loaded CI machine, which can spread one wave's requests
//     over more than the default 10 ms, still gathers each wave into one window.
// So upstream calls ≤ 2 + 5 + 40 + 36 = 83 for 20 × 12 × (2 + 3) + cones + writes consumer requests.
import { test } from 'tap'
import { buildTestApp } from '../helper.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { createRandom } from './hour-workload.js'

const CONSUMERS = 20
const ROUNDS = 12
const OBJECT_POOL = 300
const CONES = [[244.00092, 22.26801], [10, 10], [120, -30], [200, 45], [300, 5]] as const

/** Zipf-like rank: rank k has weight 1/k. */
function zipf (random: () => number, n: number): number {
  const h = Array.from({ length: n }, (_, k) => 1 / (k + 1)).reduce((a, b) => a + b, 0)
  let u = random() * h
  for (let k = 0; k < n; k++) {
    u -= 1 / (k + 1)
    if (u <= 0) return k
  }
  return n - 1
}

test('upstream calls per 1,000 consumer requests under a mixed workload', async (t) => {
  const consumers = Array.from({ length: CONSUMERS }, (_, i) => makeConsumer(`c${i}`, {
    scopes: ['read', 'write:vra'], rate: '100000/minute', daily_objects: 1000000, upstream_share: 10000
  }))
  const { app, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, consumers), UPSTREAM_BATCH_WINDOW_MS: 250 } })
  const pool = sandbox.ids().slice(0, OBJECT_POOL).map(String)
  const random = createRandom(42)
  sandbox.resetCalls()
  let requests = 0
  let failures = 0
  const send = async (key: string, opts: { method?: 'GET' | 'POST', url: string, payload?: object }) => {
    requests++
    const res = await app.inject({ method: opts.method ?? 'GET', url: opts.url, payload: opts.payload, headers: { authorization: `Bearer ${key}` } })
    if (res.statusCode >= 400) failures++
  }

  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(consumers.map((c, i) => Promise.all([
      send(c.key, { url: `/v1/lists/good/objects?vra_gte=${(i % 5) * 2}` }),
      send(c.key, { url: `/v1/vra/scores?since=2020-01-0${1 + (i % 9)}` })
    ])))
    for (let wave = 0; wave < 3; wave++) {
      await Promise.all(consumers.map((c) => send(c.key, { url: `/v1/objects/${pool[zipf(random, OBJECT_POOL)]}` })))
    }
    if (round % 4 === 0) {
      await Promise.all(consumers.map((c, i) => {
        const [ra, dec] = CONES[i % CONES.length] as readonly [number, number]
        return send(c.key, { url: `/v1/cone?ra=${ra}&dec=${dec}&radius=30&mode=all` })
      }))
    }
    if (round % 6 === 0) {
      await Promise.all(consumers.map((c, i) => send(c.key, { method: 'POST', url: '/v1/vra/todo', payload: { id: pool[(round + i) % OBJECT_POOL] } })))
    }
  }

  const upstreamCalls = sandbox.totalCalls()
  const perThousand = Math.round(upstreamCalls * 1000 / requests * 10) / 10
  const objectCalls = sandbox.calls.get('objects') ?? 0
  t.comment(`workload: ${requests} consumer requests, ${upstreamCalls} upstream calls (${objectCalls} objects/), ${perThousand} per 1,000 requests`)
  const count = async (name: 'predicted' | 'predictedRead') => (await app.metrics[name].get()).values.reduce((sum, v) => sum + v.value, 0)
  t.comment(`predicted records: ${await count('predicted')}, of which read: ${await count('predictedRead')}`)
  t.equal(failures, 0, 'every consumer request succeeded')
  t.ok(upstreamCalls <= 83, `upstream calls ${upstreamCalls} ≤ the derived ceiling 83`)
  t.ok(objectCalls <= ROUNDS * 3, `objects/ calls ${objectCalls} ≤ one per wave (${ROUNDS * 3})`)
  t.equal(sandbox.calls.get('objectlist'), 1, 'one wide list read served every filtered variant')
  t.equal(sandbox.calls.get('vrascoreslist'), 1, 'one wide VRA read served every since variant')
})
