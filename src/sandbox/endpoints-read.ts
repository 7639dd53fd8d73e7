// The read endpoints: any authenticated user, GET or POST.
import { DjangoHtmlError } from '../drf/errors.js'
import { pyInt, pyStrip } from '../drf/fields.js'
import { MAIN_LIST_COUNT, maxObjectsInfo } from '../upstream/endpoints.js'
import { SERIALIZERS } from '../upstream/serializers.js'
import { formatDateTime } from '../drf/time.js'
import { int, num, RawJson, readHandlers, reqNum, reqStr, str, type EndpointDef } from './view.js'

const MAX_RADIUS_ARCSEC = 300

/** Splits a CSV field on commas and strips each token, as the serializers do. */
function tokens (csv: string): string[] {
  return csv.split(',').map(pyStrip)
}

/** Integer tokens of an `objects` CSV, in order and with repeats; the VRA lists skip the others silently. */
function idList (csv: string | null): bigint[] | null {
  if (csv === null) return null
  return tokens(csv).map(pyInt).filter((id) => id !== null)
}

/**
 * The VRA lists with `objects`: one query per id, in the order asked, so rows come grouped by id (table
 * order within an id) and a repeated id repeats its rows.
 */
function rowsPerId<R> (ids: readonly bigint[], rows: Iterable<R>, idOf: (row: R) => bigint): R[] {
  const wanted = new Set(ids)
  const byId = new Map<bigint, R[]>()
  for (const row of rows) {
    const id = idOf(row)
    if (!wanted.has(id)) continue
    const group = byId.get(id)
    if (group === undefined) byId.set(id, [row])
    else group.push(row)
  }
  return ids.flatMap((id) => byId.get(id) ?? [])
}

const cone: EndpointDef = {
  name: 'cone',
  access: 'read',
  ...readHandlers(SERIALIZERS.cone, (v, ctx) => {
    const radius = reqNum(v.radius)
    if (radius > MAX_RADIUS_ARCSEC) return { error: 'Max radius is 300 arcsec.' }
    const [ra, dec] = [reqNum(v.ra), reqNum(v.dec)]
    // The sky index takes sines and cosines of the position: an infinite one is Python's ValueError.
    if (Math.abs(ra) === Infinity || Math.abs(dec) === Infinity) throw new DjangoHtmlError(500, 'math domain error')
    const hits = ctx.store.coneSearch(ra, dec, radius)
    const row = (h: typeof hits[number]): Record<string, unknown> =>
      ({ object: h.meta.id, separation: h.separation, objectname: h.meta.designation })
    if (v.requestType === 'count') return { count: hits.length }
    if (v.requestType === 'all') return hits.map(row)
    const nearest = hits[0]
    return nearest === undefined ? {} : row(nearest)
  })
}

const objects: EndpointDef = {
  name: 'objects',
  access: 'read',
  ...readHandlers(SERIALIZERS.objects, (v, ctx) => {
    const list = tokens(reqStr(v.objects))
    const max = ctx.maxObjectsPerCall()
    if (list.length > max) return new RawJson(maxObjectsInfo(max))
    // AtlasDiffObjects.objects.get(pk=token) raises ValueError on a non-integer: a 500 for the batch.
    const ids = list.map((t) => {
      const id = pyInt(t)
      if (id === null) throw new DjangoHtmlError(500, `Field 'id' expected a number but got '${t}'.`)
      return id
    })
    const mjd = num(v.mjd)
    return new RawJson(`[${ids.map((id) => ctx.store.recordJson(id, mjd)).join(',')}]`)
  })
}

const objectlist: EndpointDef = {
  name: 'objectlist',
  access: 'read',
  ...readHandlers(SERIALIZERS.objectlist, (v, ctx) => {
    const id = int(v.objectlistid)
    const threshold = num(v.datethreshold)
    if (v.getcustomlist === true) return ctx.store.customList(id, threshold)
    // OBJECT_LISTS[id]: Python indexing, so -1 is list 13 and 14 is an IndexError (a 500).
    if (id >= BigInt(MAIN_LIST_COUNT) || id < -BigInt(MAIN_LIST_COUNT)) throw new DjangoHtmlError(500, 'list index out of range')
    const index = id < 0n ? MAIN_LIST_COUNT + Number(id) : Number(id)
    return ctx.store.mainList(index, threshold)
  })
}

const vrascoreslist: EndpointDef = {
  name: 'vrascoreslist',
  access: 'read',
  ...readHandlers(SERIALIZERS.vrascoreslist, (v, ctx) => {
    const ids = idList(str(v.objects))
    const since = reqNum(v.datethreshold)
    const minId = int(v.idthreshold)
    // With `objects`, both thresholds are ignored and `debug` filters; without, debug rows are included.
    const table = ctx.store.tables.vraScores
    const rows = ids !== null
      ? rowsPerId(ids, table.filter((r) => r.debug === v.debug), (r) => r.objectId)
      : table.filter((r) => r.timestampUs >= since && BigInt(r.id) >= minId)
    return rows
      .map((r) => ({
        id: r.id,
        transient_object_id: r.objectId,
        preal: r.preal,
        pgal: r.pgal,
        pfast: r.pfast,
        rank: r.rank,
        rank_alt1: r.rankAlt1,
        is_gal_cand: r.isGalCand,
        timestamp: formatDateTime(r.timestampUs),
        apiusername: r.apiusername,
        username: r.username,
        debug: r.debug
      }))
  })
}

const vratodolist: EndpointDef = {
  name: 'vratodolist',
  access: 'read',
  ...readHandlers(SERIALIZERS.vratodolist, (v, ctx) => {
    const ids = idList(str(v.objects))
    const since = reqNum(v.datethreshold)
    const minId = int(v.idthreshold)
    // The todo table's primary key is the object id, so idthreshold compares object ids.
    const table = ctx.store.tables.vraTodo
    const rows = ids !== null ? rowsPerId(ids, table, ([id]) => id) : [...table].filter(([id, ts]) => ts >= since && id >= minId)
    return rows
      .map(([id, ts]) => ({ transient_object_id: id, timestamp: formatDateTime(ts) }))
  })
}

const objectgroupslist: EndpointDef = {
  name: 'objectgroupslist',
  access: 'read',
  ...readHandlers(SERIALIZERS.objectgroupslist, (v, ctx) => {
    const objectId = typeof v.objectid === 'bigint' ? v.objectid : null
    const groupId = typeof v.objectgroupid === 'bigint' ? v.objectgroupid : null
    // Exactly one filter applies; both or neither return the whole table.
    return ctx.store.tables.groupRows
      .filter((r) => (objectId === null) === (groupId === null) ||
        (objectId !== null ? r.objectId === objectId : BigInt(r.groupId) === groupId))
      .map((r) => ({ id: r.id, transient_object_id: r.objectId, object_group_id: r.groupId }))
  })
}

const vraranklist: EndpointDef = {
  name: 'vraranklist',
  access: 'read',
  ...readHandlers(SERIALIZERS.vraranklist, (v, ctx) => {
    const ids = idList(str(v.objects))
    const since = reqNum(v.datethreshold)
    const table = ctx.store.tables.vraRank.values()
    const rows = ids !== null ? rowsPerId(ids, table, (r) => r.objectId) : [...table].filter((r) => r.timestampUs >= since)
    return rows
      .map((r) => ({
        transient_object_id: r.objectId,
        rank: r.rank,
        rank_alt1: r.rankAlt1,
        is_gal_cand: r.isGalCand,
        timestamp: formatDateTime(r.timestampUs)
      }))
  })
}

const externalxmlist: EndpointDef = {
  name: 'externalxmlist',
  access: 'read',
  // camelCase and case-sensitive: `externalobjects` is an unknown field, so ignored.
  ...readHandlers(SERIALIZERS.externalxmlist, (v, ctx) => {
    const names = str(v.externalObjects)
    return names === null ? [] : tokens(names).map((name) => ctx.store.externalByName(name))
  })
}

export const READ_ENDPOINTS: readonly EndpointDef[] = [
  cone, objects, objectlist, vrascoreslist, vratodolist, objectgroupslist, vraranklist, externalxmlist
]
