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
}

export interface CacheStore {
  /** The value, or undefined when absent, expired or unreadable. */
  get: (key: string) => Promise<Buffer | undefined>
  /** Values in the order of `keys`. */
  getMany: (keys: readonly string[]) => Promise<Array<Buffer | undefined>>
  set: (key: string, value: Buffer, ttlMs: number) => Promise<void>
  setMany: (entries: readonly StoreEntry[]) => Promise<void>
  delete: (keys: readonly string[]) => Promise<void>
  /**
   * Records that each of `keys` carries each of `tags`, so invalidateTags can find them. Tag the keys
   * after storing them; `ttlMs` bounds how long the tag remembers them (use the entries' TTL).
   */
  addTags: (tags: readonly string[], keys: readonly string[], ttlMs: number) => Promise<void>
  /** Deletes every key carrying any of `tags`; resolves with how many stored values were deleted. */
  invalidateTags: (tags: readonly string[]) => Promise<number>
}
