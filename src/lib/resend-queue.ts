// What had to reach Redis and did not (Redis failing, or skipped after a failure): kept by key and sent
// again every `intervalMs` until Redis takes it. Its users: a write's cache invalidation (without it, L2
// and the other replicas would keep the pre-write entry until it went stale) and a write's
// Idempotency-Key outcome (without it, a retry after the marker's lease would write again). Sending
// again must be harmless: each user's send is idempotent.
//
// Bounded: writes are one upstream call each, so even a long outage keeps few entries; past `maxEntries`
// the oldest are dropped and reported.

export interface ResendQueueOptions<K, V> {
  /** Sends the entries; resolves with the keys that are settled (taken by Redis, or no longer needed). */
  send: (entries: ReadonlyArray<readonly [K, V]>) => Promise<Iterable<K>>
  /** How often kept entries are tried again (default 1 s, the Redis health's cool-down). */
  intervalMs?: number
  /** The most entries kept (default 10,000); the oldest go first. */
  maxEntries?: number
  /** Entries kept for later, settled after all, or dropped past maxEntries or at close (logs). */
  onChange?: (event: 'kept' | 'sent' | 'dropped', count: number) => void
}

export const DEFAULT_RESEND_MS = 1000
export const DEFAULT_MAX_RESEND_ENTRIES = 10_000

export function createResendQueue<K, V> (opts: ResendQueueOptions<K, V>) {
  const intervalMs = opts.intervalMs ?? DEFAULT_RESEND_MS
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_RESEND_ENTRIES
  const kept = new Map<K, V>()
  let timer: NodeJS.Timeout | undefined
  let sending: Promise<void> | undefined

  async function resend (): Promise<void> {
    if (kept.size === 0) return
    const batch = new Map(kept)
    let settled = 0
    for (const key of await opts.send([...batch])) {
      // Only what this send carried: an entry kept again while it was out waits for the next one.
      if (batch.has(key) && kept.get(key) === batch.get(key)) {
        kept.delete(key)
        settled++
      }
    }
    if (settled > 0) opts.onChange?.('sent', settled)
    if (kept.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }

  function tick (): void {
    sending ??= resend().catch(() => {}).finally(() => { sending = undefined })
  }

  return {
    /** Keeps each entry (a key kept again takes the new value and counts as the newest) until a send settles it. */
    keep (entries: Iterable<readonly [K, V]>): void {
      let count = 0
      for (const [key, value] of entries) {
        kept.delete(key)
        kept.set(key, value)
        count++
      }
      let dropped = 0
      for (const key of kept.keys()) {
        if (kept.size <= maxEntries) break
        kept.delete(key)
        dropped++
      }
      opts.onChange?.('kept', count)
      if (dropped > 0) opts.onChange?.('dropped', dropped)
      if (timer === undefined && kept.size > 0) {
        timer = setInterval(tick, intervalMs)
        timer.unref()
      }
    },
    /** The value kept under `key`, if it is still waiting. */
    get (key: K): V | undefined { return kept.get(key) },
    /** Entries waiting to be sent. */
    get size (): number { return kept.size },
    /** One last try, then no more (at close); what is still kept then is reported dropped. */
    async close (): Promise<void> {
      tick()
      await sending
      clearInterval(timer)
      timer = undefined
      if (kept.size > 0) opts.onChange?.('dropped', kept.size)
      kept.clear()
    }
  }
}
