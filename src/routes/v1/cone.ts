// Cone search (scope read): the radius limit is checked here, and hits come back as {id, name, separation_arcsec}.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { AtlasIdSchema, problems } from '../../schemas/common.js'
import { UpstreamError } from '../../errors.js'
import { parseLossless, stringifyV1 } from '../../lib/json.js'
import { coneFromWide, wideConeFields } from '../../upstream/cone.js'
import { CONE_MODES, MAX_CONE_RADIUS_ARCSEC, replyFields, type ConeMode } from '../../upstream/endpoints.js'
import { sendDerived } from './send.js'

const HitSchema = Type.Object({ id: AtlasIdSchema, name: Type.Union([Type.String(), Type.Null()]), separation_arcsec: Type.Number() })

type Hit = Record<string, unknown>

const DEFAULT_MODE: ConeMode = 'all'

function toHit (raw: Hit) {
  const f = replyFields.coneHit
  return { id: raw[f.id], name: raw[f.name] ?? null, separation_arcsec: raw[f.separation] }
}

export const coneRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/cone', {
    config: { scope: 'read', cached: 'validated' },
    schema: {
      summary: 'Objects within a radius of a position, sorted by separation',
      tags: ['objects'],
      querystring: Type.Object({
        ra: Type.Number({ minimum: 0, maximum: 360, description: 'degrees' }),
        dec: Type.Number({ minimum: -90, maximum: 90, description: 'degrees' }),
        radius: Type.Number({ exclusiveMinimum: 0, maximum: MAX_CONE_RADIUS_ARCSEC, description: `arcsec, at most ${MAX_CONE_RADIUS_ARCSEC}` }),
        // Optional with a default: Ajv's useDefaults fills it in when it is left out.
        mode: Type.Optional(Type.Union(CONE_MODES.map((m) => Type.Literal(m)), { default: DEFAULT_MODE }))
      }),
      response: {
        200: Type.Object({
          mode: Type.String(),
          count: Type.Integer(),
          results: Type.Optional(Type.Array(HitSchema, { description: 'absent in count mode; at most one in nearest mode' }))
        }),
        304: Type.Null(),
        ...problems()
      }
    }
  }, async (request, reply) => {
    const q = request.query
    // The default is in already (useDefaults); the type does not know it.
    const mode = q.mode ?? DEFAULT_MODE
    // One wide search per position answers every radius and mode (upstream/cone.ts).
    const read = await app.atlas.tableText(request, 'cone', 'cone', wideConeFields(q.ra, q.dec))
    const derived = coneFromWide(read.text, q.radius, mode)
    if (derived === undefined) throw new UpstreamError('The upstream sent something other than a list for a cone search.')
    const value = parseLossless(derived) as Hit | Hit[]
    let out: { mode: string, count: number, results?: unknown[] }
    if (mode === 'count') {
      out = { mode, count: Number((value as Hit)[replyFields.coneCount] ?? 0) }
    } else {
      const hits = Array.isArray(value) ? value : (Object.keys(value).length === 0 ? [] : [value])
      out = { mode, count: hits.length, results: hits.map(toHit) }
    }
    return sendDerived(request, reply, read, stringifyV1(out))
  })
}
