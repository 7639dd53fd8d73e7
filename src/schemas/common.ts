// Shared TypeBox pieces of the v1 facade.
import { Type, type TSchema } from '@sinclair/typebox'

/** An ATLAS id: 19 digits, always a JSON string in v1 (it is above 2^53). */
export const AtlasIdSchema = Type.String({
  pattern: '^\\d{19}$',
  description: 'ATLAS object id: 19 digits, as a string (the value exceeds 2^53, so JSON numbers would corrupt it)',
  examples: ['1161600211221604900']
})

export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String({ description: 'stable machine-readable code, e.g. GW_VALIDATION' }),
  request_id: Type.String(),
  errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() })))
}, { $id: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' })

const ProblemRef = Type.Ref('Problem')

/** Problem responses every authenticated v1 route can send, plus the route's own. */
export function problems (...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {}
  for (const s of [400, 401, 403, 429, 502, 503, 504, ...statuses]) out[s] = ProblemRef
  return out
}

/**
 * A response passed through as stored bytes (upstream records, list rows). Documented here; Fastify
 * does not re-serialise string payloads, so unknown upstream fields survive and ids stay exact.
 */
export function passthrough (description: string, properties: Record<string, TSchema> = {}): TSchema {
  return Type.Object(properties, { description, additionalProperties: true })
}

export const IdListQuery = Type.String({
  pattern: '^\\d{19}(,\\d{19})*$',
  description: 'comma-separated ATLAS ids'
})

export const SinceQuery = Type.String({
  format: 'instant',
  description: 'a calendar date YYYY-MM-DD or a datetime YYYY-MM-DDThh:mm[:ss[.ffffff]] with an optional zone Z or ±hh:mm ' +
    '(UTC when none; hours 00–23); impossible dates such as 2025-02-30 are refused'
})
