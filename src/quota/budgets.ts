// Daily object units: an object read costs one unit per requested id (cached or not), charged before
// the request is served, per UTC calendar day. A batch that would pass the budget is refused whole.
import type { Consumer } from '../consumers/schema.js'
import type { WindowCharge, WindowStore } from './window-store.js'

export const DAY_SECONDS = 86400

export type DailyUnits = ReturnType<typeof createDailyUnits>

export function createDailyUnits (store: WindowStore, keyPrefix: string) {
  const keyOf = (consumer: Consumer): string => `${keyPrefix}quota:units:${consumer.id}`
  return {
    keyOf,
    charge (consumer: Consumer, units: number): Promise<WindowCharge> {
      return store.charge(keyOf(consumer), units, consumer.daily_objects, DAY_SECONDS)
    },
    /** Gives back units charged today (a request the gateway could not serve). */
    refund (consumer: Consumer, units: number): Promise<WindowCharge> {
      return store.charge(keyOf(consumer), -units, consumer.daily_objects, DAY_SECONDS)
    },
    async used (consumer: Consumer): Promise<number> {
      return (await store.charge(keyOf(consumer), 0, consumer.daily_objects, DAY_SECONDS)).used
    }
  }
}
