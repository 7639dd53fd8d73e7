// A v1 write through the service, and what its outcome means in v1: the upstream reports failures with
// success codes, so the service reads the `info` text; an outcome it cannot name becomes an error here.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { UpstreamAuthError, UpstreamError, ValidationError } from '../../errors.js'
import type { WriteKind, WriteTarget } from '../../cache/tags.js'
import type { Fields, WriteOutcome } from '../../upstream/endpoints.js'

export async function upstreamWrite (
  app: FastifyInstance, request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget
): Promise<WriteOutcome> {
  const { reply, outcome } = await app.atlas.write(request, kind, fields, target)
  if (outcome !== undefined) return outcome
  if (reply.status === 403) {
    throw new UpstreamAuthError('The gateway\'s upstream account has no write access; the operator must grant it.')
  }
  if (reply.status === 400) {
    // Field errors the facade's own validation should have caught: report them, not a crash.
    throw Object.assign(new ValidationError(`The upstream rejected the ${kind}/ fields: ${reply.text.slice(0, 300)}`), { cause: reply.text })
  }
  throw Object.assign(new UpstreamError(`The upstream answered ${kind}/ with status ${reply.status} and no known outcome.`), { cause: reply.text.slice(0, 200) })
}
