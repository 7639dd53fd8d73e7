// Write endpoints of the compatibility path: validated here (so malformed input never reaches the
// upstream, whose answer to some of it is a 500 page), then sent once, and the upstream's reply passed
// back exactly. Never retried blindly; never cached; the cache entries they change are invalidated.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MSG, type FieldValue } from '../../drf/fields.js'
import { canBeAtlasId, unknownObjectReply, type Fields, type ObjectWriteEndpoint, type UpstreamEndpoint } from '../../upstream/endpoints.js'
import { SERIALIZERS } from '../../upstream/serializers.js'
import type { CompatReply, Values } from './reads.js'

export type WriteEndpoint = ObjectWriteEndpoint

/**
 * Validated values back into form fields, normalised, except datetimes: those go as written, since the
 * upstream reads the text itself (normalised to UTC, year 1 at +01:00 would fall into year 0).
 */
function toFields (endpoint: UpstreamEndpoint, v: Values, original: Record<string, string>): Fields {
  const out: Fields = {}
  for (const spec of SERIALIZERS[endpoint]) {
    const value: FieldValue | undefined = v[spec.name]
    const text = original[spec.name]
    if (value === null || value === undefined || text === undefined) continue
    out[spec.name] = spec.kind === 'datetime' ? text : typeof value === 'boolean' ? (value ? 'true' : 'false') : String(value)
  }
  return out
}

export async function write (app: FastifyInstance, request: FastifyRequest, endpoint: WriteEndpoint, v: Values, original: Record<string, string>): Promise<CompatReply> {
  // Every write checks its object first upstream: an id that cannot be an ATLAS id has a known answer,
  // given here without a call (nothing changes, so nothing is invalidated).
  const objectId = v.objectid as bigint
  if (!canBeAtlasId(objectId)) return unknownObjectReply(endpoint, objectId)
  // DRF's FloatField lets nan and inf through; the upstream's database cannot store them (its answer
  // would be a 500 page). Refuse them in DRF's words, as the other 500-page inputs are.
  for (const spec of SERIALIZERS[endpoint]) {
    const value = v[spec.name]
    if (typeof value === 'number' && !Number.isFinite(value)) return { status: 400, body: JSON.stringify({ [spec.name]: [MSG.float] }) }
  }
  const groupId = typeof v.objectgroupid === 'bigint' ? v.objectgroupid : undefined
  const target = { objectId: String(v.objectid), ...(groupId === undefined ? {} : { groupId }) }
  // The reply is answered as it is, so the write's audit record holds the outcome it names.
  const { reply } = await app.atlas.write(request, endpoint, toFields(endpoint, v, original), target, async (send) => await send())
  return { status: reply.status, body: reply.text }
}
