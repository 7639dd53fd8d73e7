// `app.audit`: the service wraps every upstream write in `around` (service/index.ts `write`), so each
// write sent upstream, from either dialect, leaves exactly one record, whatever its outcome: in the
// store (Redis stream, or the JSON-lines file without Redis, store.ts) and as one structured log line.
// A write stopped before it was sent (the consumer's upstream share or the budget spent, no free
// connection) leaves none and counts no write: the upstream never saw it. A store that fails loses no
// write: the write has happened upstream, its answer goes back, and the log line (with the whole
// record) stays as the trace. The Redis store is one more user of the shared Redis health: while Redis
// is down a write does not wait for its append, and the record is kept and appended once Redis answers.
// Read with GET /v1/admin/audit and `npm run audit`.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import type { RedisGuard } from '../lib/redis-health.js'
import { createResendQueue } from '../lib/resend-queue.js'
import { draftRecord, type AuditDraft, type AuditRecord, type WriteTargetLike } from './record.js'
import { createFileAuditStore, createRedisAuditStore, MAX_PAGE, type AuditStore } from './store.js'
import type { Redis } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    audit: Audit
  }
}

export type Audit = ReturnType<typeof createAudit>

/**
 * The store the settings choose: the Redis stream with a client, else the file. `onUnreadable` hears of
 * stream records that do not decode (another version's form, or damaged), which reads leave out.
 */
export function createAuditStore (config: Config, redis: Redis | null, onUnreadable?: (id: string, reason: string) => void): AuditStore {
  const opts = {
    retentionDays: config.AUDIT_RETENTION_DAYS,
    maxEntries: config.AUDIT_MAX_ENTRIES,
    ...(onUnreadable === undefined ? {} : { onUnreadable })
  }
  return redis === null ? createFileAuditStore(config.AUDIT_FILE, opts) : createRedisAuditStore(redis, config.REDIS_KEY_PREFIX, opts)
}

/** What a write answered: its outcome (`created`, …), undefined when its reply named none. */
interface WriteLike { outcome: string | undefined }

/** `guard`: the shared Redis health, for the Redis store (the file store has none). */
export function createAudit (app: FastifyInstance, store: AuditStore, guard?: RedisGuard) {
  const log = app.log.child({ component: 'audit' })
  /** Listeners told of each write's consumer (usage counts writes). */
  const listeners: Array<(consumer: string) => void> = []

  /** One store call, through the Redis guard when there is one (failing at once while Redis is down). */
  async function call<T> (op: () => Promise<T>): Promise<T> {
    return guard === undefined ? await op() : await guard.call(op)
  }

  /**
   * Appends `draft`, unless `mayBeStored` (its first append timed out: Redis may have run it as it thawed)
   * and the stream holds it already: a record's text, request id and time included, is unique.
   */
  async function appendOnce (draft: AuditDraft, mayBeStored: boolean): Promise<AuditRecord> {
    if (mayBeStored) {
      const ms = Date.parse(draft.time)
      const query = { consumer: draft.consumer, since: ms, until: ms + 1, limit: MAX_PAGE }
      const text = JSON.stringify(draft)
      const page = await (guard === undefined ? store.query(query) : guard.callScan(async () => store.query(query)))
      const stored = page.records.find(({ id: _id, ...rest }) => JSON.stringify(rest) === text)
      if (stored !== undefined) return stored
    }
    return await call(() => store.append(draft))
  }

  // Records the Redis store did not take as their write finished: appended, in order, once Redis
  // answers. Until 2026-12-02 the log line claimed to be the only record, yet a timed-out append still
  // ran when Redis thawed, and each write waited a full timeout while Redis was down.
  let kept = 0
  const unkept = createResendQueue<number, { draft: AuditDraft, mayBeStored: boolean }>({
    send: async (entries) => {
      const settled: number[] = []
      for (const [key, { draft, mayBeStored }] of entries) {
        try {
          await appendOnce(draft, mayBeStored)
        } catch {
          break
        }
        settled.push(key)
      }
      return settled
    },
    onChange: (event, count) => {
      if (event === 'sent') log.info({ records: count }, 'audit records kept while Redis was down are in the audit now')
      else if (event === 'dropped') log.error({ records: count }, 'audit records dropped unkept; their "upstream write" log lines are their only record')
    }
  })

  async function keep (request: FastifyRequest, endpoint: string, fields: Readonly<Record<string, unknown>>, target: WriteTargetLike,
    result: { outcome: string, status: number | null, error: string | null }): Promise<void> {
    const draft = draftRecord(request, endpoint, fields, target, result, Date.now())
    for (const listener of listeners) listener(draft.consumer)
    let isSent = false
    try {
      const record = await call(async () => {
        isSent = true
        return await store.append(draft)
      })
      log.info({ audit: record }, 'upstream write')
    } catch (err) {
      const fields = { audit: draft, err: { message: (err as Error).message } }
      if (guard === undefined) {
        log.error(fields, 'upstream write (the audit store failed; this line is its only record)')
        return
      }
      log.warn(fields, 'upstream write (not in the audit yet: Redis did not take it; this replica appends it once Redis answers)')
      unkept.keep([[kept++, { draft, mayBeStored: isSent }]])
    }
  }

  return {
    store,
    /** At close (before Redis quits): one last try for the records Redis has not taken. */
    close: async (): Promise<void> => { await unkept.close() },
    onWrite (listener: (consumer: string) => void): void { listeners.push(listener) },
    /**
     * Runs one upstream write and records it once, with the outcome it answers or the error it throws:
     * `send` includes what the route makes of the reply (a read-back after a lost one, an outcome named
     * unknown), so the record says what the consumer was answered. Until 2026-12-02 it said how the
     * reply came: an add answered 201 from its read-back was recorded as error GW_UPSTREAM_TIMEOUT.
     * `send` calls `onSent` when its call reaches the upstream: a write that failed before it did is not
     * recorded. It calls `onReply` with the upstream's status when a reply came, though the write then
     * fails on it (an error page, a throttle): until 2026-12-02 such a record had no upstream status.
     */
    async around<T extends WriteLike> (request: FastifyRequest, endpoint: string, fields: Readonly<Record<string, unknown>>,
      target: WriteTargetLike, send: (onSent: () => void, onReply: (status: number) => void) => Promise<T>): Promise<T> {
      let isSent = false
      let status: number | null = null
      let result: T
      try {
        // The request is marked too: a shutdown past its deadline answers it as a lost reply, never 503.
        // Each send starts over: a replay's record does not keep the status of the reply it replaced.
        result = await send(() => { isSent = true; status = null; request.isWriteSent = true }, (replied) => { status = replied })
      } catch (err) {
        if (!isSent) throw err
        const code = (err as { code?: unknown }).code
        const error = typeof code === 'string' ? code : 'GW_INTERNAL'
        // A write answered with its outcome unknown may have been applied: its record says so.
        await keep(request, endpoint, fields, target, { outcome: error === 'GW_WRITE_OUTCOME_UNKNOWN' ? 'unknown' : 'error', status, error })
        throw err
      }
      await keep(request, endpoint, fields, target, { outcome: result.outcome ?? 'unknown', status, error: null })
      return result
    }
  }
}

export const auditPlugin = fp(async (app) => {
  const log = app.log.child({ component: 'audit' })
  const onUnreadable = (id: string, reason: string): void => { log.warn({ id, reason }, 'audit record does not decode; left out of the page') }
  const audit = createAudit(app, createAuditStore(app.config, app.redis, onUnreadable), app.redis === null ? undefined : app.redisHealth.guard('audit'))
  app.decorate('audit', audit)
  app.beforeRedisQuit(audit.close)
}, { name: 'audit', fastify: '5.x', dependencies: ['redis'] })
