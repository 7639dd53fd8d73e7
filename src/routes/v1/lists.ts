// Detection and custom lists (scope read): the catalogue, and list members fetched wide and filtered
// here (the upstream ignores the client's filters).
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { views } from '../../cache/tags.js'
import { stringifyV1 } from '../../lib/json.js'
import { passthrough, problems, SinceQuery } from '../../schemas/common.js'
import { fields, replyFields } from '../../upstream/endpoints.js'
import { sendDerived } from './send.js'
import { applyListFilters, filterSince, rowsOf } from './tables.js'

const ListSchema = Type.Object({ name: Type.String(), id: Type.Integer(), kind: Type.Union([Type.Literal('detection'), Type.Literal('custom')]) })

const FilterQuery = Type.Object({
  since: Type.Optional(SinceQuery),
  vra_gte: Type.Optional(Type.Number()),
  vra_lte: Type.Optional(Type.Number()),
  rb_pix_gte: Type.Optional(Type.Number()),
  rb_pix_lte: Type.Optional(Type.Number()),
  ra_gte: Type.Optional(Type.Number()),
  ra_lte: Type.Optional(Type.Number()),
  dec_gte: Type.Optional(Type.Number()),
  dec_lte: Type.Optional(Type.Number()),
  sherlock_class: Type.Optional(Type.String({ maxLength: 64 })),
  spec_type: Type.Optional(Type.String({ maxLength: 64 }))
})

export const listRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/lists', {
    config: { scope: 'read' },
    schema: {
      summary: 'Known detection lists and custom lists',
      tags: ['lists'],
      response: { 200: Type.Object({ lists: Type.Array(ListSchema) }), ...problems() }
    }
  }, async () => ({ lists: app.lists.all }))

  app.get('/lists/:name/objects', {
    config: { scope: 'read', cached: 'validated' },
    schema: {
      summary: 'Members of a detection or custom list, filtered by the gateway',
      description: '`since` keeps rows with followup_flag_date after it (strict, as upstream); range filters are inclusive; ' +
        'sherlock_class matches sherlockClassification and spec_type matches observation_status exactly. Ids are strings.',
      tags: ['lists'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }) }),
      querystring: FilterQuery,
      response: {
        200: Type.Object({ list: ListSchema, count: Type.Integer(), objects: Type.Array(passthrough('a list row; `id` is a string')) }),
        304: Type.Null(),
        ...problems(404)
      }
    }
  }, async (request, reply) => {
    const list = app.lists.resolve(request.params.name)
    const read = await app.atlas.table(request, 'lists', 'objectlist', fields.objectlist({ listId: list.id, isCustom: list.kind === 'custom' }),
      list.kind === 'custom' ? [views.customListRows(), views.groupMembers(list.id)] : [views.detectionLists()])
    const { since, ...filters } = request.query
    const rows = applyListFilters(filterSince(rowsOf(read.value), replyFields.listRowDate, since, false), filters)
    return sendDerived(request, reply, read, stringifyV1({ list, count: rows.length, objects: rows }))
  })
}
