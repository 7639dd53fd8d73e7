// Per-object rows that are cheap to derive: the `object` block of a full record and the main/custom
// list rows of objectlist/. Column names and order follow the recorded corpus shapes.
import type { ObjectMeta } from './data-catalog.js'
import type { XmRow } from './data-tables.js'
import { TNS_LIST } from './data-tables.js'
import { createRng, round } from './rng.js'
import { formatDateTime, mjdToUs } from '../drf/time.js'

export interface ObjectExtras {
  followupId: number
  detectionId: number
  objectClassification: number
  observationStatus: string
  htm16id: number
  jtindex: number
  imagesId: number
  processingFlags: number
  updatedBy: string
  followupPriority: number
  externalReferenceId: string
  surveyField: string
  followupCounter: number
  currentTrend: string
  localComments: string
  lcCount: number
  catalogue: string
  catalogueObjectId: string
  separation: number
  discoveryTarget: string
  rms: number
  rank: number
}

const STATUSES = ['SN Ia', 'SN II', 'SN Ic-BL', 'TDE', 'AGN', 'CV', 'Varstar', 'in Queue NTT'] as const
const CATALOGUES = ['NED_D', 'GLADE', 'SDSS', 'PS1', '2MASS', 'GAIA'] as const

/** The light curve's shape: a fast rise to the peak a fifth of the way in, then a linear decline. */
export function magModel (meta: ObjectMeta, mjd: number): number {
  const peak = meta.firstMjd + (meta.lastMjd - meta.firstMjd) * 0.2
  return mjd < peak ? meta.peakMag + 0.12 * (peak - mjd) : meta.peakMag + 0.025 * (mjd - peak)
}

export function lcCount (meta: ObjectMeta, seed: number): number {
  return meta.fixture === 'A' ? 12 : createRng(seed, 'lc-count', meta.index).int(3, 10)
}

export function objectExtras (meta: ObjectMeta, seed: number): ObjectExtras {
  const rng = createRng(seed, 'extras', meta.index)
  return {
    followupId: 1000 + meta.index,
    detectionId: 500000000 + meta.index * 37,
    objectClassification: rng.pick([1, 2, 4, 8, 16, 32]),
    observationStatus: rng.pick(STATUSES),
    htm16id: rng.int(34359738368, 68719476735),
    jtindex: rng.int(1, 1000000),
    imagesId: 2000000 + meta.index * 11,
    processingFlags: rng.pick([0, 1, 3]),
    updatedBy: rng.pick(['kws', 'ksmith', 'atlas_bot']),
    followupPriority: rng.int(1, 5),
    externalReferenceId: `ext-${meta.index}`,
    surveyField: rng.pick(['ATLAS', 'ATLAS-SOUTH', 'ATLAS-NORTH']),
    followupCounter: rng.int(1, 40),
    currentTrend: rng.pick(['Rising', 'Fading', 'Flat', 'Unknown']),
    localComments: rng.pick(['', 'nuclear', 'check host', 'bright']),
    lcCount: lcCount(meta, seed),
    catalogue: rng.pick(CATALOGUES),
    catalogueObjectId: `J${meta.ra.toFixed(4)}${meta.dec >= 0 ? '+' : ''}${meta.dec.toFixed(4)}`,
    separation: round(rng.float(0.1, 12), 3),
    discoveryTarget: rng.pick(['', 'TNS', 'ATLAS']),
    rms: round(rng.float(0.01, 0.4), 4),
    rank: rng.int(1, 100)
  }
}

function otherDesignation (xm: readonly XmRow[]): string {
  return xm.find((row) => row.matchedList === TNS_LIST)?.designation ?? ''
}

/** The `object` block of an objects/ record (atlas_diff_objects via model_to_dict). */
export function objectBlock (meta: ObjectMeta, x: ObjectExtras, xm: readonly XmRow[]): Record<string, unknown> {
  return {
    id: meta.id,
    followup_id: x.followupId,
    followup_flag_date: formatDateTime(meta.followupFlagUs),
    detection_id: x.detectionId,
    ra: meta.ra,
    dec: meta.dec,
    object_classification: x.objectClassification,
    sherlockClassification: meta.sherlock,
    observation_status: x.observationStatus,
    htm16id: x.htm16id,
    jtindex: x.jtindex,
    images_id: x.imagesId,
    date_inserted: formatDateTime(mjdToUs(meta.firstMjd - 0.01)),
    date_modified: formatDateTime(meta.dateModifiedUs),
    processing_flags: x.processingFlags,
    updated_by: x.updatedBy,
    followup_priority: x.followupPriority,
    external_reference_id: x.externalReferenceId,
    detection_list_id: meta.detectionListId,
    survey_field: x.surveyField,
    followup_counter: x.followupCounter,
    atlas_designation: meta.designation,
    other_designation: otherDesignation(xm),
    current_trend: x.currentTrend,
    local_comments: x.localComments,
    ndetections: x.lcCount,
    vra: meta.vra,
    rb_pix: meta.rbPix
  }
}

function summary (meta: ObjectMeta, x: ObjectExtras, xm: readonly XmRow[]): Record<string, unknown> {
  return {
    earliest_mjd: meta.firstMjd,
    earliest_mag: round(magModel(meta, meta.firstMjd), 3),
    earliest_filter: 'o',
    latest_mjd: meta.lastMjd,
    latest_mag: round(magModel(meta, meta.lastMjd), 3),
    latest_filter: x.lcCount % 2 === 1 ? 'o' : 'c',
    catalogue: x.catalogue,
    catalogue_object_id: x.catalogueObjectId,
    separation: x.separation,
    external_crossmatches: xm.map((row) => row.designation).join(',')
  }
}

/** A row of atlas_v_followup<N>: date_modified comes out naive (no `Z`), as the corpus recorded. */
export function mainListRow (meta: ObjectMeta, x: ObjectExtras, xm: readonly XmRow[]): Record<string, unknown> {
  const s = summary(meta, x, xm)
  return {
    rank: x.rank,
    id: meta.id,
    atlas_designation: meta.designation,
    other_designation: otherDesignation(xm),
    ra: meta.ra,
    dec: meta.dec,
    ra_avg: meta.ra,
    dec_avg: meta.dec,
    object_classification: x.objectClassification,
    sherlockClassification: meta.sherlock,
    followup_flag_date: formatDateTime(meta.followupFlagUs),
    observation_status: x.observationStatus,
    current_trend: x.currentTrend,
    earliest_mjd: s.earliest_mjd,
    earliest_mag: s.earliest_mag,
    earliest_filter: s.earliest_filter,
    latest_mjd: s.latest_mjd,
    latest_mag: s.latest_mag,
    latest_filter: s.latest_filter,
    catalogue: s.catalogue,
    catalogue_object_id: s.catalogue_object_id,
    separation: s.separation,
    vra: meta.vra,
    rb_pix: meta.rbPix,
    date_modified: formatDateTime(meta.dateModifiedUs, ''),
    external_crossmatches: s.external_crossmatches,
    discovery_target: x.discoveryTarget,
    rms: x.rms,
    detection_list_id: meta.detectionListId,
    images_id: x.imagesId
  }
}

/** A row of atlas_v_followup_userdefined (a custom list): no images_id, plus the group and comments. */
export function customListRow (meta: ObjectMeta, x: ObjectExtras, xm: readonly XmRow[], groupId: number): Record<string, unknown> {
  const s = summary(meta, x, xm)
  return {
    rank: x.rank,
    id: meta.id,
    atlas_designation: meta.designation,
    other_designation: otherDesignation(xm),
    local_comments: x.localComments,
    ra: meta.ra,
    dec: meta.dec,
    ra_avg: meta.ra,
    dec_avg: meta.dec,
    object_classification: x.objectClassification,
    sherlockClassification: meta.sherlock,
    followup_flag_date: formatDateTime(meta.followupFlagUs),
    observation_status: x.observationStatus,
    current_trend: x.currentTrend,
    earliest_mjd: s.earliest_mjd,
    earliest_mag: s.earliest_mag,
    earliest_filter: s.earliest_filter,
    latest_mjd: s.latest_mjd,
    latest_mag: s.latest_mag,
    latest_filter: s.latest_filter,
    catalogue: s.catalogue,
    catalogue_object_id: s.catalogue_object_id,
    separation: s.separation,
    object_group_id: groupId,
    detection_list_id: meta.detectionListId,
    vra: meta.vra,
    rb_pix: meta.rbPix,
    date_modified: formatDateTime(meta.dateModifiedUs),
    external_crossmatches: s.external_crossmatches,
    discovery_target: x.discoveryTarget,
    rms: x.rms
  }
}
