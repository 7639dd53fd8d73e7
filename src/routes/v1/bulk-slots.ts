// Slots of the bulk object streams a replica serves at once (POST /v1/objects/query as NDJSON, or as
// JSON of more than one chunk): each holds a chunk of records until its client takes it, so their number
// bounds the memory they hold. Counted per replica, in the process: a consumer's bound is per replica
// too (exact across replicas would need a Redis call per stream, and memory is a replica's own).
import type { FastifyReply, FastifyRequest } from 'fastify'
import { RateLimitedError, UnavailableError, withRetryAfter } from '../../errors.js'
import type { Metrics } from '../../plugins/metrics.js'

// A stream of cached ids lasts seconds: a refused one comes back soon.
const RETRY_AFTER_S = 1

export interface BulkSlotLimits { perConsumer: number, total: number }

export function createBulkSlots (limits: BulkSlotLimits, metrics: Metrics) {
  let open = 0
  const byConsumer = new Map<string, number>()
  const release = (consumer: string): void => {
    open--
    const held = (byConsumer.get(consumer) ?? 1) - 1
    if (held === 0) byConsumer.delete(consumer)
    else byConsumer.set(consumer, held)
    metrics.bulkStreams.set(open)
  }
  return {
    /**
     * Takes a slot for the request's stream until its response ends, fails or its client goes away
     * ('close' comes once for each); throws the refusal when the consumer or the replica holds its bound.
     */
    take (request: FastifyRequest, reply: FastifyReply): void {
      const consumer = request.consumer?.id ?? ''
      const held = byConsumer.get(consumer) ?? 0
      if (held >= limits.perConsumer) {
        metrics.limitRejections.inc({ consumer, kind: 'bulk_streams' })
        throw withRetryAfter(new RateLimitedError(`This consumer may run ${limits.perConsumer} bulk stream(s) at once on a replica, whichever of its keys started them; retry once one has ended.`), RETRY_AFTER_S)
      }
      if (open >= limits.total) {
        metrics.limitRejections.inc({ consumer, kind: 'bulk_streams_replica' })
        throw withRetryAfter(new UnavailableError(`This replica is serving its ${limits.total} bulk streams; retry (another replica may answer).`), RETRY_AFTER_S)
      }
      open++
      byConsumer.set(consumer, held + 1)
      metrics.bulkStreams.set(open)
      // A client gone while the body was read: its 'close' has already come.
      if (reply.raw.closed || reply.raw.destroyed) release(consumer)
      else reply.raw.once('close', () => { release(consumer) })
    }
  }
}
