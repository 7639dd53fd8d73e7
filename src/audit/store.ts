// Where audit records are kept. With Redis: one stream (`<prefix>audit`), capped at about
// AUDIT_MAX_ENTRIES and trimmed to AUDIT_RETENTION_DAYS on every append (XADD and XTRIM on one key, in
// one MULTI), shared by every replica. Without Redis: an append-only JSON-lines file, one record a line;
// it is never rewritten (rotate it outside, e.g. logrotate's copytruncate), and records older than the
// retention are skipped when read. Both read pages in id order, after a cursor, keeping the records
// whose `time` is within the time bounds.
import { createReadStream } from 'node:fs'
import { appendFile, open } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { Redis } from 'ioredis'
import { compareIds, matches, type AuditDraft, type AuditFilter, type AuditPage, type AuditRecord } from './record.js'

export const MAX_PAGE = 1000
// Stream entries read per XRANGE while a filtered page fills.
const SCAN_BATCH = 500
const DAY_MS = 86400000
// How far a stream id's time (the Redis server's clock at the append) may lie from the record's `time`
// (the replica's clock before it): the append's latency and the clocks' difference. A time bound
// narrows the XRANGE by the bound widened this much; the bound itself applies to `time` (matches()).
// Writes are few (the upstream allows ~100 calls an hour), so the margin adds few entries to a scan.
const APPEND_MARGIN_MS = 10 * 60000

// A record kept through a Redis outage is appended when Redis answers again, its id that much later
// than its `time`: the longest such delay is kept beside the stream (the larger of the stored and the
// new), and a time-bounded scan reaches that far past its bound.
const KEEP_MAX_LUA = `
local kept = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > kept then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
`

export interface AuditStore {
  append: (draft: AuditDraft) => Promise<AuditRecord>
  query: (filter: AuditFilter) => Promise<AuditPage>
}

export interface AuditStoreOptions {
  retentionDays: number
  maxEntries: number
  /** The clock of the retention, and of the file's ids (tests step it). */
  now?: () => number
  /** A record of the Redis stream that does not decode, left out of the page it was read for. */
  onUnreadable?: (id: string, reason: string) => void
}

const isString = (value: unknown): value is string => typeof value === 'string'
const isStringOrNull = (value: unknown): boolean => value === null || typeof value === 'string'

/**
 * The record a stream entry's text holds, or why it does not decode (another version's form, or a
 * damaged value). Never throws: it runs inside a guarded Redis call, where a throw was taken for Redis
 * failing. Checks the fields the pager and the admin read's answer need; fields this version does not
 * know stay, as they did.
 */
function decodeRecord (id: string, text: string): AuditRecord | string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return `not JSON (${text.length} characters)`
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'JSON, but not an object'
  const r = value as Record<string, unknown>
  const fields = r.fields
  const isValid = isString(r.time) && !Number.isNaN(Date.parse(r.time)) && isString(r.consumer) && isString(r.request_id) &&
    isString(r.route) && isString(r.dialect) && isString(r.endpoint) && Array.isArray(r.object_ids) && r.object_ids.every(isString) &&
    isStringOrNull(r.list) && typeof fields === 'object' && fields !== null && !Array.isArray(fields) && Object.values(fields).every(isString) &&
    isString(r.outcome) && (r.upstream_status === null || Number.isInteger(r.upstream_status)) && isStringOrNull(r.error)
  // As it was stored (the key order too: appendOnce in plugin.ts compares a record's text with a
  // draft's), with the stream's id, which an `id` in the text does not replace.
  return isValid ? { ...(r as unknown as AuditDraft), id } : 'not a record of this version'
}

/** Collects matching records in id order until a page and one more are found. */
function createPager (filter: AuditFilter, oldest: number) {
  const records: AuditRecord[] = []
  let hasMore = false
  return {
    /** Takes a record; false once the page is full (and one more match showed there is a next page). */
    offer (record: AuditRecord): boolean {
      if (filter.cursor !== undefined && compareIds(record.id, filter.cursor) <= 0) return true
      if (Date.parse(record.time) < oldest || !matches(record, filter)) return true
      if (records.length === filter.limit) {
        hasMore = true
        return false
      }
      records.push(record)
      return true
    },
    page (): AuditPage {
      return { records, next: hasMore ? (records[records.length - 1]?.id ?? null) : null }
    }
  }
}

export function createRedisAuditStore (redis: Redis, prefix: string, opts: AuditStoreOptions): AuditStore {
  const key = `${prefix}audit`
  // Its own command, not in the MULTI: another key, possibly on another Cluster master.
  const lateKey = `${prefix}audit-lateness`
  const now = opts.now ?? Date.now
  return {
    async append (draft) {
      const cutoff = now() - opts.retentionDays * DAY_MS
      // Before the append, so that a record in the stream always has its delay recorded: a failure after
      // it would have the record kept and appended again, where no bounded read finds the first.
      const lateMs = now() - Date.parse(draft.time)
      if (lateMs > APPEND_MARGIN_MS) await redis.eval(KEEP_MAX_LUA, 1, lateKey, String(lateMs + APPEND_MARGIN_MS), String(opts.retentionDays * DAY_MS))
      const result = await redis.multi()
        .xadd(key, 'MAXLEN', '~', String(opts.maxEntries), '*', 'r', JSON.stringify(draft))
        .xtrim(key, 'MINID', '~', String(cutoff))
        .exec()
      const [err, id] = result?.[0] ?? [new Error('the audit MULTI was discarded'), null]
      if (err !== null) throw err
      return { id: String(id), ...draft }
    },
    async query (filter) {
      const oldest = now() - opts.retentionDays * DAY_MS
      const pager = createPager(filter, oldest)
      // Stream ids start with the (Redis server's) ms time of the append: a time bound, widened by the
      // margin, narrows the range; the pager keeps the records whose `time` is within it. Stream ids are
      // never negative: a bound before 1970 is 0 (an end of 0 takes nothing an append makes).
      let start = filter.cursor !== undefined ? `(${filter.cursor}` : String(Math.max(0, (filter.since ?? 0) - APPEND_MARGIN_MS))
      const lateMs = filter.until === undefined ? 0 : Number(await redis.get(lateKey) ?? 0)
      const end = filter.until === undefined ? '+' : String(Math.max(0, filter.until + Math.max(APPEND_MARGIN_MS, lateMs)))
      for (;;) {
        const batch = await redis.xrange(key, start, end, 'COUNT', SCAN_BATCH)
        for (const [id, fields] of batch) {
          const json = fields[fields.indexOf('r') + 1]
          if (json === undefined) continue
          // One that does not decode is left out, and the rest of the page served. Until 2026-12-02 it
          // threw inside the guarded call: the read answered 503 "Redis does not answer" for as long as
          // the record was kept, and marked Redis down for every user.
          const record = decodeRecord(id, json)
          if (typeof record === 'string') {
            opts.onUnreadable?.(id, record)
            continue
          }
          if (!pager.offer(record)) return pager.page()
        }
        const last = batch[batch.length - 1]
        if (last === undefined || batch.length < SCAN_BATCH) return pager.page()
        start = `(${last[0]}`
      }
    }
  }
}

// How much of the file's end is read at start for its last id: far more than one record.
const TAIL_BYTES = 65536

/** The `<ms>-<seq>` id of the last whole record in the file's last TAIL_BYTES; undefined when none. */
async function lastIdOf (path: string): Promise<[number, number] | undefined> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const { size } = await handle.stat()
    const length = Math.min(size, TAIL_BYTES)
    const { buffer } = await handle.read(Buffer.alloc(length), 0, length, size - length)
    const lines = buffer.toString('utf8').split('\n')
    for (let i = lines.length - 1; i >= 0; i--) {
      const match = /^\{"id":"(\d+)-(\d+)"/.exec(lines[i] ?? '')
      if (match !== null) return [Number(match[1]), Number(match[2])]
    }
    return undefined
  } finally {
    await handle.close()
  }
}

export function createFileAuditStore (path: string, opts: AuditStoreOptions): AuditStore {
  const now = opts.now ?? Date.now
  let lastMs = 0
  let seq = 0
  // Ids continue from the file's last one: a process started with its clock behind the file's last
  // record (NTP stepped it back) would otherwise write ids before it, which pages after it never reach.
  let resumed: Promise<void> | undefined
  const resume = async (): Promise<void> => {
    const last = await lastIdOf(path)
    if (last !== undefined && (last[0] > lastMs || (last[0] === lastMs && last[1] > seq))) [lastMs, seq] = last
  }
  // Appends one after another, in id order, even when writes finish together.
  let tail: Promise<unknown> = Promise.resolve()
  return {
    async append (draft) {
      resumed ??= resume().catch(() => {})
      await resumed
      const ms = now()
      // A clock that steps back (NTP) keeps the last ms and counts on: ids keep increasing.
      seq = ms <= lastMs ? seq + 1 : 0
      lastMs = Math.max(ms, lastMs)
      const record: AuditRecord = { id: `${lastMs}-${seq}`, ...draft }
      const line = JSON.stringify(record) + '\n'
      const done = tail.then(async () => { await appendFile(path, line, { mode: 0o600 }) })
      tail = done.catch(() => {})
      await done
      return record
    },
    async query (filter) {
      const pager = createPager(filter, now() - opts.retentionDays * DAY_MS)
      const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity })
      try {
        for await (const line of lines) {
          if (line.trim() === '') continue
          let record: AuditRecord
          try {
            record = JSON.parse(line) as AuditRecord
          } catch {
            // A line cut short by a crash mid-append: the records around it stay readable.
            continue
          }
          if (!pager.offer(record)) break
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      } finally {
        lines.close()
      }
      return pager.page()
    }
  }
}
