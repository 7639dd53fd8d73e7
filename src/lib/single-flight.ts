// Single flight: concurrent callers asking for the same key share one in-flight promise, so N identical
// cache misses (or N token refreshes) cost one call. The entry is dropped when the promise settles, so a
// failure is never remembered: the next caller after a rejection starts a fresh call.

export interface SingleFlight<K, V> {
  /**
   * Runs `fn` unless a call for `key` is already in flight, in which case its promise is shared. With
   * `canJoin`, a call in flight it refuses is not shared: `fn` runs and takes its place for later callers.
   */
  run: (key: K, fn: () => Promise<V>, canJoin?: (current: Promise<V>) => boolean) => Promise<V>
  /** Whether a call for `key` is in flight (callers use it to count coalesced requests). */
  has: (key: K) => boolean
  /** Number of keys in flight. */
  readonly size: number
}

export function createSingleFlight<K, V> (): SingleFlight<K, V> {
  const inFlight = new Map<K, Promise<V>>()
  return {
    run (key, fn, canJoin) {
      const current = inFlight.get(key)
      if (current !== undefined && (canJoin?.(current) ?? true)) return current
      // Promise.resolve().then(fn) would defer the start by a tick; calling fn here keeps the start
      // synchronous while a synchronous throw still becomes a rejection shared by every joiner.
      let started: Promise<V>
      try {
        started = fn()
      } catch (err) {
        started = Promise.reject(err)
      }
      const shared = started.finally(() => {
        if (inFlight.get(key) === shared) inFlight.delete(key)
      })
      inFlight.set(key, shared)
      return shared
    },
    has (key) {
      return inFlight.has(key)
    },
    get size () {
      return inFlight.size
    }
  }
}
