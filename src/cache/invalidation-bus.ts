// Invalidations reach every replica's L1: a write on replica A deletes the tagged entries from its own L1
// and from L2, then publishes the tags on a Redis channel so that replicas B, C… drop their L1 copies too.
// Without it, a bot that writes through one replica and reads through another would see the old list
// until the entry's fresh time ran out. While Redis is being skipped after a failure, a publish is not
// even attempted, so a write never waits on it; the cache sends it again once Redis answers
// (lib/resend-queue.ts). A replica whose subscriber was disconnected when a message went out misses it
// and keeps its copy at most until that entry goes stale; it subscribes whenever its connection is ready
// again, also when Redis was down as it started.
import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { createRedisHealth, type RedisGuard } from '../lib/redis-health.js'

export interface InvalidationBusOptions {
  /** Publishes on the shared client. */
  publisher: Redis
  /** A dedicated connection: a subscribed ioredis client can run no other command. */
  subscriber: Redis
  /** The gateway's key prefix; the channel is `<prefix>c:invalidate`. */
  prefix: string
  guard?: RedisGuard
}

export interface InvalidationBus {
  /** Resolves true once Redis took the message; false when Redis failed or is being skipped. */
  publish: (tags: readonly string[]) => Promise<boolean>
  /** `handler` receives the tags invalidated by other instances (never this one's own). */
  onInvalidate: (handler: (tags: string[]) => void) => void
  /** Settles once the channel is subscribed (or the attempt failed and was reported). */
  ready: Promise<void>
}

function parseMessage (text: string): { from: string, tags: string[] } | undefined {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null) return undefined
    const { from, tags } = value as { from?: unknown, tags?: unknown }
    if (typeof from !== 'string' || !Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) return undefined
    return { from, tags }
  } catch {
    return undefined
  }
}

export function createInvalidationBus (opts: InvalidationBusOptions): InvalidationBus {
  const self = randomUUID()
  const channel = `${opts.prefix}c:invalidate`
  const guard = opts.guard ?? createRedisHealth().guard('pubsub')
  const handlers: Array<(tags: string[]) => void> = []
  opts.subscriber.on('message', (from: string, text: string) => {
    if (from !== channel) return
    const message = parseMessage(text)
    if (message === undefined || message.from === self) return
    for (const handler of handlers) handler(message.tags)
  })
  // ioredis re-subscribes by itself after a reconnect (autoResubscribe), but only to channels it had
  // subscribed: when the boot's attempt was skipped or failed (Redis down), the subscriber connecting
  // later must subscribe itself, or this replica would never hear another's invalidation.
  let isSubscribed = false
  const subscribe = async (): Promise<void> => {
    await opts.subscriber.subscribe(channel)
    isSubscribed = true
  }
  opts.subscriber.on('ready', () => {
    if (!isSubscribed) subscribe().catch(() => {})
  })
  const ready = guard.run(subscribe, undefined)
  return {
    ready,
    async publish (tags) {
      return (await guard.attempt(async () => opts.publisher.publish(channel, JSON.stringify({ from: self, tags })))).ok
    },
    onInvalidate (handler) {
      handlers.push(handler)
    }
  }
}
