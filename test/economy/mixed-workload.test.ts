// A mixed workload the economy work was not shaped on, over real HTTP against the sandbox, in wall time:
// 20 consumers run at once, each with its own seeded script and think times, so requests arrive spread
// over time (a batching window catches what happens to fall into it, nothing more). It counts upstream
// read calls per 1,000 consumer reads and holds the gateway to a ceiling.
//
//   - 7 object readers: single object reads, every 20–80 ms;
//   - 4 batch readers: 2–8 ids in one request, every 100–300 ms;
//   - 3 list pollers: one detection list each (follow_up, stars, movers), own filters, every 150–350 ms;
//   - 2 VRA pollers: one incremental (after_id), one with `since`, every 150–350 ms;
//   - 2 cone checkers: at the position of an object picked like the readers' (radius 2–250″, any
//     mode), every 300–700 ms;
//   - 2 curators: each reads its custom list every 300–700 ms and adds or removes a member every 4th step.
// Objects come from the members of the three polled lists with Zipf-like popularity (exponent 1.1) in a
// seeded order of their own (not the polled lists' order). The readers know the ids beforehand (read
// from the sandbox directly), as scripts that were handed them would; the gateway learns them only from
// what consumers ask. UPSTREAM_RATE is the real 100/hour; everything else is the gateway's default.
//
// Measured on 2026-11-30 (README.md, Cache and upstream economy): 28.8, 28.8 and 29.9 read calls per
// 1,000 reads on a loaded machine (the target is 30), 32.0 before the pace and the adaptive window. The
// calls this workload cannot avoid: one per polled table (5), one per distinct cone position (12), one
// custom-list re-read after each write that invalidated it (4), and the objects/ calls of ids read
// before the first list reads named them. What varies with timing is how many of those early misses
// share a call, so the ceiling is 31: above every measurement, below the figure before this work.
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'tap'
import { parseLossless } from '../../src/lib/json.js'
import { buildTestApp, sandboxPost, startTestSandbox } from '../helper.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'
import { createRandom, type Member } from './hour-workload.js'

const SEED = 77_2026
const MAX_READ_CALLS_PER_1000 = 31
const POLLED: Readonly<Record<string, number>> = { follow_up: 1, stars: 6, movers: 9 }
const CUSTOM = ['cv', 'heloise'] as const
const WRITE_ENDPOINTS = new Set(['objectgroups', 'objectgroupsdelete'])
// Calls that cost no budget: the token login and the health checks' ping of the API root.
const FREE_ENDPOINTS = new Set(['auth-token', 'unknown'])

type Role = 'reader' | 'batch' | 'list' | 'vra' | 'cone' | 'curator'
const ROLES: ReadonlyArray<{ role: Role, count: number, steps: number, thinkMs: readonly [number, number] }> = [
  { role: 'reader', count: 7, steps: 100, thinkMs: [20, 80] },
  { role: 'batch', count: 4, steps: 25, thinkMs: [100, 300] },
  { role: 'list', count: 3, steps: 20, thinkMs: [150, 350] },
  { role: 'vra', count: 2, steps: 20, thinkMs: [150, 350] },
  { role: 'cone', count: 2, steps: 10, thinkMs: [300, 700] },
  { role: 'curator', count: 2, steps: 12, thinkMs: [300, 700] }
]

/** A sampler of ranks 0…n-1 with weight 1/(k+1)^s. */
function zipf (random: () => number, n: number, s: number): () => number {
  const cumulative: number[] = []
  let total = 0
  for (let k = 0; k < n; k++) cumulative.push(total += 1 / (k + 1) ** s)
  return () => {
    const u = random() * total
    const k = cumulative.findIndex((c) => c >= u)
    return k < 0 ? n - 1 : k
  }
}

async function listMembers (post: (fields: Record<string, string>) => Promise<{ text: string }>, listId: number): Promise<Member[]> {
  const rows = parseLossless((await post({ objectlistid: String(listId) })).text) as Array<{ id: bigint, ra: number, dec: number }>
  return rows.map((r) => ({ id: String(r.id), ra: Number(r.ra), dec: Number(r.dec) }))
}

test('upstream read calls per 1,000 reads under an unseen mixed workload (20 consumers, real HTTP, wall time)', async (t) => {
  const sandbox = await startTestSandbox(t)
  const members: Member[] = []
  for (const id of Object.values(POLLED)) members.push(...await listMembers(async (f) => sandboxPost(sandbox, 'objectlist', f), id))
  const seeded = createRandom(SEED)
  // A popularity order of its own: a seeded shuffle of the members.
  const byPopularity = members.map((m) => ({ m, k: seeded() })).sort((a, b) => a.k - b.k).map((x) => x.m)

  const specs = ROLES.flatMap((r) => Array.from({ length: r.count }, (_, i) => ({ ...r, index: i })))
  const consumers = specs.map((s, i) => makeConsumer(`mix${i}`, s.role === 'curator'
    ? { scopes: ['read', 'write:custom-lists'], lists: [CUSTOM[s.index] as string] }
    : { scopes: ['read'] }))
  const { app } = await buildTestApp(t, {
    upstream: sandbox,
    config: { CONSUMERS_FILE: consumersFile(t, consumers), UPSTREAM_RATE: '100/hour', LOG_LEVEL: 'warn' }
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  sandbox.resetCalls()

  let reads = 0
  let writes = 0
  let ok = 0
  let sent = 0
  const statuses = new Map<number, number>()
  const ages: number[] = []
  const reasons = new Map<string, number>()
  const send = async (key: string, method: 'GET' | 'PUT' | 'DELETE', path: string): Promise<{ status: number, body: string }> => {
    const res = await fetch(address + path, { method, headers: { authorization: `Bearer ${key}` } })
    const body = await res.text()
    sent++
    if (method === 'GET') reads++
    else writes++
    if (res.status >= 200 && res.status < 300) ok++
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    const age = res.headers.get('age')
    if (method === 'GET' && res.ok && age !== null) ages.push(Number(age))
    const reason = res.headers.get('x-cache-reason')
    if (reason !== null) reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
    return { status: res.status, body }
  }

  const run = async (spec: typeof specs[number], c: { key: string }, n: number) => {
    const random = createRandom(SEED + 1 + n)
    const popular = zipf(random, byPopularity.length, 1.1)
    const pick = () => byPopularity[popular()] as Member
    const between = (lo: number, hi: number) => lo + random() * (hi - lo)
    let afterId = 0
    const added: string[] = []
    for (let step = 0; step < spec.steps; step++) {
      await sleep(between(...spec.thinkMs))
      switch (spec.role) {
        case 'reader':
          await send(c.key, 'GET', `/v1/objects/${pick().id}`)
          break
        case 'batch': {
          const ids = new Set<string>()
          const size = 2 + Math.floor(random() * 7)
          while (ids.size < size) ids.add(pick().id)
          await send(c.key, 'GET', `/v1/objects?ids=${[...ids].join(',')}`)
          break
        }
        case 'list': {
          const name = Object.keys(POLLED)[spec.index] as string
          await send(c.key, 'GET', `/v1/lists/${name}/objects?rb_pix_gte=${(random() * 0.5).toFixed(2)}`)
          break
        }
        case 'vra': {
          const res = await send(c.key, 'GET', spec.index === 0 ? `/v1/vra/scores?after_id=${afterId}` : '/v1/vra/scores?since=2025-01-01')
          if (spec.index === 0 && res.status === 200) {
            for (const row of (JSON.parse(res.body) as { rows: Array<{ id: number }> }).rows) afterId = Math.max(afterId, Number(row.id))
          }
          break
        }
        case 'cone': {
          const at = pick()
          const mode = ['nearest', 'count', 'all'][Math.floor(random() * 3)] as string
          await send(c.key, 'GET', `/v1/cone?ra=${at.ra}&dec=${at.dec}&radius=${Math.round(between(2, 250))}&mode=${mode}`)
          break
        }
        case 'curator': {
          const list = CUSTOM[spec.index] as string
          if (step % 4 === 3) {
            const removing = added.length > 0 && random() < 0.5
            const id = removing ? added.shift() as string : pick().id
            const res = await send(c.key, removing ? 'DELETE' : 'PUT', `/v1/custom-lists/${list}/objects/${id}`)
            if (!removing && res.status < 300) added.push(id)
          } else {
            await send(c.key, 'GET', `/v1/custom-lists/${list}/objects`)
          }
          break
        }
      }
    }
  }
  const startedAt = Date.now()
  await Promise.all(specs.map(async (spec, n) => run(spec, consumers[n] as { key: string }, n)))
  const seconds = (Date.now() - startedAt) / 1000
  await app.cache.drain()
  await app.atlas.prefetch?.settle()

  const byEndpoint = [...sandbox.calls].filter(([e]) => !FREE_ENDPOINTS.has(e))
  const writeCalls = byEndpoint.filter(([e]) => WRITE_ENDPOINTS.has(e)).reduce((a, [, n]) => a + n, 0)
  const readCalls = byEndpoint.filter(([e]) => !WRITE_ENDPOINTS.has(e)).reduce((a, [, n]) => a + n, 0)
  const perThousand = readCalls * 1000 / reads
  ages.sort((a, b) => a - b)
  const pct = (p: number) => ages[Math.min(ages.length - 1, Math.max(0, Math.ceil(p / 100 * ages.length) - 1))]
  t.comment(`seed ${SEED}; ${sent} consumer requests in ${seconds.toFixed(1)} s: ${reads} reads, ${writes} writes; statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.comment(`upstream: ${readCalls} read calls (${perThousand.toFixed(1)} per 1,000 reads), ${writeCalls} write calls; ${byEndpoint.map(([e, n]) => `${e}: ${n}`).join(', ')}`)
  t.comment(`age served (s): median ${pct(50)}, 95th percentile ${pct(95)}; X-Cache-Reason ${JSON.stringify(Object.fromEntries(reasons))}`)

  t.equal(writeCalls, writes, 'every write went upstream, one call each')
  t.ok(ok / sent >= 0.99, `answered 2xx: ${(ok / sent * 100).toFixed(1)} % (≥ 99 %)`)
  t.ok(perThousand <= MAX_READ_CALLS_PER_1000, `${perThousand.toFixed(1)} upstream read calls per 1,000 reads (ceiling ${MAX_READ_CALLS_PER_1000})`)
})
