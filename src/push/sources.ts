// Event sources: what push polls on behalf of every subscriber, and how a poll becomes events.
// - `lists/<name>`, a detection or custom list: `member.added`, `member.removed` and `member.changed`
//   (any field of the member's row: VRA score, rank, classification, …, with the old and new values).
// - `vra/scores`, `vra/todo`, `vra/ranks`: `row.added` for new rows, `row.changed` for rows rewritten in
//   place (a rank is an upsert).
// A poll reads through the service (`app.atlas.table`) with exactly the fields and cache key of the
// matching v1 read, so it shares the cache with readers: a poll that finds the table fresh costs no
// upstream call, and one that loads it refreshes what readers see. Its upstream calls go through the
// upstream client like any other (global budget, metrics) and are counted per source.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RouteId } from '../cache/freshness.js'
import { views } from '../cache/tags.js'
import type { TableRead } from '../service/index.js'
import { NotFoundError } from '../errors.js'
import { stringifyV1 } from '../lib/json.js'
import { fields, replyFields, type UpstreamEndpoint } from '../upstream/endpoints.js'

export const LIST_EVENTS = ['member.added', 'member.removed', 'member.changed'] as const
export const TABLE_EVENTS = ['row.added', 'row.changed'] as const
export const EVENT_TYPES: readonly string[] = [...LIST_EVENTS, ...TABLE_EVENTS]

export type Row = Record<string, unknown>

export interface PushEventBody {
  type: string
  source: string
  /** The row's key (SourceSpec.rowKey), as a string: the member's object id, a score row's id, or the object id of a to-do or rank row. */
  id: string
  /** The row as the v1 read shows it; absent for member.removed. */
  row?: Row
  /** member.changed, row.changed: each changed field's old and new value. */
  changes?: Record<string, { from: unknown, to: unknown }>
  /** When the poll that saw the change ran (ISO 8601). */
  detected_at: string
}

// An event type as the poll writes it (member.added, row.changed): a name, never a line break.
const EVENT_TYPE = /^[\w.-]+$/

/**
 * A stored event's body, or undefined when its text does not decode: not JSON, or JSON of another shape
 * than an event (an object whose `source` is a string and whose `type` is a name: letters, digits, `.`,
 * `_`, `-`). The stream is shared by replicas and by releases (a rolling update, a rollback), and a value
 * may be damaged or cut short. Webhooks do not post such an event; event streams send only its id.
 */
export function decodeEvent (text: string): PushEventBody | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const { type, source } = value as { type?: unknown, source?: unknown }
  return typeof type === 'string' && EVENT_TYPE.test(type) && typeof source === 'string' ? value as PushEventBody : undefined
}

/** The scope a subscriber of any source needs (that of the matching reads), by stream or by webhook. */
export const SUBSCRIBER_SCOPE = 'read'

export interface SourceSpec {
  /** `lists/good`, `vra/scores`. */
  name: string
  kind: 'list' | 'table'
  /** The field that identifies a row across polls: snapshots and events are keyed by it. */
  rowKey: string
  /** The scope a subscriber needs (that of the matching read). */
  scope: typeof SUBSCRIBER_SCOPE
  /** Reads the source's table through the service (and so the cache). */
  read: (app: FastifyInstance, request: FastifyRequest) => Promise<TableRead>
}

// Scores are appended (many rows per object, each with its own id); the to-do and rank tables hold one
// row per object and have no id of their own.
const TABLES: Readonly<Record<string, { route: RouteId, endpoint: UpstreamEndpoint, view: () => string, rowKey: string }>> = {
  scores: { route: 'vra-scores', endpoint: 'vrascoreslist', view: views.vraScores, rowKey: replyFields.listRowId },
  todo: { route: 'vra-todo', endpoint: 'vratodolist', view: views.vraTodo, rowKey: replyFields.tableObjectId },
  ranks: { route: 'vra-ranks', endpoint: 'vraranklist', view: views.vraRanks, rowKey: replyFields.tableObjectId }
}

export const VRA_TABLES = Object.keys(TABLES)

/** The source for a list name; 404 GW_NOT_FOUND for an unknown list. */
export function listSource (app: FastifyInstance, name: string): SourceSpec {
  const list = app.lists.resolve(name)
  return {
    name: `lists/${list.name}`,
    kind: 'list',
    rowKey: replyFields.listRowId,
    scope: SUBSCRIBER_SCOPE,
    // The same call, fields and tags as GET /v1/lists/{name}/objects.
    read: async (a, request) => a.atlas.table(request, 'lists', 'objectlist', fields.objectlist({ listId: list.id, isCustom: list.kind === 'custom' }),
      list.kind === 'custom' ? [views.customListRows(), views.groupMembers(list.id)] : [views.detectionLists()])
  }
}

/** The source for a VRA table (scores, todo, ranks); 404 GW_NOT_FOUND otherwise. */
export function tableSource (table: string): SourceSpec {
  const spec = Object.hasOwn(TABLES, table) ? TABLES[table] : undefined
  if (spec === undefined) throw new NotFoundError(`Unknown VRA table "${table}"; the tables are ${VRA_TABLES.join(', ')}.`)
  return {
    name: `vra/${table}`,
    kind: 'table',
    rowKey: spec.rowKey,
    scope: SUBSCRIBER_SCOPE,
    read: async (a, request) => a.atlas.table(request, spec.route, spec.endpoint, fields.vraTable(), [spec.view()])
  }
}

/** A source by its name (`lists/good`), as webhooks name them. */
export function sourceByName (app: FastifyInstance, name: string): SourceSpec {
  const [kind, rest = ''] = name.split('/', 2)
  if (kind === 'lists') return listSource(app, rest)
  if (kind === 'vra') return tableSource(rest)
  throw new NotFoundError(`Unknown event source "${name}".`)
}

/**
 * The request a poll of `source` reads with: no consumer (nothing is charged to anyone's share; the
 * global budget still is), no headers (never a bypass), and the counters the service fills in. Each
 * upstream call is counted under the source as it is made: a stale answer's background refresh makes
 * its call after the poll has returned.
 */
export function pollRequest (app: FastifyInstance, source: string): FastifyRequest {
  let calls = 0
  return {
    server: app,
    log: app.log,
    consumer: null,
    headers: {},
    cacheStatus: '',
    get upstreamCalls () { return calls },
    set upstreamCalls (count: number) {
      app.metrics.pushPollCalls.inc({ source }, count - calls)
      calls = count
    }
  } as unknown as FastifyRequest
}

// A snapshot of rows keyed by another field than `id` names that field in an entry of its own. Before
// it did, to-do and rank rows were keyed by an `id` they do not have, which left their snapshots empty:
// such a snapshot is taken for none, so the next poll is a baseline instead of announcing every row as
// added. Snapshots keyed by `id` (lists, scores) are the rows alone, as they always were, and a replica
// of that release reading a marked snapshot finds no row keyed as it expects and announces nothing
// (tables announce no removals).
const ROW_KEY_ENTRY = '#rowKey'

/** A poll's rows as stored in its snapshot. */
export function snapshotText (rows: Record<string, Row>, rowKey: string): string {
  return JSON.stringify(rowKey === replyFields.listRowId ? rows : { [ROW_KEY_ENTRY]: rowKey, ...rows })
}

/**
 * What snapshotRows answers for a stored snapshot that does not decode: not JSON (cut short, damaged), or
 * JSON of another shape than rows keyed by id (written by another program or a future release). The poll
 * takes it for none, as one keyed otherwise, and says so.
 */
export const SNAPSHOT_UNDECODABLE = 'snapshot-undecodable'

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * The rows of a stored snapshot keyed by `rowKey`; null when it was keyed otherwise, SNAPSHOT_UNDECODABLE
 * when it does not decode. Until 2026-12-02 a snapshot that was not JSON threw at every poll, and the
 * source announced nothing until the snapshot expired, which the lead kept from happening.
 */
export function snapshotRows (text: string, rowKey: string): Record<string, Row> | null | typeof SNAPSHOT_UNDECODABLE {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return SNAPSHOT_UNDECODABLE
  }
  if (!isObject(value)) return SNAPSHOT_UNDECODABLE
  const { [ROW_KEY_ENTRY]: marked, ...rows } = value
  if (marked !== undefined && typeof marked !== 'string') return SNAPSHOT_UNDECODABLE
  for (const id in rows) if (!isObject(rows[id])) return SNAPSHOT_UNDECODABLE
  return (marked ?? replyFields.listRowId) === rowKey ? rows as Record<string, Row> : null
}

/** Rows keyed by their `rowKey` field, in the v1 form (ids as strings), as stored in a snapshot. */
export function keyedRows (value: unknown, rowKey: string): Record<string, Row> {
  const rows = JSON.parse(stringifyV1(Array.isArray(value) ? value : [])) as Row[]
  const out: Record<string, Row> = {}
  for (const row of rows) {
    const id = row[rowKey]
    if (typeof id === 'string' || typeof id === 'number') out[String(id)] = row
  }
  return out
}

function changedFields (before: Row, after: Row): Record<string, { from: unknown, to: unknown }> | undefined {
  let changes: Record<string, { from: unknown, to: unknown }> | undefined
  for (const field of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const from = before[field] ?? null
    const to = after[field] ?? null
    if (JSON.stringify(from) !== JSON.stringify(to)) (changes ??= {})[field] = { from, to }
  }
  return changes
}

const byId = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)

/** The events between two snapshots of a source, in a stable order: removals, additions, changes, each by id. */
export function diffRows (source: SourceSpec, before: Record<string, Row>, after: Record<string, Row>, detectedAt: string): PushEventBody[] {
  const events: PushEventBody[] = []
  const isList = source.kind === 'list'
  if (isList) {
    for (const id of Object.keys(before).sort(byId)) {
      if (!Object.hasOwn(after, id)) events.push({ type: 'member.removed', source: source.name, id, detected_at: detectedAt })
    }
  }
  const ids = Object.keys(after).sort(byId)
  for (const id of ids) {
    if (!Object.hasOwn(before, id)) events.push({ type: isList ? 'member.added' : 'row.added', source: source.name, id, row: after[id] as Row, detected_at: detectedAt })
  }
  for (const id of ids) {
    const old = Object.hasOwn(before, id) ? before[id] : undefined
    if (old === undefined) continue
    const changes = changedFields(old, after[id] as Row)
    if (changes !== undefined) events.push({ type: isList ? 'member.changed' : 'row.changed', source: source.name, id, row: after[id] as Row, changes, detected_at: detectedAt })
  }
  return events
}
