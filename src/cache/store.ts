// The cache store contract: one small async interface over Buffers, implemented by the in-process LRU
// (memory-store.ts) and by Redis (redis-store.ts), and exercised by one shared test suite
// (test/cache/store-contract.ts). Values are opaque bytes; cache.ts owns the entry format.
//
// Stores never throw for a backend failure: a read that fails is a miss and a write that fails is a
// no-op (the Redis store reports it through its onError callback). The cache must degrade to "slower",
// never to "down".

export interface StoreEntry {
  key: string
  value: Buffer
  /** Time to live in ms; a value ≤ 0 stores nothing. */
  ttlMs: number
  /** Tags to record for this key, as addTags(tags, [key], ttlMs) would, in the same write. */
  tags?: readonly string[]
}

/**
 * Representations derived from a stored body (a v1 rendering, a compressed variant), keyed by what
 * they derive from (a content ETag plus the kind), so they never go stale. The memory store keeps them
 * in its own LRU and byte budget (CACHE_MAX_BYTES), so they cannot grow memory beyond it.
 */
export interface DerivedMemo {
  get: (key: string) => Derived | undefined
  /** Kept unless larger than the memo allows (a quarter of the budget); evicts the least recently used. */
  set: (key: string, value: Derived) => void
  /** A value parsed from a stored body (a table), by what it derives from; undefined when not kept. */
  getValue: (key: string) => unknown
  /** The same value without moving it in the recency order: a look that is not a use. */
  peekValue: (key: string) => unknown
  /** Keeps a parsed value charged `size` bytes: an estimate, since heap objects cannot be measured. */
  setValue: (key: string, value: unknown, size: number) => void
}

/** A derived body and its own strong ETag. */
export interface Derived { bytes: Buffer, etag: string }

export interface CacheStore {
  /** The value, or undefined when absent, expired or unreadable. */
  get: (key: string) => Promise<Buffer | undefined>
  /** Values in the order of `keys`. */
  getMany: (keys: readonly string[]) => Promise<Array<Buffer | undefined>>
  /**
   * The start of each value, at least its first `bytes` (all of it when shorter; more is allowed), in the
   * order of `keys`, without counting as a use: enough to read an entry's header, not its body.
   */
  peekMany: (keys: readonly string[], bytes: number) => Promise<Array<Buffer | undefined>>
  set: (key: string, value: Buffer, ttlMs: number) => Promise<void>
  /** Stores every entry and records its tags; the Redis store makes this one round trip per slice of a batch. */
  setMany: (entries: readonly StoreEntry[]) => Promise<void>
  delete: (keys: readonly string[]) => Promise<void>
  /**
   * Records that each of `keys` carries each of `tags`, so invalidateTags can find them. Tag the keys
   * after storing them; `ttlMs` bounds how long the tag remembers them (use the entries' TTL).
   */
  addTags: (tags: readonly string[], keys: readonly string[], ttlMs: number) => Promise<void>
  /**
   * Deletes every key carrying any of `tags`; resolves with how many stored values were deleted, or
   * undefined when the store could not be reached (Redis failing or skipped): nothing was deleted.
   */
  invalidateTags: (tags: readonly string[]) => Promise<number | undefined>
  /** In-process stores only: derived representations within the same byte budget. */
  readonly derived?: DerivedMemo
  /** In-process stores only: getMany without a promise, for the cache's hit path. */
  readonly getManyNow?: (keys: readonly string[]) => Array<Buffer | undefined>
}
