// One upstream write and what it meant. The upstream reports failures with success codes, so the
// `info` text decides (endpoints.ts writeOutcome). Writes are never cached and never retried blindly;
// after a write, the cache entries it changed are invalidated by tag.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { UpstreamAuthError, UpstreamError, ValidationError } from '../../errors.js'
import { parseLossless } from '../../lib/json.js'
import { writeOutcome, type Fields, type UpstreamEndpoint, type WriteOutcome } from '../../upstream/endpoints.js'
import { callContext } from './read-through.js'

export async function upstreamWrite (
  app: FastifyInstance, request: FastifyRequest, endpoint: UpstreamEndpoint, fields: Fields, invalidate: string[]
): Promise<WriteOutcome> {
  const reply = await app.upstream.client.call(endpoint, fields, callContext(request))
  let body: unknown = null
  if (reply.text.length > 0) {
    try {
      body = parseLossless(reply.text)
    } catch (err) {
      throw Object.assign(new UpstreamError(`The upstream sent malformed JSON for ${endpoint}/.`), { cause: err })
    }
  }
  const outcome = writeOutcome(reply.status, body)
  // Whatever the outcome, the upstream may have changed: drop what could now be out of date.
  if (outcome !== 'unknown_object' && outcome !== 'unknown_list') await app.cache.invalidate(invalidate)
  if (outcome !== undefined) return outcome
  if (reply.status === 403) {
    throw new UpstreamAuthError('The gateway\'s upstream account has no write access; the operator must grant it.')
  }
  if (reply.status === 400) {
    // Field errors the facade's own validation should have caught: report them, not a crash.
    throw Object.assign(new ValidationError(`The upstream rejected the ${endpoint}/ fields: ${reply.text.slice(0, 300)}`), { cause: reply.text })
  }
  throw Object.assign(new UpstreamError(`The upstream answered ${endpoint}/ with status ${reply.status} and no known outcome.`), { cause: reply.text.slice(0, 200) })
}
