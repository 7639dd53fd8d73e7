// Full objects/ records, built lazily per object and kept as JSON text: each light-curve row is
// stringified once, so a 1,000-id request is a join of cached strings, with or without an mjd cut.
import type { ObjectMeta } from './data-catalog.js'
import { lcCount, magModel } from './data-rows.js'
import type { XmRow } from './data-tables.js'
import { TNS_LIST } from './data-tables.js'
import { pythonFloats, type FloatRows } from './floats.js'
import { createRng, round, type Rng } from './rng.js'
import { formatDateTime, mjdToUs } from '../drf/time.js'

export interface TimedJson {
  mjd: number
  json: string
}

export interface RecordParts {
  lc: TimedJson[]
  lcnondets: TimedJson[]
  fp: TimedJson[]
  /** The four crossmatch blocks, as `"sherlock_crossmatches":[...],...,"external_crossmatches":[...]`. */
  tail: string
}

const CAMERAS = ['01a', '02a', '03a', '04h', '05r'] as const
/** ATLAS zero points: cyan is the deeper band. */
function zeroPoint (filter: string): number {
  return filter === 'c' ? 22.2 : 21.8
}

function expname (rng: Rng, mjd: number, filter: string): string {
  return `${rng.pick(CAMERAS)}${Math.floor(mjd)}${filter}${String(rng.int(1, 9999)).padStart(4, '0')}o`
}

/** µJy from an AB magnitude: 10^((23.9 - m) / 2.5). */
function microJansky (mag: number): number {
  return 10 ** ((23.9 - mag) / 2.5)
}

function lcEpochs (meta: ObjectMeta, n: number, rng: Rng): number[] {
  const span = meta.lastMjd - meta.firstMjd
  const epochs: number[] = []
  for (let k = 0; k < n; k++) {
    // n is at least 3 (lcCount), so the epochs spread over the whole span.
    const base = meta.firstMjd + span * k / (n - 1)
    epochs.push(round(base + (k === 0 ? 0 : rng.float(-0.2, 0.2)), 5))
  }
  return epochs
}

function lcRow (meta: ObjectMeta, rng: Rng, mjd: number, filter: string, seq: number): Record<string, unknown> {
  const mag = round(magModel(meta, mjd) + rng.normal() * 0.03, 3)
  const prob = (): number => rng.int(0, 999)
  return {
    id: ID_MARK,
    mag,
    magerr: round(0.005 + 0.02 * 10 ** (0.4 * (mag - 17)), 3),
    mjd,
    exptime: 30.0,
    filter,
    zp: round(zeroPoint(filter) + rng.normal() * 0.05, 3),
    expname: expname(rng, mjd, filter),
    ra: round(meta.ra + rng.normal() * 0.00003, 7),
    dec: round(meta.dec + rng.normal() * 0.00003, 7),
    atlas_metadata_id: 80000000 + meta.index * 50 + seq,
    pointing: `${filter.toUpperCase()}${Math.round(meta.ra)}${meta.dec >= 0 ? 'N' : 'S'}${Math.abs(Math.round(meta.dec))}`,
    mag5sig: round(19.4 + rng.normal() * 0.3, 3),
    x: round(rng.float(10, 10550), 2),
    y: round(rng.float(10, 10550), 2),
    major: round(rng.float(1.8, 3.2), 2),
    minor: round(rng.float(1.6, 2.9), 2),
    phi: round(rng.float(-90, 90), 2),
    det: 5,
    chin: round(rng.float(0.8, 3), 3),
    pvr: prob(),
    ptr: prob(),
    pmv: prob(),
    pkn: prob(),
    pno: prob(),
    pbn: prob(),
    pcr: prob(),
    pxt: prob(),
    psc: prob(),
    dup: 0,
    wpflx: round(microJansky(mag) * 0.5, 2),
    dflx: round(microJansky(mag) * 0.02, 2),
    date_inserted: formatDateTime(mjdToUs(mjd + 0.02))
  }
}

function nondetRow (meta: ObjectMeta, rng: Rng, mjd: number, filter: string, seq: number): Record<string, unknown> {
  const name = expname(rng, mjd, filter)
  return {
    id: 60000000 + meta.index * 40 + seq,
    mjd,
    exptime: 30.0,
    filter,
    zp: round(zeroPoint(filter) + rng.normal() * 0.05, 3),
    expname: name,
    filename: `/atlas/diff/${name.slice(0, 3)}/${Math.floor(mjd)}/${name}.diff.fz`,
    input: `/atlas/red/${name.slice(0, 3)}/${Math.floor(mjd)}/${name}.fits.fz`,
    reference: `/atlas/ref/${name.slice(0, 3)}/ref.fits.fz`,
    pointing: `${filter.toUpperCase()}${Math.round(meta.ra)}`,
    mag5sig: round(19.3 + rng.normal() * 0.4, 3),
    date_inserted: formatDateTime(mjdToUs(mjd + 0.02))
  }
}

function fpRow (meta: ObjectMeta, rng: Rng, mjd: number, filter: string, seq: number, limit: boolean): Record<string, unknown> {
  const mag = limit ? round(19.5 + rng.normal() * 0.3, 3) : round(magModel(meta, mjd) + rng.normal() * 0.03, 3)
  const dm = round(limit ? 0.33 : 0.005 + 0.02 * 10 ** (0.4 * (mag - 17)), 3)
  const uJy = round(limit ? microJansky(mag) * rng.float(-0.5, 0.9) : microJansky(mag), 2)
  const zp = round(zeroPoint(filter) + rng.normal() * 0.05, 3)
  const flux = round(uJy * 10 ** ((zp - 23.9) / 2.5), 2)
  return {
    id: 70000000 + meta.index * 60 + seq,
    atlas_object_id: ID_MARK,
    expname: expname(rng, mjd, filter),
    mjd_obs: mjd,
    ra: meta.ra,
    dec: meta.dec,
    filter,
    mag,
    dm,
    snr: round(1.0857 / dm, 2),
    zp,
    x: round(rng.float(10, 10550), 2),
    y: round(rng.float(10, 10550), 2),
    peakval: round(flux / 20, 2),
    skyval: round(rng.float(100, 400), 2),
    peakfit: round(flux / 21, 2),
    dpeak: round(flux / 210 + 1, 2),
    skyfit: round(rng.float(100, 400), 2),
    flux,
    dflux: round(Math.abs(flux) * dm / 1.0857 + 1, 2),
    chin: round(rng.float(0.8, 2.5), 3),
    major: round(rng.float(1.8, 3.2), 2),
    minor: round(rng.float(1.6, 2.9), 2),
    snrdet: round(rng.float(3, 50), 2),
    snrlimit: 3.0,
    apfit: round(-rng.float(0.2, 0.5), 3),
    date_inserted: formatDateTime(mjdToUs(mjd + 0.5)),
    limiting_mag: limit,
    redo_photometry: false,
    uJy,
    duJy: round(Math.abs(uJy) * dm / 1.0857 + 1, 2),
    texp: 30.0
  }
}

// The object id inside generated rows. Rows are JSON.stringify'd with this marker and the marker is
// then replaced by the id's digits: the same text as stringifyUpstream, without its bigint replacer,
// which costs about 5x on these wide rows.
const ID_MARK = '\u0000atlas-id'
const ID_MARK_JSON = JSON.stringify(ID_MARK)

function jsonWithId (value: unknown, id: bigint): string {
  return JSON.stringify(value).replaceAll(ID_MARK_JSON, id.toString())
}

export function buildRecordParts (meta: ObjectMeta, seed: number, xm: readonly XmRow[]): RecordParts {
  const rng = createRng(seed, 'record', meta.index)
  const n = lcCount(meta, seed)
  const detEpochs = lcEpochs(meta, n, rng)
  const lc = detEpochs.map((mjd, k) => lcRow(meta, rng, mjd, k % 2 === 0 ? 'o' : 'c', k))
  // Non-detections: pre-discovery epochs inside the footprint.
  const nondetEpochs = Array.from({ length: rng.int(1, 5) }, () => round(meta.firstMjd - rng.float(0.9, 40), 5)).sort((a, b) => a - b)
  const lcnondets = nondetEpochs.map((mjd, k) => nondetRow(meta, rng, mjd, k % 2 === 0 ? 'c' : 'o', k))
  // Forced photometry at every exposure, detections and non-detections alike (same MJDs as lc).
  const fpEpochs = [...detEpochs.map((mjd, k) => ({ mjd, k, limit: false })), ...nondetEpochs.map((mjd, k) => ({ mjd, k: n + k, limit: true }))]
    .sort((a, b) => a.mjd - b.mjd)
  const fp = fpEpochs.map((e) => fpRow(meta, rng, e.mjd, e.k % 2 === 0 ? 'o' : 'c', e.k, e.limit))
  const timed = (rows: Array<Record<string, unknown>>, key: string, kind: FloatRows): TimedJson[] =>
    rows.map((row) => ({ mjd: row[key] as number, json: pythonFloats(jsonWithId(row, meta.id), kind) }))
  return {
    lc: timed(lc, 'mjd', 'lc'),
    lcnondets: timed(lcnondets, 'mjd', 'lcnondets'),
    fp: timed(fp, 'mjd_obs', 'fp'),
    tail: tailJson(meta, seed, xm)
  }
}

const SHERLOCK_MAGS = ['u', 'b', 'v', 'r', 'i', 'j', 'h', 'k'] as const
const FIELD_MAGS = ['field_u', 'field_g', 'field_r', 'field_i', 'field_z', 'field_y'] as const

function sherlockMatch (meta: ObjectMeta, rng: Rng, rank: number): Record<string, unknown> {
  const z = round(rng.float(0.005, 0.15), 4)
  const distance = round(z * 4282.7, 2)
  const sep = round(rng.float(0.2, 15), 3)
  const mags: Record<string, number> = {}
  for (const band of SHERLOCK_MAGS) { mags[band] = round(rng.float(14, 21), 3); mags[`${band}err`] = round(rng.float(0.01, 0.2), 3) }
  for (const band of FIELD_MAGS) { mags[band] = round(rng.float(14, 21), 3); mags[`${band}err`] = round(rng.float(0.01, 0.2), 3) }
  const modified = formatDateTime(mjdToUs(meta.firstMjd + 0.1))
  return {
    transient_object_id: ID_MARK,
    catalogue_object_id: `${rng.pick(['NGC', 'UGC', 'CGCG', 'SDSS J'])}${rng.int(100, 9999)}`,
    catalogue_table_id: rng.int(1, 40),
    separationarcsec: sep,
    northseparationarcsec: round(sep * rng.float(-1, 1), 3),
    eastseparationarcsec: round(sep * rng.float(-1, 1), 3),
    id: meta.index * 4 + rank,
    z,
    scale: round(z * 20.1, 3),
    distance,
    distance_modulus: round(5 * Math.log10(distance * 1e5), 3),
    photoz: round(z + rng.normal() * 0.01, 4),
    photozerr: round(rng.float(0.005, 0.05), 4),
    association_type: meta.sherlock,
    datecreated: modified,
    physical_separation_kpc: round(sep * z * 20.1, 3),
    catalogue_object_type: 'galaxy',
    catalogue_object_subtype: rng.pick(['S', 'E', 'Irr', 'unknown']),
    association_rank: rank,
    catalogue_table_name: rng.pick(['NED_D', 'GLADE', 'SDSS/PS1']),
    catalogue_view_name: rng.pick(['tcs_view_galaxy_ned_d_v10_8_0', 'tcs_view_galaxy_glade_v2_3']),
    rank,
    rankscore: round(rng.float(1, 100), 3),
    search_name: rng.pick(['NED D spec-z', 'GLADE galaxy', 'PS1 photo-z']),
    major_axis_arcsec: round(rng.float(2, 60), 2),
    direct_distance: distance,
    direct_distance_scale: round(z * 20.1, 3),
    direct_distance_modulus: round(5 * Math.log10(distance * 1e5), 3),
    radeg: round(meta.ra + rng.normal() * 0.001, 7),
    decdeg: round(meta.dec + rng.normal() * 0.001, 7),
    original_search_radius_arcsec: 180.0,
    catalogue_view_id: rng.int(1, 100),
    ...mags,
    g: round(rng.float(14, 21), 3),
    gerr: round(rng.float(0.01, 0.2), 3),
    unkmag: round(rng.float(14, 21), 3),
    unkmagerr: round(rng.float(0.01, 0.2), 3),
    datelastmodified: modified,
    updated: 0,
    classificationreliability: rng.int(1, 3),
    transientabsmag: round(meta.peakMag - 5 * Math.log10(distance * 1e5), 3)
  }
}

/** A tcs_cross_matches_external row as the API renders it. */
export function xmRowJson (row: XmRow): Record<string, unknown> {
  return {
    id: row.id,
    transient_object_id: row.objectId,
    external_designation: row.designation,
    type: row.type,
    host_galaxy: row.hostGalaxy,
    mag: row.mag,
    discoverer: row.discoverer,
    matched_list: row.matchedList,
    other_info: row.otherInfo,
    separation: row.separation,
    comments: row.comments,
    url: row.url,
    host_z: row.hostZ,
    object_z: row.objectZ,
    disc_date: formatDateTime(row.discDateUs),
    disc_filter: row.discFilter
  }
}

function tailJson (meta: ObjectMeta, seed: number, xm: readonly XmRow[]): string {
  const rng = createRng(seed, 'sherlock', meta.index)
  // F has no crossmatches at all (fixture rule); A has at least one Sherlock match.
  const matches = meta.fixture === 'F' ? 0 : meta.fixture === 'A' ? 2 : rng.int(0, 2)
  const crossmatches = Array.from({ length: matches }, (_, k) => sherlockMatch(meta, rng, k + 1))
  const classifications = meta.fixture === 'F'
    ? []
    : [{
        transient_object_id: ID_MARK,
        classification: meta.sherlock,
        annotation: `The transient is possibly associated with ${String(crossmatches[0]?.catalogue_object_id ?? 'nothing')}.`,
        summary: `${meta.sherlock} candidate`,
        matchverified: 0,
        developmentcomment: 'sandbox',
        datelastmodified: formatDateTime(mjdToUs(meta.firstMjd + 0.1)),
        datecreated: formatDateTime(mjdToUs(meta.firstMjd + 0.1)),
        updated: '0'
      }]
  const marked = (row: XmRow): Record<string, unknown> => ({ ...xmRowJson(row), transient_object_id: ID_MARK })
  const tns = xm.filter((row) => row.matchedList === TNS_LIST).map(marked)
  const external = xm.filter((row) => row.matchedList !== TNS_LIST)
    .sort((a, b) => a.designation < b.designation ? -1 : 1).map(marked)
  return pythonFloats(jsonWithId({ sherlock_crossmatches: crossmatches, sherlock_classifications: classifications, tns_crossmatches: tns, external_crossmatches: external }, meta.id), 'tail')
    .slice(1, -1)
}
