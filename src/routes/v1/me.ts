// GET /v1/me: who the caller is, what it may do, its limits and its current usage. Never the key or its
// hash: the response schema is the serializer, so nothing else can leak into the body.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type, type Static } from '@sinclair/typebox'
import { UnauthenticatedError } from '../../errors.js'
import { problems } from '../../schemas/common.js'
import { expiryOf } from '../../consumers/expiry.js'

const Count = (description: string) => Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description })

export const MeSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  lists: Type.Array(Type.String(), { description: 'custom lists this key may write; "*" means all' }),
  limits: Type.Object({
    rate: Type.String({ description: 'requests per window, e.g. 600/minute' }),
    daily_objects: Type.Integer({ description: 'object units per UTC day (one per requested id)' }),
    max_batch: Type.Integer({ description: 'most ids in one request' }),
    upstream_share: Type.Integer({ description: 'upstream calls (cache misses) this key may cause per hour' })
  }),
  expires: Type.Union([Type.String(), Type.Null()], { description: 'end of access (UTC) as the consumers file states it: a date (access through that day) or a datetime; null when it does not expire' }),
  days_left: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'whole days of access left, rounded up; null when it does not expire' }),
  usage: Type.Object({
    requests_this_window: Count('requests in the current rate window, this one included; null when unknown'),
    units_today: Count('object units charged since 00:00 UTC; null when unknown'),
    upstream_share_used: Count('upstream calls caused this hour; null when unknown')
  }, { description: 'null values mean the counters could not be read (Redis unavailable, open policy)' })
})
export type Me = Static<typeof MeSchema>

export const meRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/me', {
    config: { scope: 'read' },
    schema: {
      summary: 'The calling consumer: identity, scopes, limits and current usage',
      tags: ['consumers'],
      security: [{ bearer: [] }, { apiKey: [] }],
      response: { 200: MeSchema, ...problems() }
    }
  }, async (request): Promise<Me> => {
    const consumer = request.consumer
    /* c8 ignore next -- consumer-auth authenticates every route with a scope before its handler */
    if (consumer === null) throw new UnauthenticatedError('This API needs a key.')
    const usage = await app.quota.usage(consumer, request)
    const expiry = expiryOf(consumer, app.auth.now())
    return {
      id: consumer.id,
      name: consumer.name,
      scopes: [...consumer.scopes],
      lists: [...consumer.lists],
      limits: {
        rate: consumer.rate.text,
        daily_objects: consumer.daily_objects,
        max_batch: consumer.max_batch,
        upstream_share: consumer.upstream_share
      },
      expires: expiry?.expires ?? null,
      days_left: expiry?.daysLeft ?? null,
      usage
    }
  })
}
