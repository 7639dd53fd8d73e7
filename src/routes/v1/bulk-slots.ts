// Slots of the bulk object streams a replica serves at once (POST /v1/objects/query as NDJSON, or as
// JSON of more than one chunk): each holds a chunk of records until its client takes it, so their number
// bounds the memory they hold. Counted per replica, in the process: a consumer's bound is per replica
// too (exact across replicas would need a Redis call per stream, and memory is a replica's own).
import type { Socket } from 'node:net'
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
  // What to do when a connection goes, for the slots its requests hold: one listener per connection,
  // however many requests it pipelines (each would otherwise add its own to the socket).
  const onConnectionClose = new WeakMap<Socket, Set<() => void>>()
  const whenConnectionCloses = (socket: Socket, fn: () => void): () => void => {
    let fns = onConnectionClose.get(socket)
    if (fns === undefined) {
      const all = fns = new Set()
      onConnectionClose.set(socket, all)
      socket.once('close', () => { for (const f of all) f() })
    }
    fns.add(fn)
    const registered = fns
    return () => { registered.delete(fn) }
  }
  return {
    /**
     * Takes a slot for the request's stream until its response ends, fails or its client goes away;
     * throws the refusal when the consumer or the replica holds its bound.
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
      const response = reply.raw
      const socket = request.raw.socket as Socket | null
      // A client gone while the body was read: its 'close' has already come.
      if (response.closed || response.destroyed || socket?.destroyed === true) {
        release(consumer)
        return
      }
      // Given back once, on the response's 'close' (it ended, failed, or its connection went) or on the
      // connection's: Node never emits 'close' for a response pipelined behind another one that is still
      // waiting for its turn when the connection goes.
      let isReleased = false
      let forget = (): void => {}
      const releaseOnce = (): void => {
        if (isReleased) return
        isReleased = true
        response.off('close', releaseOnce)
        forget()
        release(consumer)
      }
      response.once('close', releaseOnce)
      if (socket !== null) forget = whenConnectionCloses(socket, releaseOnce)
    }
  }
}
