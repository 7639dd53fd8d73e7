// Recency order kept in a Map's insertion order (oldest first), for LRU eviction from the oldest end.
// Moving a key to the newest end takes a delete and a set, and V8 compacts the holes deletes leave by
// allocating a new backing table for the Map. Done on every cache hit, those tables outlived the young
// generation and brought a major GC about every second under load (the S1 benchmark: 6 in 5 s, p99
// 27-37 ms; 1-2 and 9-16 ms without the moves). So a key already in the newer half of the order stays
// where it is. Eviction is then approximately LRU: a key read while in the newer half may later be
// evicted as if last read when it was last moved, at most half the Map's size in insertions earlier.

/** A value whose place in the order is known by the stamp it got when last moved or inserted. */
export interface Ranked { rank: number }

export class RecencyOrder {
  private last = 0

  /** Stamps a value just set into its Map (a new key goes to the newest end). */
  stamp<V extends Ranked> (value: V): V {
    value.rank = ++this.last
    return value
  }

  /** Moves `key` to the newest end of `map`, unless it is already in the newer half. */
  touch<K, V extends Ranked> (map: Map<K, V>, key: K, value: V): void {
    // At most `last - rank` keys were set after this one: fewer than half the Map's keys are newer.
    if (this.last - value.rank < map.size / 2) return
    map.delete(key)
    map.set(key, value)
    value.rank = ++this.last
  }
}
