// The write endpoints and their quirks: failures with
// success codes, `objectgroupid` holding the object id, 204 then 400, GET that writes.
import { DjangoHtmlError } from '../drf/errors.js'
import { validate } from '../drf/fields.js'
import { WRITE_INFO } from '../upstream/endpoints.js'
import { SERIALIZERS } from '../upstream/serializers.js'
import { GET_STUB, int, num, reqNum, writeHandlers, type EndpointDef, type Handler, type Values, type ViewContext } from './view.js'

const NOT_FOUND = WRITE_INFO.unknownObject
const CREATED = WRITE_INFO.created
const DUPLICATE = WRITE_INFO.duplicate
const NO_GROUP = WRITE_INFO.unknownList
// objectdetectionlist accepts only possible ("snooze"), eyeball and galcand.
const DETECTION_LISTS = new Set([3n, 4n, 12n])

/** `insertdate` when given, else the server's "now". */
function insertDate (v: Values, ctx: ViewContext): number {
  return num(v.insertdate) ?? ctx.nowUs()
}

const vrascores: EndpointDef = {
  name: 'vrascores',
  access: 'write',
  ...writeHandlers(SERIALIZERS.vrascores, (v, ctx) => {
    const objectid = int(v.objectid)
    if (!ctx.store.has(objectid)) return { objectid, info: NOT_FOUND }
    // Rows are append-only history; apiusername is the authenticated user.
    ctx.store.addVraScore({
      objectId: objectid,
      preal: num(v.preal),
      pgal: num(v.pgal),
      pfast: num(v.pfast),
      rank: num(v.rank),
      rankAlt1: num(v.rank_alt1),
      isGalCand: typeof v.is_gal_cand === 'bigint' ? Number(v.is_gal_cand) : null,
      timestampUs: insertDate(v, ctx),
      /* c8 ignore next -- write views always have an authenticated user */
      apiusername: ctx.user?.username ?? '',
      username: null,
      debug: v.debug === true
    })
    return { objectid, info: CREATED }
  })
}

const vratodo: EndpointDef = {
  name: 'vratodo',
  access: 'write',
  ...writeHandlers(SERIALIZERS.vratodo, (v, ctx) => {
    const objectid = int(v.objectid)
    if (!ctx.store.has(objectid)) return { objectid, info: NOT_FOUND }
    return { objectid, info: ctx.store.addTodo(objectid, insertDate(v, ctx)) ? CREATED : DUPLICATE }
  })
}

const objectgroups: EndpointDef = {
  name: 'objectgroups',
  access: 'write',
  ...writeHandlers(SERIALIZERS.objectgroups, (v, ctx) => {
    const objectid = int(v.objectid)
    const groupId = int(v.objectgroupid)
    if (!ctx.store.has(objectid)) return { objectid, info: NOT_FOUND }
    if (!ctx.store.groupExists(groupId)) return { objectgroupid: groupId, info: NO_GROUP }
    // The upstream puts the OBJECT id under "objectgroupid" here.
    return { objectgroupid: objectid, info: ctx.store.addGroupMember(objectid, Number(groupId)) ? CREATED : DUPLICATE }
  })
}

const objectgroupsdelete: EndpointDef = {
  name: 'objectgroupsdelete',
  access: 'write',
  get: async () => ({ status: 200, data: GET_STUB }),
  post: async (ctx) => {
    const result = validate(SERIALIZERS.objectgroupsdelete, await ctx.data())
    // The view reads `message` even when validation failed: UnboundLocalError, a 500 page.
    if (!result.ok) throw new DjangoHtmlError(500, "local variable 'message' referenced before assignment")
    const objectid = int(result.values.objectid)
    const groupId = int(result.values.objectgroupid)
    if (!ctx.store.has(objectid)) return { status: 400, data: { objectid, info: NOT_FOUND } }
    if (!ctx.store.groupExists(groupId)) return { status: 400, data: { objectgroupid: groupId, info: NO_GROUP } }
    if (!ctx.store.removeGroupMember(objectid, Number(groupId))) {
      return { status: 400, data: { objectgroupid: groupId, objectid, info: WRITE_INFO.notMember } }
    }
    return { status: 204 }
  }
}

const vrarank: EndpointDef = {
  name: 'vrarank',
  access: 'write',
  ...writeHandlers(SERIALIZERS.vrarank, (v, ctx) => {
    const objectid = int(v.objectid)
    if (!ctx.store.has(objectid)) return { objectid, info: NOT_FOUND }
    // A plain save(): insert, or replace every column of the existing row; same text either way.
    const existing = ctx.store.tables.vraRank.get(objectid)
    const row = {
      objectId: objectid,
      rank: reqNum(v.rank),
      rankAlt1: num(v.rank_alt1),
      isGalCand: typeof v.is_gal_cand === 'bigint' ? Number(v.is_gal_cand) : null,
      timestampUs: insertDate(v, ctx)
    }
    if (existing !== undefined) Object.assign(existing, row)
    else ctx.store.tables.vraRank.set(objectid, row)
    return { objectid, info: CREATED }
  })
}

// objectdetectionlist/ writes on GET too (from the query string), for any authenticated user.

function detectionHandler (source: 'query' | 'body'): Handler {
  return async (ctx) => {
    const result = validate(SERIALIZERS.objectdetectionlist, source === 'query' ? ctx.query : await ctx.data())
    if (!result.ok) return { status: 400, data: result.errors }
    const objectid = int(result.values.objectid)
    if (!ctx.store.has(objectid)) return { status: 200, data: { objectid, info: NOT_FOUND } }
    const list = int(result.values.objectlist)
    if (!DETECTION_LISTS.has(list)) return { status: 200, data: { objectid, info: WRITE_INFO.rejected } }
    ctx.store.setDetectionList(objectid, Number(list), insertDate(result.values, ctx))
    return { status: 200, data: { objectid, info: CREATED } }
  }
}

const objectdetectionlist: EndpointDef = {
  name: 'objectdetectionlist',
  access: 'write',
  get: detectionHandler('query'),
  post: detectionHandler('body')
}

export const WRITE_ENDPOINTS: readonly EndpointDef[] = [
  vrascores, vratodo, objectgroups, objectgroupsdelete, vrarank, objectdetectionlist
]
