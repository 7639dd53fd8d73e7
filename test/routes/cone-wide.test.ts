// Cone fetch-wide: one upstream search per position (mode all, the largest radius) answers every radius
// and mode there. Property: for random positions near objects, radii and modes, the gateway's answer is
// the upstream's own answer, byte for byte on the compatibility path and hit for hit in v1, and each
// position costs one upstream call.
import { test } from 'tap'
import fc from 'fast-check'
import { parseLossless } from '../../src/lib/json.js'
import { decodeAtlasId } from '../../src/sandbox/ids.js'
import { startDialects } from './compat/dialect-helper.js'

const MODES = ['nearest', 'all', 'count'] as const
const POSITIONS = 12
// Positions (of the seed-42 catalogue) where a hit's own separation, as the radius, lost that hit upstream:
// the sandbox's Dec band fell a rounding short of it. Run first, as examples.
const BOUNDARY = [{ ra: 72.0316107, dec: 0.2202404, radius: 283.68 }, { ra: 206.0162453, dec: -0.0702796, radius: 141.84 }]

test('property: every radius and mode at a position comes from one wide search, as the upstream answers it', async (t) => {
  const d = await startDialects(t)
  // Positions a little off real objects (in a crowded and an empty part of the sky alike).
  const ids = d.direct.ids()
  const positions = [...Array.from({ length: POSITIONS }, (_, i) => {
    const { ra, dec } = decodeAtlasId(ids[(i * 97) % ids.length] as bigint)
    return { ra: Number((ra + (i % 3 - 1) * 0.01).toFixed(6)), dec: Number((dec + (i % 4 - 1.5) * 0.01).toFixed(6)) }
  }), ...BOUNDARY]
  // Each position's hits as the upstream reports their separations: as radii, each hit is on the edge.
  const separations = await Promise.all(positions.map(async ({ ra, dec }) => {
    const wide = await d.upstream('cone', { query: { ra: String(ra), dec: String(dec), radius: '300', requestType: 'all' } })
    return (JSON.parse(wide.body) as Array<{ separation: number }>).map((hit) => hit.separation)
  }))
  const radiusAt = (p: number): fc.Arbitrary<number> => fc.oneof(
    fc.double({ min: 0.001, max: 300, noNaN: true }), fc.constantFrom(300, 1, 60, 150.5),
    ...(separations[p]?.length === 0 ? [] : [fc.constantFrom(...separations[p] as number[])]))
  const examples = BOUNDARY.flatMap((b, i) => MODES.map((mode): [[number, number], typeof mode] => [[POSITIONS + i, b.radius], mode]))
  t.ok(BOUNDARY.every((b, i) => separations[POSITIONS + i]?.includes(b.radius)), 'each boundary radius is a hit\'s separation')
  const key = { authorization: `Bearer ${d.app.consumers.demoKey as string}` }
  d.behind.resetCalls()
  const used = new Set<number>()
  let checked = 0
  let withHits = 0
  let onEdge = 0
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 0, max: positions.length - 1 }).chain((p) => fc.tuple(fc.constant(p), radiusAt(p))),
    fc.constantFrom(...MODES),
    async ([p, radius], mode) => {
      const { ra, dec } = positions[p] as { ra: number, dec: number }
      used.add(p)
      const query = { ra: String(ra), dec: String(dec), radius: String(radius), requestType: mode }
      const ours = await d.gateway('cone', { query })
      const theirs = await d.upstream('cone', { query })
      if (ours.status !== theirs.status || ours.body !== theirs.body) return false
      // v1: the same hits, ids as strings.
      const v1 = await d.app.inject({ url: `/v1/cone?ra=${ra}&dec=${dec}&radius=${radius}&mode=${mode}`, headers: key })
      if (v1.statusCode !== 200) return false
      const upstream = parseLossless(theirs.body) as Record<string, unknown> | Array<Record<string, unknown>>
      const body = v1.json() as { count: number, results?: Array<{ id: string, separation_arcsec: number }> }
      checked++
      if (separations[p]?.includes(radius) === true) onEdge++
      if (theirs.body !== '[]' && theirs.body !== '{}' && theirs.body !== '{"count":0}') withHits++
      if (mode === 'count') return body.count === Number((upstream as Record<string, unknown>).count)
      const rows = Array.isArray(upstream) ? upstream : Object.keys(upstream).length === 0 ? [] : [upstream]
      return body.count === rows.length && rows.every((row, i) =>
        body.results?.[i]?.id === String(row.object) && body.results[i]?.separation_arcsec === Number(row.separation))
    }), { seed: 42, numRuns: 150, examples })
  t.equal(checked, 150, '150 positions × radii × modes (the boundary examples first), in both dialects')
  t.ok(withHits > 50, `${withHits} answers found objects`)
  t.ok(onEdge > examples.length, `${onEdge} radii were a hit's own separation`)
  t.equal(d.behind.calls.get('cone'), used.size, `${used.size} positions: one upstream call each`)
})

test('a radius above the limit gets the upstream\'s own 400 without a call', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  const query = { ra: '10', dec: '10', radius: '301', requestType: 'all' }
  const ours = await d.gateway('cone', { query })
  const theirs = await d.upstream('cone', { query })
  t.equal(ours.status, 400)
  t.equal(ours.body, theirs.body)
  t.equal(d.behind.totalCalls(), 0)
})
