// The sandbox's in-memory database: the catalogue, the tables, and the queries and writes the
// endpoints need. Writes change what later reads see, within one running sandbox.
import { stringifyUpstream } from '../lib/json.js'
import { pyPercentF } from '../lib/py-format.js'
import { pythonFloats } from './floats.js'
import { DEFAULT_RECORD_CACHE } from './options.js'
import { ConeIndex, generateCatalog, type ObjectMeta } from './data-catalog.js'
import { MISSING_RECORD } from '../upstream/endpoints.js'
import { buildRecordParts, type RecordParts, type TimedJson, xmRowJson } from './data-records.js'
import { customListRow, mainListRow, objectBlock, objectExtras } from './data-rows.js'
import { generateTables, type Tables, type VraScoreRow, type XmRow } from './data-tables.js'

function joinTimed (rows: readonly TimedJson[], keep: (mjd: number) => boolean): string {
  let out = ''
  for (const row of rows) {
    if (keep(row.mjd)) out += (out === '' ? '' : ',') + row.json
  }
  return out
}

export class Store {
  readonly catalog: ObjectMeta[]
  readonly tables: Tables
  private readonly byId = new Map<bigint, ObjectMeta>()
  private readonly cone: ConeIndex
  private readonly xmByObject = new Map<bigint, XmRow[]>()
  private readonly xmByName = new Map<string, XmRow[]>()
  private readonly records = new Map<bigint, RecordParts>()
  private readonly objectJson = new Map<bigint, string>()
  private nextScoreId: number
  private nextGroupRowId: number

  constructor (private readonly seed: number, count: number, private readonly cacheSize = DEFAULT_RECORD_CACHE) {
    this.catalog = generateCatalog(seed, count)
    for (const meta of this.catalog) this.byId.set(meta.id, meta)
    this.cone = new ConeIndex(this.catalog)
    this.tables = generateTables(seed, this.catalog)
    for (const row of this.tables.xm) {
      this.xmByObject.set(row.objectId, [...(this.xmByObject.get(row.objectId) ?? []), row])
      this.xmByName.set(row.designation, [...(this.xmByName.get(row.designation) ?? []), row])
    }
    this.nextScoreId = this.tables.vraScores.length + 1
    this.nextGroupRowId = this.tables.groupRows.length + 1
  }

  has (id: bigint): boolean {
    return this.byId.has(id)
  }

  coneSearch (ra: number, dec: number, radiusArcsec: number): Array<{ meta: ObjectMeta, separation: number }> {
    return this.cone.search(ra, dec, radiusArcsec)
  }

  private xm (id: bigint): XmRow[] {
    return this.xmByObject.get(id) ?? []
  }

  private parts (meta: ObjectMeta): RecordParts {
    let parts = this.records.get(meta.id)
    if (parts !== undefined) {
      // Refresh the entry's place in the LRU order.
      this.records.delete(meta.id)
    } else {
      parts = buildRecordParts(meta, this.seed, this.xm(meta.id))
      // Map keys iterate in insertion order: the first is the least recently used.
      for (const oldest of this.records.keys()) {
        if (this.records.size < this.cacheSize) break
        this.records.delete(oldest)
      }
    }
    this.records.set(meta.id, parts)
    return parts
  }

  private objectBlockJson (meta: ObjectMeta): string {
    let json = this.objectJson.get(meta.id)
    if (json === undefined) {
      json = pythonFloats(stringifyUpstream(objectBlock(meta, objectExtras(meta, this.seed), this.xm(meta.id))), 'object')
      this.objectJson.set(meta.id, json)
    }
    return json
  }

  /**
   * One objects/ element as JSON: lc and lcnondets keep mjd > threshold, fp keeps mjd_obs >= threshold.
   * The lc and lcnondets SQL is built with '%f', so their threshold is the value at six decimals; fp's
   * ORM filter takes the value itself.
   */
  recordJson (id: bigint, mjd: number | null): string {
    const meta = this.byId.get(id)
    if (meta === undefined) return MISSING_RECORD
    const parts = this.parts(meta)
    const sqlMjd = mjd === null ? null : Number(pyPercentF(mjd))
    const strict = (t: number): boolean => sqlMjd === null || t > sqlMjd
    const inclusive = (t: number): boolean => mjd === null || t >= mjd
    return `{"object":${this.objectBlockJson(meta)},"lc":[${joinTimed(parts.lc, strict)}],` +
      `"lcnondets":[${joinTimed(parts.lcnondets, strict)}],"fp":[${joinTimed(parts.fp, inclusive)}],${parts.tail}}`
  }

  /** Rows of main detection list `listId` with followup_flag_date > threshold. */
  mainList (listId: number, thresholdUs: number | null): Array<Record<string, unknown>> {
    return this.catalog
      .filter((m) => m.detectionListId === listId && (thresholdUs === null || m.followupFlagUs > thresholdUs))
      .map((m) => mainListRow(m, objectExtras(m, this.seed), this.xm(m.id)))
  }

  /** Rows of custom list (object group) `groupId`; an unknown group is simply empty. */
  customList (groupId: bigint, thresholdUs: number | null): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = []
    for (const row of this.tables.groupRows) {
      const meta = BigInt(row.groupId) === groupId ? this.byId.get(row.objectId) : undefined
      if (meta !== undefined && (thresholdUs === null || meta.followupFlagUs > thresholdUs)) {
        out.push(customListRow(meta, objectExtras(meta, this.seed), this.xm(meta.id), row.groupId))
      }
    }
    return out
  }

  externalByName (name: string): Array<Record<string, unknown>> {
    return (this.xmByName.get(name) ?? []).map(xmRowJson)
  }

  addVraScore (row: Omit<VraScoreRow, 'id'>): void {
    this.tables.vraScores.push({ id: this.nextScoreId++, ...row })
  }

  /** tcs_vra_todo insert with force_insert: the object id is the primary key. */
  addTodo (id: bigint, timestampUs: number): boolean {
    if (this.tables.vraTodo.has(id)) return false
    this.tables.vraTodo.set(id, timestampUs)
    return true
  }

  groupExists (groupId: bigint): boolean {
    return groupId >= 0n && groupId <= 2147483647n && this.tables.groups.has(Number(groupId))
  }

  /** tcs_object_groups insert; false on the unique key (object, group). */
  addGroupMember (id: bigint, groupId: number): boolean {
    if (this.tables.groupRows.some((r) => r.objectId === id && r.groupId === groupId)) return false
    this.tables.groupRows.push({ id: this.nextGroupRowId++, objectId: id, groupId })
    return true
  }

  removeGroupMember (id: bigint, groupId: number): boolean {
    const at = this.tables.groupRows.findIndex((r) => r.objectId === id && r.groupId === groupId)
    if (at === -1) return false
    this.tables.groupRows.splice(at, 1)
    return true
  }

  /** objectdetectionlist/: an update of atlas_diff_objects (list and date_modified). */
  setDetectionList (id: bigint, listId: number, dateModifiedUs: number): void {
    const meta = this.byId.get(id)
    /* c8 ignore next -- the endpoint checked that the object exists */
    if (meta === undefined) return
    meta.detectionListId = listId
    meta.dateModifiedUs = dateModifiedUs
    this.objectJson.delete(id)
  }
}
