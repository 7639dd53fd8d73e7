// Upstream share: how many upstream calls (cache misses) one consumer may cause per UTC hour, so that a
// single consumer cannot spend the global upstream budget (UPSTREAM_RATE) that every consumer shares.
// The upstream scheduler takes one unit per upstream call it makes on a consumer's behalf.
import type { Consumer } from '../consumers/schema.js'
import type { WindowCharge, WindowStore } from './window-store.js'

export const HOUR_SECONDS = 3600

export type UpstreamShare = ReturnType<typeof createUpstreamShare>

export function createUpstreamShare (store: WindowStore, keyPrefix: string) {
  const keyOf = (consumer: Consumer): string => `${keyPrefix}quota:share:${consumer.id}`
  return {
    take (consumer: Consumer): Promise<WindowCharge> {
      return store.charge(keyOf(consumer), 1, consumer.upstream_share, HOUR_SECONDS)
    },
    /** Gives back one call that was charged but never sent. */
    refund (consumer: Consumer): Promise<WindowCharge> {
      return store.charge(keyOf(consumer), -1, consumer.upstream_share, HOUR_SECONDS)
    },
    async used (consumer: Consumer): Promise<number> {
      return (await store.charge(keyOf(consumer), 0, consumer.upstream_share, HOUR_SECONDS)).used
    }
  }
}
