// The in-process (L1) store: an LRU bounded by bytes. toad-cache (used by rate-limit) bounds entries by
// count, but cache values range from a 200-byte negative entry to a multi-megabyte list, so a count says
// nothing about memory; this is a plain Map, whose insertion order doubles as the recency order.
import type { CacheStore, StoreEntry } from './store.js'

export interface MemoryStoreOptions {
  /** Budget for the sum of key and value sizes, in bytes. */
  maxBytes: number
  /** Clock in ms; tests inject one to drive expiry. */
  now?: () => number
}

interface Slot {
  value: Buffer
  expiresAt: number
  size: number
  /** Tags live with the entry: they are dropped when it is evicted, expires or is deleted. */
  tags?: Set<string>
}

export interface MemoryStore extends CacheStore {
  /** Bytes held (keys and values). */
  readonly bytes: number
  /** Entries held, including expired ones not yet swept. */
  readonly size: number
}

export function createMemoryStore (opts: MemoryStoreOptions): MemoryStore {
  const maxBytes = opts.maxBytes
  const now = opts.now ?? Date.now
  const slots = new Map<string, Slot>()
  const tagIndex = new Map<string, Set<string>>()
  let bytes = 0

  function remove (key: string): Slot | undefined {
    const slot = slots.get(key)
    if (slot === undefined) return undefined
    slots.delete(key)
    bytes -= slot.size
    for (const tag of slot.tags ?? []) {
      const keys = tagIndex.get(tag)
      keys?.delete(key)
      if (keys?.size === 0) tagIndex.delete(tag)
    }
    return slot
  }

  function read (key: string): Buffer | undefined {
    const slot = slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= now()) {
      remove(key)
      return undefined
    }
    // Re-inserting moves the key to the end of the Map: the most recently used position.
    slots.delete(key)
    slots.set(key, slot)
    return slot.value
  }

  function write (key: string, value: Buffer, ttlMs: number): void {
    const previous = remove(key)
    const size = Buffer.byteLength(key) + value.length
    // A value that cannot fit would evict everything and still not fit; the old value is gone either way,
    // since keeping it would serve data the caller just replaced.
    if (ttlMs <= 0 || size > maxBytes) return
    while (bytes + size > maxBytes) {
      const oldest = slots.keys().next()
      /* c8 ignore next -- unreachable: size ≤ maxBytes, so the loop ends before the Map empties */
      if (oldest.done === true) break
      remove(oldest.value)
    }
    // Tags survive an overwrite, as a Redis tag set does: the key still belongs to the same resource.
    const tags = previous?.tags
    slots.set(key, { value, expiresAt: now() + ttlMs, size, ...(tags === undefined ? {} : { tags }) })
    for (const tag of tags ?? []) indexTag(tag, key)
    bytes += size
  }

  function indexTag (tag: string, key: string): void {
    let keys = tagIndex.get(tag)
    if (keys === undefined) {
      keys = new Set()
      tagIndex.set(tag, keys)
    }
    keys.add(key)
  }

  return {
    get bytes () { return bytes },
    get size () { return slots.size },
    async get (key) {
      return read(key)
    },
    async getMany (keys) {
      return keys.map(read)
    },
    async set (key, value, ttlMs) {
      write(key, value, ttlMs)
    },
    async setMany (entries: readonly StoreEntry[]) {
      for (const e of entries) write(e.key, e.value, e.ttlMs)
    },
    async delete (keys) {
      for (const key of keys) remove(key)
    },
    // ttlMs is not needed here: a tag lives exactly as long as the entries carrying it. Tagging a key
    // that is not stored is a no-op (nothing to invalidate).
    async addTags (tags, keys, _ttlMs) {
      for (const key of keys) {
        const slot = slots.get(key)
        if (slot === undefined) continue
        slot.tags ??= new Set()
        for (const tag of tags) {
          slot.tags.add(tag)
          indexTag(tag, key)
        }
      }
    },
    async invalidateTags (tags) {
      let deleted = 0
      const at = now()
      for (const tag of tags) {
        for (const key of [...tagIndex.get(tag) ?? []]) {
          const slot = remove(key)
          if (slot !== undefined && slot.expiresAt > at) deleted++
        }
      }
      return deleted
    }
  }
}
