// External crossmatches by name (scope read): `{results: {name: rows}}`.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ValidationError } from '../../errors.js'
import { stringifyV1 } from '../../lib/json.js'
import { passthrough, problems } from '../../schemas/common.js'
import { fields } from '../../upstream/endpoints.js'
import { sendDerived } from './send.js'

const MAX_NAMES = 100
// Names separated by commas, none empty or starting or ending with a space (of any kind), no control
// characters, C1 included (a NUL byte would reach the upstream's SQL). Each name goes upstream as sent.
const CONTROL = '\\u0000-\\u001f\\u007f-\\u009f'
const NAME = `[^,\\s${CONTROL}](?:[^,${CONTROL}]*[^,\\s${CONTROL}])?`
const NAMES_PATTERN = `^${NAME}(,${NAME})*$`

/** The distinct names, as sent (a name sent twice is answered once). */
function namesOf (text: string): string[] {
  return [...new Set(text.split(','))]
}

export const crossmatchRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/crossmatches', {
    config: { scope: 'read', cached: 'validated' },
    schema: {
      summary: 'External catalogue crossmatches (e.g. TNS names) by name',
      tags: ['objects'],
      querystring: Type.Object({
        names: Type.String({ pattern: NAMES_PATTERN, maxLength: 4000, description: `comma-separated names, at most ${MAX_NAMES}; no control characters` })
      }),
      response: {
        200: Type.Object({ results: Type.Record(Type.String(), Type.Array(passthrough('crossmatch row; transient_object_id is a string'))) }),
        304: Type.Null(),
        ...problems()
      }
    },
    preHandler: async (request) => {
      const count = namesOf(request.query.names).length
      if (count > MAX_NAMES) throw new ValidationError(`At most ${MAX_NAMES} names in one request; this one has ${count}.`)
    }
  }, async (request, reply) => {
    const names = namesOf(request.query.names)
    const read = await app.atlas.table(request, 'crossmatches', 'externalxmlist', fields.crossmatches(names))
    const groups = Array.isArray(read.value) ? read.value : []
    // No prototype: a name such as __proto__ is a key like any other (on `{}` it set the prototype and vanished).
    const results: Record<string, unknown> = Object.create(null) as Record<string, unknown>
    names.forEach((name, i) => { results[name] = Array.isArray(groups[i]) ? groups[i] : [] })
    return sendDerived(request, reply, read, stringifyV1({ results }))
  })
}
