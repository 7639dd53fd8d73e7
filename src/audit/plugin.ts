// `app.audit`: the service wraps every upstream write in `around` (service/index.ts `write`), so each
// write sent upstream, from either dialect, leaves exactly one record, whatever its outcome: in the
// store (Redis stream, or the JSON-lines file without Redis, store.ts) and as one structured log line.
// A write stopped before it was sent (the consumer's upstream share or the budget spent, no free
// connection) leaves none and counts no write: the upstream never saw it. A store that fails loses no
// write: the write has happened upstream, its answer goes back, and the log line (with the whole
// record) stays as the trace. Read with GET /v1/admin/audit and `npm run audit`.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../config.js'
import { draftRecord, type WriteTargetLike } from './record.js'
import { createFileAuditStore, createRedisAuditStore, type AuditStore } from './store.js'
import type { Redis } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    audit: Audit
  }
}

export type Audit = ReturnType<typeof createAudit>

/** The store the settings choose: the Redis stream with a client, else the file. */
export function createAuditStore (config: Config, redis: Redis | null): AuditStore {
  const opts = { retentionDays: config.AUDIT_RETENTION_DAYS, maxEntries: config.AUDIT_MAX_ENTRIES }
  return redis === null ? createFileAuditStore(config.AUDIT_FILE, opts) : createRedisAuditStore(redis, config.REDIS_KEY_PREFIX, opts)
}

interface WriteLike { reply: { status: number }, outcome: string | undefined }

export function createAudit (app: FastifyInstance, store: AuditStore) {
  const log = app.log.child({ component: 'audit' })
  /** Listeners told of each write's consumer (usage counts writes). */
  const listeners: Array<(consumer: string) => void> = []

  async function keep (request: FastifyRequest, endpoint: string, fields: Readonly<Record<string, unknown>>, target: WriteTargetLike,
    result: { outcome: string, status: number | null, error: string | null }): Promise<void> {
    const draft = draftRecord(request, endpoint, fields, target, result, Date.now())
    for (const listener of listeners) listener(draft.consumer)
    try {
      const record = await store.append(draft)
      log.info({ audit: record }, 'upstream write')
    } catch (err) {
      log.error({ audit: draft, err: { message: (err as Error).message } }, 'upstream write (the audit store failed; this line is its only record)')
    }
  }

  return {
    store,
    onWrite (listener: (consumer: string) => void): void { listeners.push(listener) },
    /**
     * Runs one upstream write and records it once, with its outcome or its error. `send` calls `onSent`
     * when its call reaches the upstream: a write that failed before it did is not recorded.
     */
    async around<T extends WriteLike> (request: FastifyRequest, endpoint: string, fields: Readonly<Record<string, unknown>>,
      target: WriteTargetLike, send: (onSent: () => void) => Promise<T>): Promise<T> {
      let isSent = false
      let result: T
      try {
        // The request is marked too: a shutdown past its deadline answers it as a lost reply, never 503.
        result = await send(() => { isSent = true; request.isWriteSent = true })
      } catch (err) {
        if (!isSent) throw err
        const code = (err as { code?: unknown }).code
        await keep(request, endpoint, fields, target, { outcome: 'error', status: null, error: typeof code === 'string' ? code : 'GW_INTERNAL' })
        throw err
      }
      await keep(request, endpoint, fields, target, { outcome: result.outcome ?? 'unknown', status: result.reply.status, error: null })
      return result
    }
  }
}

export const auditPlugin = fp(async (app) => {
  app.decorate('audit', createAudit(app, createAuditStore(app.config, app.redis)))
}, { name: 'audit', fastify: '5.x', dependencies: ['redis'] })
