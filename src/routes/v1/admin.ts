// Admin routes (scope `admin`, protected like every route, auth/plugin.ts): the audit of upstream writes,
// usage reports per consumer per UTC day, and the consumers without their key hashes. Pages are cursor
// based: pass `next_cursor` back as `cursor` until it is null.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import { expiryOf } from '../../consumers/expiry.js'
import { UnavailableError, ValidationError, withRetryAfter } from '../../errors.js'
import { parseInstant } from '../../lib/datetime.js'
import { AtlasIdSchema, problems, SinceQuery } from '../../schemas/common.js'
import { MAX_PAGE } from '../../audit/store.js'
import { daysBetween, daysOfMonth } from '../../usage/report.js'
import { readUsage } from '../../usage/store.js'

export const DEFAULT_PAGE = 100
const ConsumerIdQuery = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'a consumer id' })
// Optional with a default: Ajv's useDefaults fills it in when it is left out.
const Limit = Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE, description: `records per page (at most ${MAX_PAGE})` }))
const Counts = Type.Record(Type.String(), Type.Integer())
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])

export const AuditRecordSchema = Type.Object({
  id: Type.String({ description: 'position in the audit log; pass as cursor to continue after it' }),
  time: Type.String(),
  consumer: Type.String(),
  request_id: Type.String(),
  route: Type.String(),
  dialect: Type.String(),
  endpoint: Type.String({ description: 'the upstream endpoint written' }),
  object_ids: Type.Array(Type.String()),
  list: Nullable(Type.String()),
  fields: Type.Record(Type.String(), Type.String(), { description: 'the fields sent upstream (never a secret)' }),
  outcome: Type.String({ description: 'created, duplicate, removed, … as the upstream reported it; unknown; or error' }),
  upstream_status: Nullable(Type.Integer()),
  error: Nullable(Type.String({ description: 'the GW_ code of a failed write' }))
})

const UsageRowSchema = Type.Object({
  day: Type.String(),
  consumer: Type.String(),
  requests: Type.Integer(),
  requests_by_class: Counts,
  units: Type.Integer(),
  upstream_calls: Type.Integer(),
  cache_lookups: Type.Integer(),
  cache_hits: Type.Integer(),
  cache_hit_ratio: Nullable(Type.Number()),
  writes: Type.Integer(),
  errors: Type.Integer({ description: 'answers with a 5xx status' }),
  client_errors: Type.Integer({ description: 'answers with a 4xx status that are not rejections' }),
  rejections: Counts
})

const ConsumerSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  lists: Type.Array(Type.String()),
  rate: Type.String(),
  daily_objects: Type.Integer(),
  max_batch: Type.Integer(),
  upstream_share: Type.Integer(),
  disabled: Type.Boolean(),
  expires: Nullable(Type.String()),
  days_left: Nullable(Type.Integer()),
  is_expired: Type.Boolean(),
  last_used: Nullable(Type.String({ description: 'the last request with any of its keys (flushed every USAGE_FLUSH_MS)' }))
})
type ConsumerView = Static<typeof ConsumerSchema>

const security: Array<Record<string, string[]>> = [{ bearer: [] }, { apiKey: [] }]

function instant (name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined
  const ms = parseInstant(text)
  /* c8 ignore next -- the querystring schema's format has refused it already */
  if (ms === undefined) throw new ValidationError(`${name} is not a date or datetime`)
  return ms
}

export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const guard = app.redis === null ? undefined : app.redisHealth.guard('admin')
  /**
   * A read of the audit or usage store; with Redis, through the shared Redis health, so that a Redis
   * that is down is a 503 the client retries (at once once it is known down), not a 500 after a timeout.
   */
  async function fromStore<T> (what: string, op: () => Promise<T>): Promise<T> {
    if (guard === undefined) return await op()
    try {
      return await guard.callScan(op)
    } catch (err) {
      throw Object.assign(withRetryAfter(new UnavailableError(`The ${what} cannot be read now (Redis does not answer); retry shortly.`), 1), { cause: err })
    }
  }

  app.get('/admin/audit', {
    config: { scope: 'admin' },
    schema: {
      summary: 'Audit of upstream writes (both dialects), oldest first',
      tags: ['admin'],
      security,
      querystring: Type.Object({
        consumer: Type.Optional(ConsumerIdQuery),
        object: Type.Optional(AtlasIdSchema),
        since: Type.Optional(SinceQuery),
        until: Type.Optional(SinceQuery),
        cursor: Type.Optional(Type.String({ pattern: '^\\d{1,15}-\\d{1,15}$', description: 'next_cursor of the previous page' })),
        limit: Limit
      }),
      response: { 200: Type.Object({ records: Type.Array(AuditRecordSchema), next_cursor: Nullable(Type.String()) }), ...problems() }
    }
  }, async (request) => {
    const q = request.query
    const since = instant('since', q.since)
    const until = instant('until', q.until)
    const page = await fromStore('audit', async () => app.audit.store.query({
      limit: q.limit ?? DEFAULT_PAGE,
      ...(q.consumer === undefined ? {} : { consumer: q.consumer }),
      ...(q.object === undefined ? {} : { object: q.object }),
      ...(since === undefined ? {} : { since }),
      ...(until === undefined ? {} : { until }),
      ...(q.cursor === undefined ? {} : { cursor: q.cursor })
    }))
    return { records: page.records, next_cursor: page.next }
  })

  app.get('/admin/usage', {
    config: { scope: 'admin' },
    schema: {
      summary: 'Usage per consumer per UTC day',
      description: 'Give `month` (YYYY-MM) or `from` and `to` (dates, inclusive, at most USAGE_RETENTION_DAYS apart); ' +
        'this replica\'s counts are written first, other replicas\' within USAGE_FLUSH_MS.',
      tags: ['admin'],
      security,
      querystring: Type.Object({
        month: Type.Optional(Type.String({ pattern: '^\\d{4}-(0[1-9]|1[0-2])$' })),
        from: Type.Optional(Type.String({ format: 'instant', pattern: '^\\d{4}-\\d{2}-\\d{2}$' })),
        to: Type.Optional(Type.String({ format: 'instant', pattern: '^\\d{4}-\\d{2}-\\d{2}$' })),
        consumer: Type.Optional(ConsumerIdQuery),
        cursor: Type.Optional(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}\\|[A-Za-z0-9._-]+$' })),
        limit: Limit
      }),
      response: { 200: Type.Object({ rows: Type.Array(UsageRowSchema), next_cursor: Nullable(Type.String()) }), ...problems() }
    }
  }, async (request) => {
    const q = request.query
    const isMonth = q.month !== undefined && q.from === undefined && q.to === undefined
    const isRange = q.month === undefined && q.from !== undefined && q.to !== undefined
    if (!isMonth && !isRange) {
      throw new ValidationError('Give either month=YYYY-MM or both from and to (YYYY-MM-DD).')
    }
    const days = q.month !== undefined ? daysOfMonth(q.month) : daysBetween(q.from as string, q.to as string, app.config.USAGE_RETENTION_DAYS)
    if (days === undefined) {
      throw new ValidationError(`from and to must be dates with from ≤ to, at most USAGE_RETENTION_DAYS (${app.config.USAGE_RETENTION_DAYS}) days apart.`)
    }
    await app.usage.flush()
    const page = await fromStore('usage', async () => readUsage(app.usage.store, {
      days,
      limit: q.limit ?? DEFAULT_PAGE,
      ...(q.consumer === undefined ? {} : { consumer: q.consumer }),
      ...(q.cursor === undefined ? {} : { cursor: q.cursor })
    }))
    return { rows: page.rows, next_cursor: page.next }
  })

  app.get('/admin/consumers', {
    config: { scope: 'admin' },
    schema: {
      summary: 'Every consumer, its limits, expiry and last use (never a key or its hash)',
      tags: ['admin'],
      security,
      response: { 200: Type.Object({ consumers: Type.Array(ConsumerSchema) }), ...problems() }
    }
  }, async () => {
    await app.usage.flush()
    const lastUsed = await fromStore('last use of each key', async () => app.usage.store.lastUsed())
    const nowMs = app.auth.now()
    const consumers = app.consumers.list().map((c): ConsumerView => {
      const expiry = expiryOf(c, nowMs)
      const used = lastUsed[`consumer:${c.id}`]
      return {
        id: c.id,
        name: c.name,
        scopes: [...c.scopes],
        lists: [...c.lists],
        rate: c.rate.text,
        daily_objects: c.daily_objects,
        max_batch: c.max_batch,
        upstream_share: c.upstream_share,
        disabled: c.disabled,
        expires: expiry?.expires ?? null,
        days_left: expiry?.daysLeft ?? null,
        is_expired: expiry?.isExpired ?? false,
        last_used: used === undefined ? null : new Date(used).toISOString()
      }
    })
    return { consumers }
  })
}
