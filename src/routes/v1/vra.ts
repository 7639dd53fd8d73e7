// VRA tables (scope read) and VRA writes (scope write:vra). Tables are fetched whole and filtered here.
import { Type, type TSchema } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { RouteId } from '../../cache/freshness.js'
import { views } from '../../cache/tags.js'
import { NotFoundError } from '../../errors.js'
import { stringifyV1 } from '../../lib/json.js'
import { AtlasIdSchema, IdListQuery, passthrough, problems, SinceQuery } from '../../schemas/common.js'
import { fields, replyFields, type UpstreamEndpoint } from '../../upstream/endpoints.js'
import { sendDerived } from './send.js'
import { filterIds, filterSince, rowsOf, type Row } from './tables.js'
import { idempotentWrites, upstreamWrite } from './writes.js'

const TableSchema = Type.Object({ count: Type.Integer(), rows: Type.Array(passthrough('a table row; transient_object_id is a string')) })
const WriteSchema = Type.Object({ id: AtlasIdSchema, outcome: Type.String() })
const Probability = Type.Number({ minimum: 0, maximum: 1 })

interface TableSpec { path: string, route: RouteId, endpoint: UpstreamEndpoint, view: string, summary: string, extra: Record<string, TSchema> }

const TABLES: TableSpec[] = [
  { path: '/vra/scores', route: 'vra-scores', endpoint: 'vrascoreslist', view: views.vraScores(), summary: 'VRA scores (rows appended over time)', extra: { after_id: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'rows with id > after_id (incremental polling)' })), debug: Type.Optional(Type.Boolean()) } },
  { path: '/vra/todo', route: 'vra-todo', endpoint: 'vratodolist', view: views.vraTodo(), summary: 'Objects queued for VRA', extra: {} },
  { path: '/vra/ranks', route: 'vra-ranks', endpoint: 'vraranklist', view: views.vraRanks(), summary: 'VRA ranks', extra: {} }
]

export const vraRoutes: FastifyPluginAsyncTypebox = async (app) => {
  idempotentWrites(app)
  for (const spec of TABLES) {
    app.get(spec.path, {
      config: { scope: 'read', cached: 'validated' },
      schema: {
        summary: spec.summary,
        description: '`since` keeps rows with timestamp >= since (as upstream); `ids` keeps rows of those objects.',
        tags: ['vra'],
        querystring: Type.Object({ since: Type.Optional(SinceQuery), ids: Type.Optional(IdListQuery), ...spec.extra }),
        response: { 200: TableSchema, 304: Type.Null(), ...problems() }
      }
    }, async (request, reply) => {
      const q = request.query as { since?: string, ids?: string, after_id?: number, debug?: boolean }
      const read = await app.atlas.table(request, spec.route, spec.endpoint, fields.vraTable(), [spec.view])
      let rows: Row[] = filterSince(rowsOf(read.value), replyFields.tableTimestamp, q.since, true)
      rows = filterIds(rows, replyFields.tableObjectId, q.ids)
      if (q.after_id !== undefined) rows = rows.filter((r) => Number(r.id) > (q.after_id as number))
      if (q.debug !== undefined) rows = rows.filter((r) => r.debug === q.debug)
      return sendDerived(request, reply, read, stringifyV1({ count: rows.length, rows }))
    })
  }

  app.post('/vra/scores', {
    config: { scope: 'write:vra', idempotent: true },
    schema: {
      summary: 'Append a VRA score row (201; 404 for an unknown object)',
      tags: ['vra'],
      body: Type.Object({
        id: AtlasIdSchema,
        preal: Type.Optional(Probability),
        pgal: Type.Optional(Probability),
        pfast: Type.Optional(Probability),
        rank: Type.Optional(Type.Number()),
        rank_alt1: Type.Optional(Type.Number()),
        is_gal_cand: Type.Optional(Type.Integer({ minimum: 0, maximum: 32767 })),
        debug: Type.Optional(Type.Boolean())
      }, { additionalProperties: false }),
      response: { 201: WriteSchema, ...problems(404, 409, 422) }
    }
  }, async (request, reply) => {
    const outcome = await upstreamWrite(app, request, 'vrascores', fields.vraScore(request.body), { objectId: request.body.id })
    if (outcome === 'unknown_object') throw new NotFoundError(`No ATLAS object ${request.body.id}.`)
    return reply.code(201).send({ id: request.body.id, outcome })
  })

  app.post('/vra/todo', {
    config: { scope: 'write:vra', idempotent: true, readBack: 201 },
    schema: {
      summary: 'Queue an object for VRA (201 queued, 200 already queued, 404 unknown object)',
      tags: ['vra'],
      body: Type.Object({ id: AtlasIdSchema }, { additionalProperties: false }),
      response: { 200: WriteSchema, 201: WriteSchema, ...problems(404, 409, 422) }
    }
  }, async (request, reply) => {
    const outcome = await upstreamWrite(app, request, 'vratodo', fields.vraTodo(request.body.id), { objectId: request.body.id })
    if (outcome === 'unknown_object') throw new NotFoundError(`No ATLAS object ${request.body.id}.`)
    return outcome === 'duplicate'
      ? reply.code(200).send({ id: request.body.id, outcome: 'already_queued' })
      : reply.code(201).send({ id: request.body.id, outcome })
  })

  app.post('/vra/ranks', {
    config: { scope: 'write:vra', idempotent: true },
    schema: {
      summary: 'Set the VRA rank of an object (201; 404 for an unknown object)',
      tags: ['vra'],
      body: Type.Object({
        id: AtlasIdSchema,
        rank: Type.Number(),
        rank_alt1: Type.Optional(Type.Number()),
        is_gal_cand: Type.Optional(Type.Integer({ minimum: 0, maximum: 32767 }))
      }, { additionalProperties: false }),
      response: { 201: WriteSchema, ...problems(404, 409, 422) }
    }
  }, async (request, reply) => {
    const outcome = await upstreamWrite(app, request, 'vrarank', fields.vraRank(request.body), { objectId: request.body.id })
    if (outcome === 'unknown_object') throw new NotFoundError(`No ATLAS object ${request.body.id}.`)
    return reply.code(201).send({ id: request.body.id, outcome })
  })
}
