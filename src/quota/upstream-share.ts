// Upstream share: how many upstream calls (cache misses) one consumer may cause per UTC hour, so that a
// single consumer cannot spend the global upstream budget (UPSTREAM_RATE) that every consumer shares.
// The upstream scheduler takes one unit per upstream call it makes on a consumer's behalf. Counted on
// leases like daily units (quota/lease.ts): a share below LIMIT_LEASE_DIVISOR × 2 is taken one unit per
// Redis call and stays exact across replicas; a larger one is spent locally from leased blocks, so
// before an upstream call leaves, only the global budget's take goes to Redis.
import type { Consumer } from '../consumers/schema.js'
import { calendarLeaseStore, createLeasedCounter, type LeasedCounterOptions, type LimitCharge } from './lease.js'
import type { WindowStore } from './window-store.js'

export const HOUR_SECONDS = 3600
const HOUR_MS = HOUR_SECONDS * 1000

export type UpstreamShare = ReturnType<typeof createUpstreamShare>

export function createUpstreamShare (store: WindowStore, keyPrefix: string, opts: Omit<LeasedCounterOptions, 'store'>) {
  const keyOf = (consumer: Consumer): string => `${keyPrefix}quota:share:${consumer.id}`
  const counter = createLeasedCounter({ ...opts, store: calendarLeaseStore(store) })
  return {
    /** One call from the consumer's share; undefined when the store call was skipped (open policy). */
    take (consumer: Consumer): Promise<LimitCharge | undefined> {
      return counter.charge(keyOf(consumer), 1, consumer.upstream_share, HOUR_MS)
    },
    /** Gives back one call that was charged but never sent. */
    refund (consumer: Consumer, windowEnd?: number): Promise<void> {
      return counter.refund(keyOf(consumer), 1, consumer.upstream_share, HOUR_MS, windowEnd)
    },
    async used (consumer: Consumer): Promise<number | undefined> {
      return (await counter.used(keyOf(consumer), consumer.upstream_share, HOUR_MS))?.used
    },
    /** Gives back the leases of shares a consumers reload changed (or removed): `consumers` is the new set. */
    dropChanged (consumers: readonly Consumer[]): Promise<void> {
      const shares = new Map(consumers.map((c) => [keyOf(c), c.upstream_share]))
      return counter.dropChanged((key) => {
        const limit = shares.get(key)
        return limit === undefined ? undefined : { limit, periodMs: HOUR_MS }
      })
    },
    /** Gives unspent leased units back (on close). */
    release: () => counter.release()
  }
}
