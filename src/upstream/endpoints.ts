// The one file that knows the upstream: paths, field names and what its replies mean. An upstream
// rename is a change here (or an UPSTREAM_PATHS override), and consumers change nothing.
// What it encodes is summarised in docs/architecture.md (the upstream's endpoints and quirks).

export type UpstreamEndpoint =
  'cone' | 'objects' | 'objectlist' | 'vrascores' | 'vrascoreslist' | 'vratodo' | 'vratodolist' |
  'objectgroups' | 'objectgroupslist' | 'objectgroupsdelete' | 'vrarank' | 'vraranklist' |
  'externalxmlist' | 'objectdetectionlist' | 'auth-token'

export type Fields = Record<string, string>

export const DEFAULT_PATHS: Readonly<Record<UpstreamEndpoint, string>> = {
  cone: 'cone/',
  objects: 'objects/',
  objectlist: 'objectlist/',
  vrascores: 'vrascores/',
  vrascoreslist: 'vrascoreslist/',
  vratodo: 'vratodo/',
  vratodolist: 'vratodolist/',
  objectgroups: 'objectgroups/',
  objectgroupslist: 'objectgroupslist/',
  objectgroupsdelete: 'objectgroupsdelete/',
  vrarank: 'vrarank/',
  vraranklist: 'vraranklist/',
  externalxmlist: 'externalxmlist/',
  objectdetectionlist: 'objectdetectionlist/',
  'auth-token': 'auth-token/'
}

/** Endpoints that change upstream state: never cached, never retried blindly, never sent as GET. */
export const WRITE_ENDPOINTS: ReadonlySet<UpstreamEndpoint> = new Set([
  'vrascores', 'vratodo', 'objectgroups', 'objectgroupsdelete', 'vrarank', 'objectdetectionlist', 'auth-token'
])

function isUpstreamEndpoint (name: string): name is UpstreamEndpoint {
  return Object.hasOwn(DEFAULT_PATHS, name)
}

/** Paths with overrides applied (UPSTREAM_PATHS, e.g. `{"objects":"objects2/"}`); each ends in `/`. */
export function resolvePaths (overrides: string): Record<UpstreamEndpoint, string> {
  const paths = { ...DEFAULT_PATHS }
  if (overrides === '') return paths
  const parsed: unknown = JSON.parse(overrides)
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('UPSTREAM_PATHS must be a JSON object')
  for (const [name, path] of Object.entries(parsed)) {
    if (!isUpstreamEndpoint(name)) throw new Error(`UPSTREAM_PATHS: unknown endpoint "${name}"`)
    if (typeof path !== 'string' || !/^[a-z0-9_-]+(?:\/[a-z0-9_-]+)*\/$/i.test(path)) throw new Error(`UPSTREAM_PATHS: "${name}" must be a relative path ending in /`)
    paths[name] = path
  }
  return paths
}

// ---- Values sent upstream ----

/** Request field names the compatibility path names in its own error replies. */
export const requestFields = { objectListId: 'objectlistid' } as const

export const CONE_MODES = ['nearest', 'all', 'count'] as const
export type ConeMode = typeof CONE_MODES[number]
export const MAX_CONE_RADIUS_ARCSEC = 300

// A VRA table's datethreshold defaults upstream to 1970-01-01 (inclusive), so a row written with an
// earlier insertdate is in no read without one. The whole-table read asks from the earliest DATETIME
// MySQL (the upstream's database) supports: an earlier row is not one it promises to store, and an
// earlier value is not one it promises to compare. Written in full and in UTC: Django 3.2 refuses a
// date-only value, and a zone offset this near year 1 is a conversion that can fail in Python.
const VRA_TABLE_SINCE = '1000-01-01T00:00:00Z'

export const fields = {
  cone: (q: { ra: number, dec: number, radius: number, mode: ConeMode }): Fields =>
    ({ ra: String(q.ra), dec: String(q.dec), radius: String(q.radius), requestType: q.mode }),
  /** Full-history records: no `mjd`, so one cached record serves every `mjd_min`. */
  objects: (ids: readonly string[]): Fields => ({ objects: ids.join(',') }),
  /** Whole list, no threshold: every consumer's variant is filtered locally from one upstream call. */
  /** List and group ids are integers of any size upstream: a compat request's bigint is sent as it came. */
  objectlist: (q: { listId: number | bigint, isCustom: boolean }): Fields =>
    ({ objectlistid: String(q.listId), getcustomlist: q.isCustom ? 'true' : 'false' }),
  customListMembers: (groupId: number | bigint): Fields => ({ objectgroupid: String(groupId) }),
  objectCustomLists: (objectId: string): Fields => ({ objectid: objectId }),
  wholeTable: (): Fields => ({}),
  /** A VRA table whole: without a threshold the upstream keeps only rows from 1970 on (see VRA_TABLE_SINCE). */
  vraTable: (): Fields => ({ datethreshold: VRA_TABLE_SINCE }),
  crossmatches: (names: readonly string[]): Fields => ({ externalObjects: names.join(',') }),
  vraScore: (w: { id: string, preal?: number, pgal?: number, pfast?: number, rank?: number, rank_alt1?: number, is_gal_cand?: number, debug?: boolean }): Fields =>
    compact({ objectid: w.id, preal: w.preal, pgal: w.pgal, pfast: w.pfast, rank: w.rank, rank_alt1: w.rank_alt1, is_gal_cand: w.is_gal_cand, debug: w.debug }),
  vraTodo: (id: string): Fields => ({ objectid: id }),
  vraRank: (w: { id: string, rank: number, rank_alt1?: number, is_gal_cand?: number }): Fields =>
    compact({ objectid: w.id, rank: w.rank, rank_alt1: w.rank_alt1, is_gal_cand: w.is_gal_cand }),
  listMembership: (objectId: string, groupId: number): Fields => ({ objectid: objectId, objectgroupid: String(groupId) }),
  detectionList: (objectId: string, listId: number): Fields => ({ objectid: objectId, objectlist: String(listId) }),
  login: (username: string, password: string): Fields => ({ username, password })
}

function compact (values: Record<string, string | number | boolean | undefined>): Fields {
  const out: Fields = {}
  for (const [k, v] of Object.entries(values)) if (v !== undefined) out[k] = String(v)
  return out
}

// ---- Replies ----

/** The upstream's id limit of one `objects/` call (50,000 since 2025-11-21). */
export const UPSTREAM_MAX_OBJECTS = 50_000

/** Main detection lists 0…13; the upstream indexes a Python list with objectlistid. */
export const MAIN_LIST_COUNT = 14

/** The `objects/` reply over its id limit: a dict, not a list, with status 200. */
export function maxObjectsInfo (max = UPSTREAM_MAX_OBJECTS): string {
  return `{"info":"Max number of objects for each requests is ${max.toLocaleString('en-US')}"}`
}

/** The id limit a "Max number of objects" reply states (`... is 50,000`); undefined when it states none. */
export function maxObjectsStated (text: string): number | undefined {
  const stated = /Max number of objects[^"]*?(\d[\d,]*)\s*"/.exec(text)?.[1]
  const limit = stated === undefined ? NaN : Number(stated.replaceAll(',', ''))
  return Number.isSafeInteger(limit) && limit > 0 ? limit : undefined
}

/** The upstream's element for an unknown id (since 2025-11-21; before, a 500 page). */
export const MISSING_RECORD = '{"object":"AtlasDiffObjects matching query does not exist.","lc":null,"lcnondets":null,"fp":null,' +
  '"sherlock_crossmatches":null,"sherlock_classifications":null,"tns_crossmatches":null,"external_crossmatches":null}'

/** The `objects/` reply over its id limit is a dict, not a list. */
export function isMaxObjectsInfo (text: string): boolean {
  return /^\s*\{\s*"info"\s*:\s*"Max number of objects/.test(text)
}

/** What a cone search that matches nothing answers, per mode (status 200 in every mode). */
export function emptyConeReply (mode: ConeMode): string {
  return mode === 'count' ? '{"count":0}' : mode === 'all' ? '[]' : '{}'
}

// ---- Ids ----

// ATLAS ids are 19-digit positive integers. The upstream reads any integer as an id; one outside this
// range names no object, so its reply is known without asking.
const MIN_ATLAS_ID = 10n ** 18n
const MAX_ATLAS_ID = 10n ** 19n - 1n

/** Whether an integer (as Python's int() read it) can be an ATLAS id at all. */
export function canBeAtlasId (id: bigint): boolean {
  return id >= MIN_ATLAS_ID && id <= MAX_ATLAS_ID
}

/** The `info` texts of the write replies; failures among them come with success statuses too. */
export const WRITE_INFO = {
  created: 'Row created.',
  duplicate: 'Duplicate row. Cannot add row.',
  unknownObject: 'Object does not exist.',
  unknownList: 'Object group ID does not exist.',
  notMember: 'Object group ID does not exist or object ID does not exist.',
  rejected: 'Error updating row.'
} as const

export type ObjectWriteEndpoint = 'vrascores' | 'vratodo' | 'objectgroups' | 'objectgroupsdelete' | 'vrarank' | 'objectdetectionlist'

// Every write checks its object before anything else and answers a missing one with the endpoint's
// usual status: 201 on the inserts, 200 on objectdetectionlist, 400 on objectgroupsdelete.
const UNKNOWN_OBJECT_STATUS: Readonly<Record<ObjectWriteEndpoint, number>> = {
  vrascores: 201,
  vratodo: 201,
  vrarank: 201,
  objectgroups: 201,
  objectgroupsdelete: 400,
  objectdetectionlist: 200
}

/** A write's reply for an object id that does not exist: `{"objectid":<id>,"info":"Object does not exist."}`. */
export function unknownObjectReply (endpoint: ObjectWriteEndpoint, objectId: bigint): { status: number, body: string } {
  return { status: UNKNOWN_OBJECT_STATUS[endpoint], body: `{"objectid":${objectId},"info":${JSON.stringify(WRITE_INFO.unknownObject)}}` }
}

/** An unknown id comes back as a placeholder whose `object` is a message string, not a record. */
export function isMissingRecord (recordText: string): boolean {
  return recordText.startsWith('{"object":"')
}

/** Names of the fields in the replies the facade reshapes. */
export const replyFields = {
  coneHit: { id: 'object', name: 'objectname', separation: 'separation' },
  coneCount: 'count',
  listRowId: 'id',
  listRowDate: 'followup_flag_date',
  tableObjectId: 'transient_object_id',
  tableTimestamp: 'timestamp',
  groupId: 'object_group_id',
  authToken: 'token',
  detail: 'detail',
  // The list filters of the client and the row fields they apply to.
  listFilters: {
    vra: 'vra', rb_pix: 'rb_pix', ra: 'ra', dec: 'dec', sherlock_class: 'sherlockClassification', spec_type: 'observation_status'
  }
} as const

export type WriteOutcome =
  'created' | 'duplicate' | 'unknown_object' | 'unknown_list' | 'not_member' | 'removed' | 'rejected'

/**
 * Reads a write reply. The upstream says "failure" with success codes (201 `Object does not exist.`,
 * 200 `Error updating row.`), so the `info` text decides, never the status alone; only a removal
 * answers with a bare 204, which on another write says nothing of its outcome.
 */
export function writeOutcome (endpoint: ObjectWriteEndpoint, status: number, body: unknown): WriteOutcome | undefined {
  if (status === 204) return endpoint === 'objectgroupsdelete' ? 'removed' : undefined
  const info = body !== null && typeof body === 'object' && 'info' in body ? (body as { info: unknown }).info : undefined
  switch (info) {
    case WRITE_INFO.created: return 'created'
    case WRITE_INFO.duplicate: return 'duplicate'
    case WRITE_INFO.unknownObject: return 'unknown_object'
    case WRITE_INFO.unknownList: return 'unknown_list'
    case WRITE_INFO.notMember: return 'not_member'
    case WRITE_INFO.rejected: return 'rejected'
    default: return undefined
  }
}

/** The upstream's 401 details (token authentication, header then `?token=`). */
export const AUTH_DETAILS = {
  notProvided: 'Authentication credentials were not provided.',
  expired: 'Token has expired.',
  invalid: 'Invalid token.',
  noCredentials: 'Invalid token header. No credentials provided.',
  spaces: 'Invalid token header. Token string should not contain spaces.',
  invalidChars: 'Invalid token header. Token string should not contain invalid characters.',
  badFormat: 'Invalid token format.'
} as const

/**
 * What the upstream lets through as a `?token=`: Python's `^\w+$` (Unicode word characters, marks
 * included), whose `$` also matches before one trailing newline. Anything else is `badFormat`.
 */
export const QUERY_TOKEN_PATTERN = /^[\p{L}\p{N}\p{M}_]+\n?$/u

/** The upstream's other `{"detail"}` texts (permission, protocol, throttling). */
export const DETAILS = {
  forbidden: 'You do not have permission to perform this action.',
  notFound: 'Not found.',
  notAcceptable: 'Could not satisfy the request Accept header.',
  serverError: 'A server error occurred.',
  methodNotAllowed: (method: string): string => `Method "${method}" not allowed.`,
  /** The throttle's detail; `waitS` null when the wait is not known. */
  throttled: (waitS: number | null): string => waitS === null
    ? 'Request was throttled.'
    : `Request was throttled. Expected available in ${waitS} ${waitS === 1 ? 'second' : 'seconds'}.`
} as const

/** What a GET on a write endpoint answers (200), except objectdetectionlist/, whose GET writes. */
export const GET_STUB = { Error: 'GET is not implemented for this service.' } as const

/** auth-token/ with wrong credentials: 400 with this non-field error. */
export const LOGIN_FAILED = 'Unable to log in with provided credentials.'

/** auth-token/'s success body, with the key and its lifetime in seconds (a float upstream). */
export function authTokenReply (key: string, expiresInS: number): string {
  return `{"token":${JSON.stringify(key)},"expires_in":${expiresInS.toFixed(1)},"refreshed":false}`
}
