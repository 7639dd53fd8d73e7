// Push (`app.push`): event sources polled once for every subscriber, events kept in the store and sent
// as server-sent events (routes/v1/events.ts) and signed webhooks. docs/architecture.md has the tour:
// sources.ts (what is polled, how a poll becomes events), poller.ts (one poll per source per interval
// across replicas), store.ts (events, snapshots, leads), sse.ts (streams and fan-out), webhooks.ts.
import { randomUUID } from 'node:crypto'
import { PassThrough } from 'node:stream'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { expiryOf } from '../consumers/expiry.js'
import { hasScope } from '../consumers/scopes.js'
import { RateLimitedError, UnavailableError, invalidFields, withRetryAfter } from '../errors.js'
import { createResendQueue } from '../lib/resend-queue.js'
import { createPoller } from './poller.js'
import { sourceByName, type SourceSpec } from './sources.js'
import { createHub, type Stream } from './sse.js'
import { createMemoryPushStore, createRedisPushStore, guardedPushStore, idBefore, isResumableId, type PushStore } from './store.js'
import { createWebhooks } from './webhooks.js'

declare module 'fastify' {
  interface FastifyInstance {
    push: {
      store: PushStore
      /** Answers a request with an event stream of `spec` (after the route's auth has run). */
      open: (request: FastifyRequest, reply: FastifyReply, spec: SourceSpec) => Promise<FastifyReply>
      /** Sources this replica polls now (it leads them). */
      leading: () => string[]
    }
  }
}

// Clients are told to reconnect after this long when a stream ends at shutdown (another replica answers).
const RETRY_MS = 1000

/** Last-Event-ID as sent, or undefined; a malformed one is a 400 naming the header. */
function lastEventId (request: FastifyRequest): string | undefined {
  const value = request.headers['last-event-id']
  if (value === undefined || value === '') return undefined
  if (typeof value !== 'string' || !isResumableId(value.trim())) {
    throw invalidFields('Last-Event-ID must be an event id as sent in an `id:` line (e.g. 1764500000000-0).', [{ path: '/headers/last-event-id', message: 'must look like 1764500000000-0' }])
  }
  return value.trim()
}

/**
 * Refuses (400) a Last-Event-ID ahead of both the clock and the source's last event: no event has it yet,
 * and a stream resumed from it would stay silent until the clock passed it (for ever, near 2^64). An id
 * behind the clock is taken whatever the stream holds (one kept before Redis lost the stream resumes as
 * the next events come). Ids are Redis's clock, this is the replica's: the last event decides.
 */
async function refuseFuture (store: PushStore, source: string, id: string): Promise<void> {
  if (BigInt(id.split('-')[0] as string) <= BigInt(Date.now())) return
  let tail: string
  try {
    tail = await store.tail(source)
  } catch (err) {
    throw unavailable(err)
  }
  if (idBefore(tail, id)) {
    throw invalidFields('Last-Event-ID is after the last event of this source and in the future: no event has that id yet. Send an id as received in an `id:` line, or none to start from now.', [{ path: '/headers/last-event-id', message: 'must be an id this source has sent' }])
  }
}

/** A store failure (Redis down or slow) as a 503 the client retries, with the cause kept for the log. */
function unavailable (err: unknown): Error {
  return Object.assign(withRetryAfter(new UnavailableError('Events cannot be read now; retry with Last-Event-ID.'), 1), { cause: err })
}

export const pushPlugin = fp(async (app) => {
  const config = app.config
  const limits = { retentionMs: config.PUSH_RETENTION_S * 1000, maxEvents: config.PUSH_MAX_EVENTS }
  const guard = app.redis === null ? undefined : app.redisHealth.guard('push')
  const store = app.redis === null || guard === undefined
    ? createMemoryPushStore(limits)
    : guardedPushStore(createRedisPushStore(app.redis, config.REDIS_KEY_PREFIX, limits), guard)
  const log = app.log.child({ component: 'push' })
  // Stream slots to give back that Redis did not take back: a claim that timed out (Redis may run it
  // as it thaws) or a release while Redis was down. Sent again until Redis answers; without it, opens
  // refused during a stall held the consumer's slots for three heartbeats after Redis came back (429).
  const unreleased = createResendQueue<string, { consumer: string, streamId: string }>({
    send: async (entries) => {
      const tries = await Promise.allSettled(entries.map(async ([, { consumer, streamId }]) => store.releaseStream(consumer, streamId)))
      return entries.filter((_, i) => tries[i]?.status === 'fulfilled').map(([key]) => key)
    },
    onChange: (event, count) => {
      if (event === 'dropped') log.warn({ streams: count }, 'push: stream slots left to lapse (three heartbeats)')
    }
  })
  const release = (consumer: string, streamId: string): void => {
    store.releaseStream(consumer, streamId).catch(() => { unreleased.keep([[`${consumer} ${streamId}`, { consumer, streamId }]]) })
  }
  // Set below: the poller decides which sources this replica leads.
  let leadOf: (source: string) => string | undefined = () => undefined
  const webhooks = createWebhooks(app, store, (source) => leadOf(source))
  const hub = createHub({
    store,
    log,
    onSubscribers: (source, count) => { app.metrics.pushSubscribers.set({ source, kind: 'sse' }, count) }
  })
  const poller = createPoller({
    app,
    store,
    hasInterest: (source) => hub.count(source) > 0 || webhooks.count(source) > 0,
    onCommit: (source) => {
      hub.poke()
      webhooks.deliver(source)
    },
    whileLeading: (source) => { webhooks.deliver(source) }
  })

  leadOf = (source) => poller.leadOf(source)

  // Webhook sources are polled while a webhook names them (the consumers file may be reloaded).
  const badSources = new Set<string>()
  function watchWebhookSources (): void {
    for (const name of webhooks.sources()) {
      try {
        const spec = sourceByName(app, name)
        app.metrics.pushSubscribers.set({ source: spec.name, kind: 'webhook' }, webhooks.count(name))
        poller.ensure(spec)
      } catch {
        if (!badSources.has(name)) log.error({ source: name }, 'push: a webhook names an unknown source; ignored')
        badSources.add(name)
      }
    }
  }
  let watcher: NodeJS.Timeout | undefined
  app.addHook('onReady', async () => {
    watchWebhookSources()
    watcher = setInterval(watchWebhookSources, Math.max(100, Math.floor(config.PUSH_LEADER_TTL_MS / 3)))
    watcher.unref()
  })

  /**
   * Whether the key that opened a stream would still be let in: it still authenticates (not revoked or
   * rotated away, its consumer not disabled), its consumer has not expired and still has the source's
   * scope. A known key costs a map lookup; it runs once per heartbeat.
   */
  function isStillAllowed (request: FastifyRequest, spec: SourceSpec): boolean {
    const opener = request.consumer
    if (opener === null) return true
    const consumer = app.consumers.authenticate(request.consumerKey)
    return consumer?.id === opener.id && expiryOf(consumer, app.auth.now())?.isExpired !== true && hasScope(consumer, spec.scope)
  }

  async function open (request: FastifyRequest, reply: FastifyReply, spec: SourceSpec): Promise<FastifyReply> {
    const resumeFrom = lastEventId(request)
    if (resumeFrom !== undefined) await refuseFuture(store, spec.name, resumeFrom)
    const consumer = request.consumer?.id ?? 'anonymous'
    const streamId = randomUUID()
    const slotTtl = config.PUSH_HEARTBEAT_MS * 3
    let isClaimed: boolean
    // Whether the claim goes to Redis (the guard decides as the call starts), rather than being skipped.
    const isSent = guard?.isAvailable ?? true
    try {
      isClaimed = await store.claimStream(consumer, streamId, config.PUSH_MAX_STREAMS_PER_CONSUMER, slotTtl)
    } catch (err) {
      if (isSent) release(consumer, streamId)
      throw unavailable(err)
    }
    if (!isClaimed) {
      // The streams are counted per consumer: a key that holds none is refused when its siblings hold them all.
      throw withRetryAfter(new RateLimitedError(
        `This consumer may hold ${config.PUSH_MAX_STREAMS_PER_CONSUMER} open event streams, whichever of its keys opened them; close one first.`
      ), Math.ceil(slotTtl / 1000))
    }
    const out = new PassThrough()
    const stream: Stream = { id: streamId, consumer, source: spec.name, out, lastId: '0-0', pending: [] }
    // Each heartbeat also checks the key: a stream whose key is revoked, disabled or expired ends (just
    // ends: the client's reconnection gets the 401 that says why).
    const heartbeat = setInterval(() => {
      if (!isStillAllowed(request, spec)) {
        log.info({ source: spec.name, consumer }, 'push: a stream\'s key is no longer let in; stream ended')
        done()
        return
      }
      if (!out.writableEnded) out.write(': heartbeat\n\n')
      store.claimStream(consumer, streamId, Number.MAX_SAFE_INTEGER, slotTtl).catch(() => {})
    }, config.PUSH_HEARTBEAT_MS)
    heartbeat.unref()
    let isDone = false
    const done = () => {
      if (isDone) return
      isDone = true
      clearInterval(heartbeat)
      hub.detach(stream)
      release(consumer, streamId)
      if (!out.writableEnded) out.end()
    }
    request.raw.once('close', done)
    out.once('close', done)
    // The first bytes: the reconnection delay, before any event.
    out.write(`retry: ${RETRY_MS}\n: ${spec.name}\n\n`)
    try {
      const attached = hub.attach(stream, resumeFrom)
      poller.ensure(spec)
      await attached
    } catch (err) {
      done()
      throw unavailable(err)
    }
    return reply
      .header('content-type', 'text/event-stream; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-accel-buffering', 'no')
      .send(out)
  }

  app.decorate('push', { store, open, leading: () => poller.leading() })

  // Webhook posts under way are waited for from here, beside the requests in flight, and the leads kept
  // until they end (onClose, before Redis closes: their cursors are saved in it).
  let webhooksClosed: Promise<void> | undefined
  // Streams never end by themselves: close them before the listener waits for open connections, and
  // tell clients to come back (to another replica) soon.
  app.addHook('preClose', async () => {
    clearInterval(watcher)
    webhooksClosed = webhooks.close()
    for (const stream of hub.streams()) {
      if (!stream.out.writableEnded) stream.out.end(`retry: ${RETRY_MS}\nevent: shutdown\ndata: {"type":"shutdown"}\n\n`)
    }
  })
  app.addHook('onClose', async () => {
    hub.close()
    // preClose does not run for an app closed before it was ready.
    await (webhooksClosed ?? webhooks.close())
    await Promise.all([poller.close(), unreleased.close()])
  })
}, { name: 'push', fastify: '5.x', dependencies: ['redis', 'metrics', 'service', 'consumer-auth'] })
