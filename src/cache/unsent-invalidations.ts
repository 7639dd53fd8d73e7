// Invalidations that did not reach Redis. A write's invalidation clears the writer's L1 at once, then
// the tagged keys in L2 and, through pub/sub, the other replicas' L1; when Redis is failing or being
// skipped after a failure, those two steps do not happen, and without this the pre-write entry would
// stay in L2 and in every other replica's L1 until it went stale (10 minutes for an object record). The
// tags are kept here and sent again every `intervalMs` until Redis takes them (resending is harmless:
// deleting what a tag lists again and publishing it again only costs a later miss).
//
// Bounded: writes are one upstream call each, so a long outage keeps few tags; past `maxTags` the oldest
// are dropped and reported.

export interface UnsentInvalidationsOptions {
  /** Sends the tags to Redis (L2 and pub/sub); resolves true once both took them. */
  send: (tags: string[]) => Promise<boolean>
  /** How often kept tags are tried again (default 1 s, the Redis health's cool-down). */
  intervalMs?: number
  /** The most tags kept (default 10,000); the oldest go first. */
  maxTags?: number
  /** Tags kept for later, sent after all, or dropped past maxTags (logs and metrics). */
  onChange?: (event: 'kept' | 'sent' | 'dropped', tags: number) => void
}

export const DEFAULT_RESEND_MS = 1000
export const DEFAULT_MAX_UNSENT_TAGS = 10_000

export function createUnsentInvalidations (opts: UnsentInvalidationsOptions) {
  const intervalMs = opts.intervalMs ?? DEFAULT_RESEND_MS
  const maxTags = opts.maxTags ?? DEFAULT_MAX_UNSENT_TAGS
  const unsent = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let sending: Promise<void> | undefined

  async function resend (): Promise<void> {
    if (unsent.size === 0) return
    const tags = [...unsent]
    if (!await opts.send(tags)) return
    // Tags kept again while this send was out stay for the next one.
    for (const tag of tags) unsent.delete(tag)
    opts.onChange?.('sent', tags.length)
    if (unsent.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }

  function tick (): void {
    sending ??= resend().catch(() => {}).finally(() => { sending = undefined })
  }

  return {
    /** Keeps `tags` until a later send reaches Redis. */
    keep (tags: readonly string[]): void {
      for (const tag of tags) {
        // Re-inserted, so that a tag kept again counts as the newest.
        unsent.delete(tag)
        unsent.add(tag)
      }
      let dropped = 0
      for (const tag of unsent) {
        if (unsent.size <= maxTags) break
        unsent.delete(tag)
        dropped++
      }
      opts.onChange?.('kept', tags.length)
      if (dropped > 0) opts.onChange?.('dropped', dropped)
      if (timer === undefined) {
        timer = setInterval(tick, intervalMs)
        timer.unref()
      }
    },
    /** Tags waiting to be sent. */
    get size (): number { return unsent.size },
    /** One last try, then no more (at close); what is still unsent then is reported dropped. */
    async close (): Promise<void> {
      tick()
      await sending
      clearInterval(timer)
      timer = undefined
      if (unsent.size > 0) opts.onChange?.('dropped', unsent.size)
      unsent.clear()
    }
  }
}
