// After a write's reply is lost (the deadline passed, or the connection dropped once the request was
// sent), the upstream may or may not have applied it. Where the upstream can show the effect, one
// read says which: custom-list membership (objectgroupslist/ for the object), the to-do queue
// (vratodolist/ for the object) and the detection list (the object's record). VRA scores append rows
// and ranks overwrite one, with the server's time, so neither can be told apart from an earlier write.
import type { WriteKind } from '../cache/tags.js'
import { parseLossless } from '../lib/json.js'
import type { UpstreamReply } from '../upstream/client.js'
import { fields as upstreamFields, replyFields, type Fields, type UpstreamEndpoint } from '../upstream/endpoints.js'

export type ReadBack =
  | { state: 'applied' }
  | { state: 'not_applied' }
  /** The upstream offers no read that tells (scores, ranks). */
  | { state: 'unreadable' }
  /** The read itself failed (budget, timeout, a bad reply). */
  | { state: 'failed', err: unknown }

export type ReadCall = (endpoint: UpstreamEndpoint, fields: Fields) => Promise<UpstreamReply>

// A deadline that passed after connecting, or a connection that broke mid-exchange: the request may
// have reached the upstream. A connect timeout or a refused connection means it never did.
const LOST_AFTER_SEND = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET'])
// The record field holding the object's detection list (`object.detection_list_id`).
const DETECTION_LIST_FIELD = 'detection_list_id'

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** The upstream's status when `err` is about a reply it sent (error-map.ts mapBadReply's cause). */
export function replyStatusOf (err: unknown): number | undefined {
  const status = ((err as { cause?: unknown } | null)?.cause as { status?: unknown } | null | undefined)?.status
  return typeof status === 'number' ? status : undefined
}

/**
 * Whether a failed write may have been applied upstream: its reply was lost, or it came back from past
 * the view and says nothing readable (a 5xx, say a front proxy's 504 page or a Django error raised after
 * the database write, or a 2xx that is not JSON or names no known outcome). Not when it was refused.
 */
export function mayHaveApplied (err: unknown): boolean {
  const cause = (err as { cause?: unknown } | null)?.cause
  const causeCode = codeOf(cause) ?? codeOf((cause as { cause?: unknown } | null)?.cause)
  switch (codeOf(err)) {
    case 'GW_UPSTREAM_TIMEOUT': return causeCode !== 'UND_ERR_CONNECT_TIMEOUT'
    case 'GW_UPSTREAM_ERROR': {
      if (causeCode !== undefined && LOST_AFTER_SEND.has(causeCode)) return true
      const status = replyStatusOf(err)
      return status !== undefined && (status >= 500 || (status >= 200 && status < 300))
    }
    default: return false
  }
}

type Row = Record<string, unknown>

function rows (reply: UpstreamReply): Row[] {
  const value = reply.status === 200 ? parseLossless(reply.text) : undefined
  if (!Array.isArray(value)) throw new Error(`read-back answered ${reply.status}, not a JSON array`)
  return value.filter((r): r is Row => r !== null && typeof r === 'object')
}

const same = (a: unknown, b: string | undefined): boolean => b !== undefined && String(a) === b

/** Reads back whether the write `kind` with `fields` (as sent) is in effect now; one upstream read at most. */
export async function readBack (call: ReadCall, kind: WriteKind, fields: Fields): Promise<ReadBack> {
  const objectId = fields.objectid ?? ''
  try {
    switch (kind) {
      case 'objectgroups':
      case 'objectgroupsdelete': {
        const isMember = rows(await call('objectgroupslist', upstreamFields.objectCustomLists(objectId)))
          .some((r) => same(r[replyFields.groupId], fields.objectgroupid))
        return { state: isMember === (kind === 'objectgroups') ? 'applied' : 'not_applied' }
      }
      case 'vratodo': {
        // vratodolist/ selects rows by the same `objects` CSV field as objects/.
        const isQueued = rows(await call('vratodolist', upstreamFields.objects([objectId])))
          .some((r) => same(r[replyFields.tableObjectId], objectId))
        return { state: isQueued ? 'applied' : 'not_applied' }
      }
      case 'objectdetectionlist': {
        const [record] = rows(await call('objects', upstreamFields.objects([objectId])))
        const object = record?.object
        const listId = object !== null && typeof object === 'object' ? (object as Row)[DETECTION_LIST_FIELD] : undefined
        return { state: same(listId, fields.objectlist) ? 'applied' : 'not_applied' }
      }
      default:
        return { state: 'unreadable' }
    }
  } catch (err) {
    return { state: 'failed', err }
  }
}
