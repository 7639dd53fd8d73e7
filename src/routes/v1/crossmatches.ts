// External crossmatches by name (scope read): `{results: {name: rows}}`.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { stringifyV1 } from '../../lib/json.js'
import { passthrough, problems } from '../../schemas/common.js'
import { fields } from '../../upstream/endpoints.js'
import { readTable, sendDerived } from './read-through.js'

const MAX_NAMES = 100

export const crossmatchRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/crossmatches', {
    config: { scope: 'read' },
    schema: {
      summary: 'External catalogue crossmatches (e.g. TNS names) by name',
      tags: ['objects'],
      querystring: Type.Object({
        names: Type.String({ pattern: '^[^,\\s][^,]*(,[^,\\s][^,]*)*$', maxLength: 4000, description: `comma-separated names, at most ${MAX_NAMES}` })
      }),
      response: {
        200: Type.Object({ results: Type.Record(Type.String(), Type.Array(passthrough('crossmatch row; transient_object_id is a string'))) }),
        304: Type.Null(),
        ...problems()
      }
    }
  }, async (request, reply) => {
    const names = [...new Set(request.query.names.split(',').map((n) => n.trim()))].slice(0, MAX_NAMES)
    const read = await readTable(app, request, 'crossmatches', 'externalxmlist', fields.crossmatches(names))
    const groups = Array.isArray(read.value) ? read.value : []
    const results: Record<string, unknown> = {}
    names.forEach((name, i) => { results[name] = Array.isArray(groups[i]) ? groups[i] : [] })
    return sendDerived(request, reply, read, stringifyV1({ results }))
  })
}
