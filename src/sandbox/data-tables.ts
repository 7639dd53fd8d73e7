// The seeded starting state of the upstream's tables: VRA scores, todo and rank rows, custom-list
// (object group) memberships and external crossmatches, honouring the golden fixture rules.
import { base26 } from './ids.js'
import type { ObjectMeta } from './data-catalog.js'
import { FIXTURE_IDS } from './data-catalog.js'
import { createRng, round, type Rng } from './rng.js'
import { DATA_EPOCH_MJD, mjdToUs } from '../drf/time.js'

export interface VraScoreRow {
  id: number
  objectId: bigint
  preal: number | null
  pgal: number | null
  pfast: number | null
  rank: number | null
  rankAlt1: number | null
  isGalCand: number | null
  timestampUs: number
  apiusername: string
  username: string | null
  debug: boolean
}

export interface VraRankRow {
  objectId: bigint
  rank: number
  rankAlt1: number | null
  isGalCand: number | null
  timestampUs: number
}

export interface GroupRow {
  id: number
  objectId: bigint
  groupId: number
}

export interface XmRow {
  id: number
  objectId: bigint
  designation: string
  type: string
  hostGalaxy: string
  mag: number
  discoverer: string
  matchedList: string
  otherInfo: string
  separation: number
  comments: string
  url: string
  hostZ: number
  objectZ: number
  discDateUs: number
  discFilter: string
}

export const TNS_LIST = 'Transient Name Server'

export interface Tables {
  vraScores: VraScoreRow[]
  /** object id → timestamp (µs), in insertion order. */
  vraTodo: Map<bigint, number>
  vraRank: Map<bigint, VraRankRow>
  /** Custom lists that exist (tcs_object_group_definitions). */
  groups: Set<number>
  groupRows: GroupRow[]
  xm: XmRow[]
}

/** The client's custom lists except `dummy` (999), which must not exist. */
export const CUSTOM_LIST_IDS = [2, 14, 16, 17, 40, 56, 72, 73] as const

function recentUs (rng: Rng): number {
  return Math.round(mjdToUs(DATA_EPOCH_MJD - rng.float(1, 700)) / 1e6) * 1e6
}

function scoreRow (rng: Rng, id: number, objectId: bigint, debug: boolean): VraScoreRow {
  return {
    id,
    objectId,
    preal: round(rng.next(), 4),
    pgal: round(rng.next() * 0.3, 4),
    pfast: round(rng.next() * 0.5, 4),
    rank: round(rng.float(0, 10), 3),
    rankAlt1: round(rng.float(0, 10), 3),
    isGalCand: rng.chance(0.2) ? 1 : 0,
    timestampUs: recentUs(rng),
    apiusername: 'vra_bot',
    username: rng.pick(['kws', 'hfs', 'ksmith', 'vra_bot']),
    debug
  }
}

function rankRow (rng: Rng, objectId: bigint): VraRankRow {
  return {
    objectId,
    rank: round(rng.float(0, 10), 3),
    rankAlt1: round(rng.float(0, 10), 3),
    isGalCand: rng.chance(0.2) ? 1 : 0,
    timestampUs: recentUs(rng)
  }
}

function xmRow (rng: Rng, id: number, meta: ObjectMeta, designation: string, tns: boolean): XmRow {
  const type = tns ? rng.pick(['SN Ia', 'SN II', 'SN Ic-BL', 'TDE', 'CV', '---']) : rng.pick(['SN', 'Varstar', 'QSO', 'Unknown'])
  return {
    id,
    objectId: meta.id,
    designation,
    type,
    hostGalaxy: rng.pick(['NGC 4993', 'CGCG 137-068', 'WISEA J161600.21+221604.9', 'anonymous']),
    mag: round(meta.peakMag + rng.float(-0.3, 0.3), 2),
    discoverer: tns ? rng.pick(['ATLAS', 'ZTF', 'Pan-STARRS', 'GOTO', 'ASAS-SN']) : 'ZTF',
    matchedList: tns ? TNS_LIST : rng.pick(['ZTF', 'Gaia Alerts', 'ASAS-SN']),
    otherInfo: tns ? `AT ${designation}` : '',
    separation: round(rng.float(0.05, 1.5), 3),
    comments: '',
    url: tns ? `https://www.wis-tns.org/object/${designation}` : `https://lasair.lsst.ac.uk/objects/${designation}/`,
    hostZ: round(rng.float(0.005, 0.2), 4),
    objectZ: round(rng.float(0.005, 0.2), 4),
    discDateUs: mjdToUs(meta.firstMjd + rng.float(0, 2)),
    discFilter: rng.pick(['o', 'c', 'g', 'r'])
  }
}

export function generateTables (seed: number, catalog: readonly ObjectMeta[]): Tables {
  const rng = createRng(seed, 'tables')
  const randoms = catalog.filter((m) => m.fixture === null)
  const fixture = (alias: keyof typeof FIXTURE_IDS): ObjectMeta | undefined => catalog.find((m) => m.fixture === alias)

  // B has exactly one debug=false score and one rank row; C is queued for the VRA; A and D are not.
  const vraScores: VraScoreRow[] = [scoreRow(rng, 1, FIXTURE_IDS.B, false)]
  const vraTodo = new Map<bigint, number>([[FIXTURE_IDS.C, recentUs(rng)]])
  const vraRank = new Map<bigint, VraRankRow>([[FIXTURE_IDS.B, rankRow(rng, FIXTURE_IDS.B)]])
  // Loops over random picks run only when there are random objects (there are none below 7 objects).
  for (let i = 0; i < Math.ceil(randoms.length / 8); i++) {
    vraScores.push(scoreRow(rng, vraScores.length + 1, rng.pick(randoms).id, rng.chance(0.2)))
  }
  for (let i = 0; i < Math.ceil(randoms.length / 20); i++) {
    const id = rng.pick(randoms).id
    if (!vraTodo.has(id)) vraTodo.set(id, recentUs(rng))
  }
  for (let i = 0; i < Math.ceil(randoms.length / 10); i++) {
    const id = rng.pick(randoms).id
    vraRank.set(id, rankRow(rng, id))
  }

  // B is in group 2 and C in group 73; the other members are random objects, never fixtures.
  const groupRows: GroupRow[] = [
    { id: 1, objectId: FIXTURE_IDS.B, groupId: 2 },
    { id: 2, objectId: FIXTURE_IDS.C, groupId: 73 }
  ]
  const perGroup = randoms.length === 0 ? 0 : Math.min(12, Math.ceil(randoms.length / 100) + 3)
  for (const groupId of CUSTOM_LIST_IDS) {
    const members = new Set<bigint>()
    for (let i = 0; i < perGroup; i++) {
      const m = rng.pick(randoms)
      if (!members.has(m.id)) {
        members.add(m.id)
        groupRows.push({ id: groupRows.length + 1, objectId: m.id, groupId })
      }
    }
  }

  // A has TNS "2025abc" and external "ZTF25aaaaaaa"; F has none; a share of the others have some.
  const xm: XmRow[] = []
  const a = fixture('A')
  if (a !== undefined) {
    xm.push(xmRow(rng, 1, a, '2025abc', true))
    xm.push(xmRow(rng, 2, a, 'ZTF25aaaaaaa', false))
  }
  for (const m of randoms) {
    const r = createRng(seed, 'xm', m.index)
    const yy = m.designation.slice(5, 7)
    if (r.chance(0.3)) xm.push(xmRow(r, xm.length + 1, m, `20${yy}${base26(m.index + 1000)}`, true))
    if (r.chance(0.2)) xm.push(xmRow(r, xm.length + 1, m, `ZTF${yy}a${base26(m.index, 6)}`, false))
  }
  return { vraScores, vraTodo, vraRank, groups: new Set(CUSTOM_LIST_IDS), groupRows, xm }
}
