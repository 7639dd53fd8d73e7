// One audit record per upstream write: who (consumer, request id), what (route, upstream endpoint, object
// ids, list, the fields sent) and how it ended (outcome, upstream status, error code). The gateway holds
// one upstream token for everyone, so this is the only place a write is attributed. Records carry no
// headers and no query string, so neither a consumer key nor the upstream token can reach them; fields
// whose names could hold a secret are dropped as well.
import type { FastifyRequest } from 'fastify'
import { toCsv } from '../lib/csv.js'
import { routeOf } from '../lib/route.js'

export interface AuditRecord {
  /** Position in the log (`<ms>-<seq>`, a Redis stream id or the file's own); the pagination cursor. */
  id: string
  time: string
  consumer: string
  request_id: string
  /** `POST /v1/vra/scores`: the method and route template. */
  route: string
  dialect: 'v1' | 'compat'
  /** The upstream endpoint written (the gateway's name for it). */
  endpoint: string
  object_ids: string[]
  /** The custom list (upstream object group id) written, if any. */
  list: string | null
  /** The form fields sent upstream. */
  fields: Record<string, string>
  /**
   * The outcome the write was answered: read from the reply (`created`, `duplicate`, …) or read back
   * after a lost one; `unknown` when answered GW_WRITE_OUTCOME_UNKNOWN, or when a compat write's reply
   * names no outcome; else `error`.
   */
  outcome: string
  /** The status of the write's reply, one it failed on included (an error page, 401, 429); null without one. */
  upstream_status: number | null
  /** The GW_ code the write was answered with when it failed (after its read-back, if any). */
  error: string | null
}

export type AuditDraft = Omit<AuditRecord, 'id'>

export interface AuditFilter {
  consumer?: string
  object?: string
  /** Epoch ms, inclusive, of the record's `time`. */
  since?: number
  /** Epoch ms, exclusive, of the record's `time`. */
  until?: number
  /** The id of the last record of the previous page. */
  cursor?: string
  limit: number
}

export interface AuditPage { records: AuditRecord[], next: string | null }

const SECRET_NAME = /token|password|secret|key|auth/i

/** The fields a record keeps: strings only, none whose name could hold a secret. */
export function safeFields (fields: Readonly<Record<string, unknown>>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(fields)) {
    if (SECRET_NAME.test(name) || value === undefined || value === null) continue
    out[name] = String(value)
  }
  return out
}

export interface WriteTargetLike { objectId: string, groupId?: number | bigint }

export function draftRecord (
  request: FastifyRequest, endpoint: string, fields: Readonly<Record<string, unknown>>, target: WriteTargetLike,
  result: { outcome: string, status: number | null, error: string | null }, nowMs: number
): AuditDraft {
  return {
    time: new Date(nowMs).toISOString(),
    consumer: request.consumer?.id ?? '-',
    request_id: String(request.id),
    route: `${request.method} ${routeOf(request).url ?? request.url.split('?')[0] ?? ''}`,
    dialect: routeOf(request).config.dialect === 'compat' ? 'compat' : 'v1',
    endpoint,
    object_ids: [target.objectId],
    list: target.groupId === undefined ? null : String(target.groupId),
    fields: safeFields(fields),
    outcome: result.outcome,
    upstream_status: result.status,
    error: result.error
  }
}

/** Whether a record passes the filter's consumer, object and time bounds (the cursor is the store's). */
export function matches (record: AuditRecord, filter: AuditFilter): boolean {
  if (filter.consumer !== undefined && record.consumer !== filter.consumer) return false
  if (filter.object !== undefined && !record.object_ids.includes(filter.object)) return false
  const ms = Date.parse(record.time)
  if (filter.since !== undefined && ms < filter.since) return false
  if (filter.until !== undefined && ms >= filter.until) return false
  return true
}

/** `<ms>-<seq>` ids compared as numbers (stream ids and file ids share the form). */
export function compareIds (a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number)
  const [bm = 0, bs = 0] = b.split('-').map(Number)
  return am - bm || as - bs
}

export const CSV_COLUMNS = ['id', 'time', 'consumer', 'request_id', 'route', 'dialect', 'endpoint', 'object_ids', 'list', 'fields', 'outcome', 'upstream_status', 'error'] as const

/** CSV of audit records: object ids joined by spaces, fields as JSON. */
export function auditCsv (records: readonly AuditRecord[]): string {
  return toCsv(CSV_COLUMNS, records, (r, c) => c === 'object_ids' ? r.object_ids.join(' ') : r[c as keyof AuditRecord])
}
