// The object catalogue: the golden fixture objects A–F plus seeded random objects, each a small
// summary (position, lists, dates, scores). Full records are built lazily from these (data-records.ts).
import { base26, decodeAtlasId, encodeAtlasId, separationArcsec } from './ids.js'
import { createRng, round } from './rng.js'
import { DATA_EPOCH_MJD, mjdToUs } from '../drf/time.js'

export interface ObjectMeta {
  id: bigint
  index: number
  ra: number
  dec: number
  designation: string
  firstMjd: number
  lastMjd: number
  peakMag: number
  detectionListId: number
  followupFlagUs: number
  dateModifiedUs: number
  sherlock: string
  vra: number
  rbPix: number
  /** The golden fixture alias (A–F), if any. */
  fixture: string | null
}

/** The corpus fixtures (upstream-golden.json `fixtures`); U must not exist. */
export const FIXTURE_IDS = {
  A: 1161600211221604900n,
  B: 1161601191221611900n,
  C: 1033249000275412900n,
  D: 1123049421122328000n,
  E: 1004244331411607400n,
  F: 1132527610430108700n
} as const
export const MISSING_ID = 1132507360113744501n

export const SHERLOCK_CLASSES = ['ORPHAN', 'SN', 'NT', 'VS', 'CV', 'BS', 'UNCLEAR', 'HPM', 'AGN'] as const
// Main lists 0 (garbage) and 3 (possible) start empty, as the corpus requires; 5 (attic) is the biggest.
const LIST_WEIGHTS: ReadonlyArray<[number, number]> = [
  [1, 6], [2, 14], [4, 12], [5, 30], [6, 8], [7, 4], [8, 3], [9, 3], [10, 2], [11, 3], [12, 3], [13, 2]
]
// Keep random objects clear of the fixtures' cone searches (golden cases 1–6).
const CLEAR_OF: ReadonlyArray<[number, number, number]> = [[100, -60, 30]]
const FIXTURE_CLEARANCE_ARCSEC = 120

function weightedList (u: number): number {
  const total = LIST_WEIGHTS.reduce((sum, [, w]) => sum + w, 0)
  let acc = 0
  for (const [list, w] of LIST_WEIGHTS) {
    acc += w / total
    if (u < acc) return list
  }
  /* c8 ignore next -- only if rounding leaves the weights' sum just under 1 */
  return 5
}

const FIXTURE_SHERLOCK: Record<keyof typeof FIXTURE_IDS, string> = { A: 'SN', B: 'NT', C: 'SN', D: 'AGN', E: 'VS', F: 'ORPHAN' }

function fixtureMeta (alias: keyof typeof FIXTURE_IDS, index: number): ObjectMeta {
  const id = FIXTURE_IDS[alias]
  const pos = alias === 'A' ? { ra: 244.00092, dec: 22.26801 } : decodeAtlasId(id)
  // A's light curve straddles MJD 60826 (golden case 54); all flag dates fall after 2025-06-03 (case 68).
  const firstMjd = 60780 + index * 3.25
  return {
    id,
    index,
    ra: pos.ra,
    dec: pos.dec,
    designation: `ATLAS25${base26(index)}`,
    firstMjd,
    lastMjd: firstMjd + 90,
    peakMag: 16.2 + index * 0.37,
    detectionListId: alias === 'F' ? 4 : 2,
    followupFlagUs: mjdToUs(60831.41667 + index),
    dateModifiedUs: mjdToUs(60831.41667 + index),
    sherlock: FIXTURE_SHERLOCK[alias],
    vra: round(7.25 - index * 0.8, 3),
    rbPix: round(0.97 - index * 0.05, 3),
    fixture: alias
  }
}

/** Whether a random position keeps clear of the fixtures and of the corpus's empty cone. */
export function isClear (ra: number, dec: number, fixtures: readonly ObjectMeta[]): boolean {
  for (const f of fixtures) {
    if (Math.abs(f.dec - dec) < 1 && separationArcsec(ra, dec, f.ra, f.dec) < FIXTURE_CLEARANCE_ARCSEC) return false
  }
  for (const [cra, cdec, r] of CLEAR_OF) {
    if (Math.abs(cdec - dec) < 1 && separationArcsec(ra, dec, cra, cdec) < r) return false
  }
  return true
}

function randomMeta (seed: number, index: number, taken: Set<bigint>, fixtures: readonly ObjectMeta[]): ObjectMeta {
  const rng = createRng(seed, 'object', index)
  let ra = 0
  let dec = 0
  do {
    ra = rng.float(0, 360)
    dec = Math.asin(rng.float(-1, 1)) * 180 / Math.PI
  } while (!isClear(ra, dec, fixtures))
  let suffix = rng.int(0, 99)
  let id = encodeAtlasId(ra, dec, suffix)
  // Two objects in the same 0.01 s x 0.1" cell differ by the last two digits.
  /* c8 ignore next */
  while (taken.has(id)) id = encodeAtlasId(ra, dec, ++suffix)
  taken.add(id)
  // Discoveries between 2016 and the data epoch; light curves last up to 300 days.
  const firstMjd = round(rng.float(57400, DATA_EPOCH_MJD - 5), 5)
  const lastMjd = round(Math.min(DATA_EPOCH_MJD - 0.5, firstMjd + rng.float(5, 300)), 5)
  const year = new Date(mjdToUs(firstMjd) / 1000).getUTCFullYear() % 100
  return {
    id,
    index,
    ra: round(ra, 7),
    dec: round(dec, 7),
    designation: `ATLAS${String(year).padStart(2, '0')}${base26(index + 700)}`,
    firstMjd,
    lastMjd,
    peakMag: round(rng.float(14.5, 19.8), 3),
    detectionListId: weightedList(rng.next()),
    followupFlagUs: mjdToUs(firstMjd + rng.float(0.05, 3)),
    dateModifiedUs: mjdToUs(lastMjd + rng.float(0.01, 2)),
    sherlock: rng.pick(SHERLOCK_CLASSES),
    vra: round(rng.float(0, 10), 3),
    rbPix: round(rng.float(0, 1), 3),
    fixture: null
  }
}

/** The whole catalogue, fixtures first; `count` is the total number of objects (at least the 6 fixtures). */
export function generateCatalog (seed: number, count: number): ObjectMeta[] {
  const fixtures = (Object.keys(FIXTURE_IDS) as Array<keyof typeof FIXTURE_IDS>).map((alias, i) => fixtureMeta(alias, i))
  const taken = new Set<bigint>([...fixtures.map((f) => f.id), MISSING_ID])
  const out = [...fixtures]
  for (let i = fixtures.length; i < count; i++) out.push(randomMeta(seed, i, taken, fixtures))
  return out
}

// The Dec band only narrows the search: the upstream's test is `separation <= radius` alone. A hit at
// exactly the radius can lie a rounding outside radius / 3600 (its separation and its Dec offset are
// computed apart), so the band is this much wider: far above float error, far below any catalogue gap.
const BAND_SLACK_DEG = 1e-9

/** Cone search over objects sorted by Dec: a binary-searched Dec band, then true separations. */
export class ConeIndex {
  private readonly byDec: ObjectMeta[]
  private readonly decs: number[]

  constructor (objects: readonly ObjectMeta[]) {
    this.byDec = [...objects].sort((a, b) => a.dec - b.dec)
    this.decs = this.byDec.map((m) => m.dec)
  }

  private lowerBound (dec: number): number {
    let lo = 0
    let hi = this.byDec.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      // mid < length, so the element exists.
      if ((this.decs[mid] as number) < dec) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Objects within radius (arcsec) of (ra, dec), nearest first. */
  search (ra: number, dec: number, radiusArcsec: number): Array<{ meta: ObjectMeta, separation: number }> {
    if (!(radiusArcsec >= 0) || !Number.isFinite(ra) || !Number.isFinite(dec)) return []
    const band = radiusArcsec / 3600 + BAND_SLACK_DEG
    const hits: Array<{ meta: ObjectMeta, separation: number }> = []
    for (let i = this.lowerBound(dec - band); i < this.byDec.length; i++) {
      const meta = this.byDec[i]
      if (meta === undefined || meta.dec > dec + band) break
      const separation = separationArcsec(ra, dec, meta.ra, meta.dec)
      if (separation <= radiusArcsec) hits.push({ meta, separation })
    }
    return hits.sort((a, b) => a.separation - b.separation)
  }
}
