// The predictor's memory (service/prefetch.ts): the memberships of the lists consumers read are kept
// in L1's derived memo, inside CACHE_MAX_BYTES, like the parsed tables and renderings derived from the
// same reads. Until 2026-12-02 they were kept beside it, bounded only by count (256 lists of up to
// 50,000 ids: about 950 MB of heap at most): 14 detection lists of a 30,000-object catalogue held
// 2.2 MB with a CACHE_MAX_BYTES of 256 KiB.
import { test } from 'tap'
import { DETECTION_LISTS } from '../../src/lists.js'
import { buildTestApp, demoAuth } from '../helper.js'
import { waitFor } from '../fixtures/wait.js'
import { listMembers, objectCalls } from '../fixtures/prediction.js'

const CACHE_MAX_BYTES = 256 * 1024

test('the memberships of the lists read are held within CACHE_MAX_BYTES, and a list that fits still tops calls up', async (t) => {
  // No prefetch calls of their own: only what the predictor keeps is looked at.
  const { app, sandbox } = await buildTestApp(t, { config: { CACHE_MAX_BYTES, PREFETCH_DELAY_MS: 600000 }, sandbox: { objects: 30000 } })
  const prefetch = app.atlas.prefetch
  if (prefetch === undefined) throw new Error('PREFETCH_ENABLED is on by default')
  const sizes: Record<string, number> = {}
  // In the order of their ids: `duplicates`, among the smallest, is read last.
  const names = Object.entries(DETECTION_LISTS).sort(([, a], [, b]) => a - b).map(([name]) => name)
  let last: string[] = []
  for (const name of names) {
    last = await listMembers(app, name)
    sizes[name] = last.length
  }
  const members = Object.values(sizes).reduce((sum, n) => sum + n, 0)
  const held = prefetch.listBytes
  t.comment(`${names.length} lists of ${members} members (${JSON.stringify(sizes)}): their memberships hold ${held} bytes, ${(held / CACHE_MAX_BYTES).toFixed(1)} x CACHE_MAX_BYTES`)
  t.ok(held <= CACHE_MAX_BYTES, `held within CACHE_MAX_BYTES (${held} of ${CACHE_MAX_BYTES})`)

  // The last list read fits in a quarter of the budget (as any derived value must): its members still
  // ride along the call of the first member read.
  sandbox.resetCalls()
  const [first, ...rest] = last as [string, ...string[]]
  t.equal((await app.inject({ url: `/v1/objects/${first}`, headers: demoAuth(app) })).statusCode, 200)
  const [call = []] = objectCalls(sandbox)
  t.equal(call[0], first, 'the requested id first')
  t.ok(rest.every((id) => call.includes(id)), `the other ${rest.length} members of the list rode along (${call.length} ids in the call)`)
  // Charged to L1, they compete with its entries in one LRU: the call's records (~10 kB each, far more
  // than CACHE_MAX_BYTES) pushed them out.
  await waitFor('the memberships pushed out by the records', () => prefetch.listBytes === 0, { timeoutMs: 5000, intervalMs: 20 })
  t.equal(prefetch.listBytes, 0, 'the records took their room')
})
