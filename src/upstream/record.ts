// The upstream's full object record and its `mjd` threshold. objects/ with `mjd` keeps detections
// (`lc`) and non-detections (`lcnondets`) with mjd > value and forced photometry (`fp`) with
// mjd_obs >= value. The first two are SQL the upstream writes with '%f', so their value is the
// threshold at six decimals (60796.5036596 compares as 60796.503660); forced photometry's ORM filter
// takes the value itself. The gateway caches the full history and applies the threshold itself, for
// both dialects, with these rules. (The upstream centres its non-detection search on the detections
// newer than `mjd`; a locally filtered record can differ from the upstream's in a rare edge case: an
// exposure whose footprint edge falls between the two centres.)
import { pyPercentF } from '../lib/py-format.js'

type Row = Record<string, unknown>

/**
 * The arrays of a record that `mjd` filters, the field compared, whether the bound is inclusive, and
 * whether the value is compared as '%f' writes it (six decimals).
 */
export const MJD_RULES: ReadonlyArray<{ key: string, field: string, isInclusive: boolean, isSixDecimals: boolean }> = [
  { key: 'lc', field: 'mjd', isInclusive: false, isSixDecimals: true },
  { key: 'lcnondets', field: 'mjd', isInclusive: false, isSixDecimals: true },
  { key: 'fp', field: 'mjd_obs', isInclusive: true, isSixDecimals: false }
]

/**
 * The record with the threshold applied, other fields untouched. `numberOf` reads a row's number
 * (plain numbers in v1, exact literals in the upstream dialect); rows without one are dropped.
 */
export function applyMjd<T extends Row> (record: T, mjd: number, numberOf: (row: Row, field: string) => number | undefined): T {
  const out: Row = { ...record }
  const sixDecimals = Number(pyPercentF(mjd))
  for (const rule of MJD_RULES) {
    const rows = record[rule.key]
    if (!Array.isArray(rows)) continue
    const bound = rule.isSixDecimals ? sixDecimals : mjd
    out[rule.key] = rows.filter((row: unknown) => {
      const v = row === null || typeof row !== 'object' ? undefined : numberOf(row as Row, rule.field)
      return v !== undefined && (rule.isInclusive ? v >= bound : v > bound)
    })
  }
  return out as T
}

// ---- Light curves ----
// The points of a record's light curve, read from the upstream's field names here so that nothing
// outside src/upstream/ names them: detections (`lc`: mag, magerr), non-detections (`lcnondets`: the
// 5-sigma limiting magnitude) and forced photometry (`fp`: flux in µJy). Rows without a finite MJD are
// skipped; a missing value is null, never a guess.

export type PointKind = 'detection' | 'non_detection' | 'forced'

export interface LightCurvePoint {
  kind: PointKind
  mjd: number
  filter: string
  /** Detections: the magnitude; non-detections: the limiting magnitude; forced photometry: its magnitude (or null). */
  mag: number | null
  mag_err: number | null
  /** Forced photometry only: flux and its error in µJy. */
  flux_ujy: number | null
  flux_err_ujy: number | null
  exposure: string | null
}

export interface LightCurve {
  id: string
  /** The ATLAS designation (ATLAS18qqn), or null when the record has none. */
  name: string | null
  /** Another designation (a TNS name such as 2018cow), or null. */
  other_name: string | null
  points: LightCurvePoint[]
}

const LC_FIELDS = {
  detections: { key: 'lc', mjd: 'mjd', mag: 'mag', magErr: 'magerr' },
  nonDetections: { key: 'lcnondets', mjd: 'mjd', limit: 'mag5sig' },
  forced: { key: 'fp', mjd: 'mjd_obs', mag: 'mag', magErr: 'dm', flux: 'uJy', fluxErr: 'duJy' },
  filter: 'filter',
  exposure: 'expname',
  object: 'object',
  objectId: 'id',
  name: 'atlas_designation',
  otherName: 'other_designation'
} as const

function num (row: Row, field: string): number | null {
  const v = row[field]
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

function str (row: Row, field: string): string | null {
  const v = row[field]
  return typeof v === 'string' && v !== '' ? v : null
}

function rowsOf (record: Row, key: string): Row[] {
  const rows = record[key]
  return Array.isArray(rows) ? rows.filter((r): r is Row => r !== null && typeof r === 'object') : []
}

/**
 * The light curve of a parsed record (numbers as numbers, ids as bigint or string), every point in
 * MJD order within its kind. `id` is the id asked for, used when the record does not carry one.
 */
export function lightCurveOf (record: Row, id: string): LightCurve {
  const f = LC_FIELDS
  const points: LightCurvePoint[] = []
  const base = (row: Row, kind: PointKind, mjd: number): LightCurvePoint =>
    ({ kind, mjd, filter: str(row, f.filter) ?? '?', mag: null, mag_err: null, flux_ujy: null, flux_err_ujy: null, exposure: str(row, f.exposure) })
  for (const row of rowsOf(record, f.detections.key)) {
    const mjd = num(row, f.detections.mjd)
    if (mjd !== null) points.push({ ...base(row, 'detection', mjd), mag: num(row, f.detections.mag), mag_err: num(row, f.detections.magErr) })
  }
  for (const row of rowsOf(record, f.nonDetections.key)) {
    const mjd = num(row, f.nonDetections.mjd)
    if (mjd !== null) points.push({ ...base(row, 'non_detection', mjd), mag: num(row, f.nonDetections.limit) })
  }
  for (const row of rowsOf(record, f.forced.key)) {
    const mjd = num(row, f.forced.mjd)
    if (mjd === null) continue
    points.push({
      ...base(row, 'forced', mjd),
      mag: num(row, f.forced.mag),
      mag_err: num(row, f.forced.magErr),
      flux_ujy: num(row, f.forced.flux),
      flux_err_ujy: num(row, f.forced.fluxErr)
    })
  }
  // Kinds in order (detections, non-detections, forced photometry), each sorted by MJD (stable).
  const rank: Record<PointKind, number> = { detection: 0, non_detection: 1, forced: 2 }
  points.sort((a, b) => rank[a.kind] - rank[b.kind] || a.mjd - b.mjd)
  const object = record[f.object]
  const obj = object !== null && typeof object === 'object' ? object as Row : {}
  const rawId = obj[f.objectId]
  return {
    id: typeof rawId === 'bigint' || typeof rawId === 'string' ? String(rawId) : id,
    name: str(obj, f.name),
    other_name: str(obj, f.otherName),
    points
  }
}

// The record array each kind of point comes from, to find its `mjd` rule.
const KIND_KEYS: Record<PointKind, string> = {
  detection: LC_FIELDS.detections.key,
  non_detection: LC_FIELDS.nonDetections.key,
  forced: LC_FIELDS.forced.key
}

/**
 * The light curve with the threshold applied as applyMjd applies it to the record the curve was read
 * from (each point's MJD is its row's), so that a record's curve is read once and serves every `mjd`.
 */
export function lightCurveSince (lc: LightCurve, mjd: number): LightCurve {
  const sixDecimals = Number(pyPercentF(mjd))
  const keeps = new Map(MJD_RULES.map((rule) => {
    const bound = rule.isSixDecimals ? sixDecimals : mjd
    return [rule.key, rule.isInclusive ? (v: number) => v >= bound : (v: number) => v > bound]
  }))
  return { ...lc, points: lc.points.filter((p) => keeps.get(KIND_KEYS[p.kind])?.(p.mjd) ?? true) }
}
