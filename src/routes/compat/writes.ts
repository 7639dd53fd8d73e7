// Write endpoints of the compatibility path: validated here (so malformed input never reaches the
// upstream, whose answer to some of it is a 500 page), then sent once, and the upstream's reply passed
// back exactly. Never retried blindly; never cached; the cache entries they change are invalidated.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { cacheTags } from '../../cache/keys.js'
import type { FieldValue } from '../../drf/fields.js'
import { formatDateTime, parseDateTime } from '../../drf/time.js'
import type { Fields, UpstreamEndpoint } from '../../upstream/endpoints.js'
import { SERIALIZERS } from '../../upstream/serializers.js'
import { callContext, chargeShare } from '../v1/read-through.js'
import type { CompatReply, Values } from './reads.js'

export type WriteEndpoint = 'vrascores' | 'vratodo' | 'objectgroups' | 'objectgroupsdelete' | 'vrarank' | 'objectdetectionlist'

/** Validated values back into form fields, normalised (datetimes in full UTC, contract §1). */
function toFields (endpoint: UpstreamEndpoint, v: Values, original: Record<string, string>): Fields {
  const out: Fields = {}
  for (const spec of SERIALIZERS[endpoint]) {
    const value: FieldValue | undefined = v[spec.name]
    if (value === null || value === undefined || original[spec.name] === undefined) continue
    if (spec.kind === 'datetime') {
      const us = parseDateTime(original[spec.name] as string)
      if (us !== null) out[spec.name] = formatDateTime(us)
    } else {
      out[spec.name] = typeof value === 'boolean' ? (value ? 'true' : 'false') : String(value)
    }
  }
  return out
}

/** What a write may change, as cache tags (the same tags v1 writes invalidate). */
function tagsFor (app: FastifyInstance, endpoint: WriteEndpoint, v: Values): string[] {
  const objectId = String(v.objectid)
  switch (endpoint) {
    case 'vrascores': return [cacheTags.route('vra-scores')]
    case 'vratodo': return [cacheTags.route('vra-todo')]
    case 'vrarank': return [cacheTags.route('vra-ranks')]
    case 'objectdetectionlist': return [cacheTags.object(objectId), cacheTags.route('lists')]
    default: {
      const name = app.lists.customName(Number(v.objectgroupid))
      // An unnamed group can still be cached under its raw query: drop every custom-list read.
      return [`object-lists:${objectId}`, ...(name === undefined ? [cacheTags.route('custom-lists')] : [cacheTags.customList(name), cacheTags.list(name)])]
    }
  }
}

export async function write (app: FastifyInstance, request: FastifyRequest, endpoint: WriteEndpoint, v: Values, original: Record<string, string>): Promise<CompatReply> {
  await chargeShare(app, request)
  const reply = await app.upstream.client.call(endpoint, toFields(endpoint, v, original), callContext(request))
  await app.cache.invalidate(tagsFor(app, endpoint, v))
  return { status: reply.status, body: reply.text }
}
