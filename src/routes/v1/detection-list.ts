// Moving an object to a detection list (scope write:detection-list). Always a POST upstream: a GET to
// objectdetectionlist/ writes too, even for read-only users, so the gateway never sends one.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { NotFoundError, ValidationError } from '../../errors.js'
import { DETECTION_LISTS, DETECTION_LIST_TARGETS } from '../../lists.js'
import { AtlasIdSchema, problems } from '../../schemas/common.js'
import { fields } from '../../upstream/endpoints.js'
import { idempotentWrites, upstreamWrite } from './writes.js'

export const detectionListRoutes: FastifyPluginAsyncTypebox = async (app) => {
  idempotentWrites(app)
  app.put('/objects/:id/detection-list', {
    config: { scope: 'write:detection-list', idempotent: true, readBack: 200 },
    schema: {
      summary: 'Move an object to the possible, eyeball or galcand detection list',
      tags: ['lists'],
      params: Type.Object({ id: AtlasIdSchema }),
      body: Type.Object({ list: Type.Union(DETECTION_LIST_TARGETS.map((l) => Type.Literal(l))) }, { additionalProperties: false }),
      response: { 200: Type.Object({ id: AtlasIdSchema, list: Type.String(), outcome: Type.String() }), ...problems(404, 409, 422) }
    }
  }, async (request) => {
    const { id } = request.params
    const { list } = request.body
    const listId = DETECTION_LISTS[list] as number
    const outcome = await upstreamWrite(app, request, 'objectdetectionlist', fields.detectionList(id, listId), { objectId: id })
    // upstreamWrite() lets through only the outcomes objectdetectionlist/ answers (a read-back stands
    // for `created`); another one is a bug here, never a move.
    switch (outcome) {
      case 'created': return { id, list, outcome: 'moved' }
      case 'unknown_object': throw new NotFoundError(`No ATLAS object ${id}.`)
      case 'rejected': throw new ValidationError(`The upstream refused to move ${id} to "${list}".`)
      default: throw new Error(`A detection-list move came back with outcome ${outcome}.`)
    }
  })
}
