// Read endpoints of the compatibility path: the upstream's semantics computed from the
// same cached wide reads as v1, answered in the upstream's bytes.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { views } from '../../cache/tags.js'
import { MSG, pyInt, pyStrip, type FieldValue } from '../../drf/fields.js'
import { parseDateTime } from '../../drf/time.js'
import { UpstreamError } from '../../errors.js'
import { CONE_RADIUS_ERROR, coneFromWide, wideConeFields } from '../../upstream/cone.js'
import {
  MAIN_LIST_COUNT, MAX_CONE_RADIUS_ARCSEC, MISSING_RECORD, UPSTREAM_MAX_OBJECTS, canBeAtlasId, emptyConeReply, fields,
  maxObjectsInfo, replyFields, requestFields, type ConeMode, type Fields, type UpstreamEndpoint
} from '../../upstream/endpoints.js'
import type { RouteId } from '../../cache/freshness.js'
import { digitsOf, filterRecordText, filterRows, rowsInIdOrder, type TextRow } from '../../upstream/record-text.js'

export type Values = Record<string, FieldValue>
export interface CompatReply { status: number, body: string }

const ok = (body: string): CompatReply => ({ status: 200, body })
const fieldError = (field: string, message: string): CompatReply => ({ status: 400, body: JSON.stringify({ [field]: [message] }) })

/** Splits a CSV field and strips each token, as the serializers do. */
export function csvTokens (csv: string): string[] {
  return csv.split(',').map(pyStrip)
}

function num (v: FieldValue | undefined): number | undefined {
  return typeof v === 'number' ? v : undefined
}

/** A cached wide read, as the upstream's text. */
async function tableText (app: FastifyInstance, request: FastifyRequest, route: RouteId, endpoint: UpstreamEndpoint, fields: Fields, tags: string[] = []): Promise<string> {
  return (await app.atlas.tableText(request, route, endpoint, fields, tags)).text
}

/** Datetime threshold in microseconds, from a validated (and so parseable) value. */
function thresholdUs (original: string | undefined): number | undefined {
  return original === undefined ? undefined : parseDateTime(original) ?? undefined
}

/** A row's datetime in microseconds; naive values are UTC, as the upstream's are. */
function rowTimeUs (row: TextRow, field: string): number | undefined {
  const v = row[field]
  return typeof v === 'string' ? parseDateTime(v) ?? undefined : undefined
}

export async function cone (app: FastifyInstance, request: FastifyRequest, v: Values): Promise<CompatReply> {
  const [ra, dec, radius] = [num(v.ra), num(v.dec), num(v.radius)] as [number, number, number]
  const mode = v.requestType as ConeMode
  // The upstream's own check, answered here without spending an upstream call.
  if (radius > MAX_CONE_RADIUS_ARCSEC) return { status: 400, body: CONE_RADIUS_ERROR }
  // An infinite coordinate is a 500 page upstream (a math domain error in its sky index): refuse it in
  // DRF's words instead, as the other 500-page inputs are.
  for (const [name, value] of [['ra', ra], ['dec', dec]] as const) {
    if (value === Infinity || value === -Infinity) return fieldError(name, MSG.float)
  }
  // NaN passes DRF's FloatField and then matches nothing, as does a negative radius: the answer is known.
  if (Number.isNaN(ra) || Number.isNaN(dec) || !(radius >= 0)) return ok(emptyConeReply(mode))
  // One wide search per position answers every radius and mode (upstream/cone.ts).
  const derived = coneFromWide(await tableText(app, request, 'cone', 'cone', wideConeFields(ra, dec)), radius, mode)
  if (derived === undefined) throw new UpstreamError('The upstream sent something other than a list for a cone search.')
  return ok(derived)
}

export function objectTokens (v: Values): string[] {
  return csvTokens(String(v.objects ?? ''))
}

/**
 * The object units an `objects` request spends: one per distinct id that can be an ATLAS id (a
 * repeated id, in any int() spelling, is read once, as in v1). The other tokens are answered locally
 * (a placeholder, or a 400), and so is a batch over the upstream's limit.
 */
export function objectUnits (v: Values): number {
  const tokens = objectTokens(v)
  if (tokens.length > UPSTREAM_MAX_OBJECTS) return 0
  const ids = new Set<bigint>()
  for (const token of tokens) {
    const id = pyInt(token)
    if (id !== null && canBeAtlasId(id)) ids.add(id)
  }
  return ids.size
}

export async function objects (app: FastifyInstance, request: FastifyRequest, v: Values): Promise<CompatReply> {
  const tokens = objectTokens(v)
  if (tokens.length > UPSTREAM_MAX_OBJECTS) return ok(maxObjectsInfo())
  // Each token is read as Python's int() reads it (sign, leading zeros, underscores); the upstream
  // answers a token int() refuses with a 500 page for the whole batch: refuse it here instead.
  const ids: bigint[] = []
  for (const token of tokens) {
    const id = pyInt(token)
    if (id === null) return fieldError('objects', `"${token}" is not an ATLAS id (19 digits).`)
    ids.push(id)
  }
  // An integer that cannot be an ATLAS id gets the upstream's placeholder without being asked for.
  const distinct = [...new Set(ids.filter(canBeAtlasId).map(String))]
  const { records } = distinct.length === 0 ? { records: [] } : await app.atlas.objects(request, distinct)
  const byId = new Map(distinct.map((id, i) => [id, records[i] ?? null]))
  const mjd = num(v.mjd)
  const texts = ids.map((id) => {
    const record = byId.get(String(id)) ?? null
    if (record === null) return MISSING_RECORD
    const text = record.bytes.toString('utf8')
    return mjd === undefined ? text : filterRecordText(text, mjd)
  })
  return ok(`[${texts.join(',')}]`)
}

export async function objectlist (app: FastifyInstance, request: FastifyRequest, v: Values, original: Record<string, string>): Promise<CompatReply> {
  const raw = v.objectlistid as bigint
  const isCustom = v.getcustomlist === true
  let listId: number | bigint
  if (isCustom) {
    listId = raw
  } else {
    // The upstream indexes a Python list: -1 is list 13, and 14 or more is a 500 page. Refuse those here.
    if (raw >= BigInt(MAIN_LIST_COUNT) || raw < -BigInt(MAIN_LIST_COUNT)) return fieldError(requestFields.objectListId, `Detection lists are 0 to ${MAIN_LIST_COUNT - 1}.`)
    listId = raw < 0n ? MAIN_LIST_COUNT + Number(raw) : Number(raw)
  }
  const text = await tableText(app, request, 'lists', 'objectlist', fields.objectlist({ listId, isCustom }),
    isCustom ? [views.customListRows(), views.groupMembers(listId)] : [views.detectionLists()])
  const since = thresholdUs(original.datethreshold)
  if (since === undefined) return ok(text)
  // followup_flag_date > threshold (strict), as the upstream filters.
  return ok(filterRows(text, (r) => (rowTimeUs(r, replyFields.listRowDate) ?? -Infinity) > since))
}

/** The VRA lists: with `objects`, those ids (and `debug` on scores), thresholds ignored; else thresholds. */
export async function vraList (app: FastifyInstance, request: FastifyRequest, endpoint: 'vrascoreslist' | 'vratodolist' | 'vraranklist', v: Values, original: Record<string, string>): Promise<CompatReply> {
  const route = endpoint === 'vrascoreslist' ? 'vra-scores' : endpoint === 'vratodolist' ? 'vra-todo' : 'vra-ranks'
  const view = endpoint === 'vrascoreslist' ? views.vraScores() : endpoint === 'vratodolist' ? views.vraTodo() : views.vraRanks()
  if (typeof v.objects === 'string') {
    // The upstream queries the table once per token, in order: non-integer tokens are skipped silently,
    // and an integer that cannot be an ATLAS id has no rows (rows are only written for existing objects).
    const ids = csvTokens(v.objects).map(pyInt).filter((id) => id !== null && canBeAtlasId(id)).map(String)
    if (ids.length === 0) return ok('[]')
    const text = await tableText(app, request, route, endpoint, fields.vraTable(), [view])
    return ok(rowsInIdOrder(text, replyFields.tableObjectId, ids, (r) => endpoint !== 'vrascoreslist' || r.debug === v.debug))
  }
  const text = await tableText(app, request, route, endpoint, fields.vraTable(), [view])
  const since = thresholdUs(original.datethreshold) ?? 0
  const minId = endpoint === 'vraranklist' ? undefined : (v.idthreshold as bigint)
  // The to-do table's primary key is the object id, so idthreshold compares object ids there.
  const idField = endpoint === 'vratodolist' ? replyFields.tableObjectId : replyFields.listRowId
  return ok(filterRows(text, (r) => (rowTimeUs(r, replyFields.tableTimestamp) ?? -Infinity) >= since &&
    (minId === undefined || BigInt(digitsOf(r, idField) ?? '-1') >= minId)))
}

export async function objectgroupslist (app: FastifyInstance, request: FastifyRequest, v: Values): Promise<CompatReply> {
  const objectId = typeof v.objectid === 'bigint' ? String(v.objectid) : undefined
  const groupId = typeof v.objectgroupid === 'bigint' ? v.objectgroupid : undefined
  // Exactly one filter applies; both or neither return the whole table.
  if ((objectId === undefined) === (groupId === undefined)) {
    return ok(await tableText(app, request, 'custom-lists', 'objectgroupslist', fields.wholeTable(), [views.allGroups()]))
  }
  // The lists of an object that cannot exist: none.
  if (objectId !== undefined && !canBeAtlasId(BigInt(objectId))) return ok('[]')
  if (groupId !== undefined) {
    return ok(await tableText(app, request, 'custom-lists', 'objectgroupslist', fields.customListMembers(groupId), [views.groupMembers(groupId)]))
  }
  return ok(await tableText(app, request, 'object-custom-lists', 'objectgroupslist', fields.objectCustomLists(objectId as string), [views.objectGroups(objectId as string)]))
}

export async function externalxmlist (app: FastifyInstance, request: FastifyRequest, v: Values): Promise<CompatReply> {
  if (typeof v.externalObjects !== 'string') return ok('[]')
  return ok(await tableText(app, request, 'crossmatches', 'externalxmlist', fields.crossmatches(csvTokens(v.externalObjects))))
}
