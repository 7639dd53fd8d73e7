// The in-process (L1) store: an LRU bounded by bytes. toad-cache (used by rate-limit) bounds entries by
// count, but cache values range from a 200-byte negative entry to a multi-megabyte list, so a count says
// nothing about memory; this is a plain Map, whose insertion order doubles as the recency order (a key
// read while in the newer half keeps its place: lib/recency.ts).
//
// The same Map and byte budget hold derived representations (v1 renderings, compressed variants, parsed
// tables, the predictor's list memberships; see DerivedMemo): they are what a hit sends (or what answers
// and predictions are made from), so they compete with the entries for the same memory, and
// CACHE_MAX_BYTES bounds both together.
import { RecencyOrder, type Ranked } from '../lib/recency.js'
import type { CacheStore, Derived, DerivedMemo, StoreEntry } from './store.js'

export interface MemoryStoreOptions {
  /** Budget for the sum of key and value sizes, in bytes. */
  maxBytes: number
  /** Clock in ms; tests inject one to drive expiry. */
  now?: () => number
}

interface Slot extends Ranked {
  value: Buffer
  expiresAt: number
  size: number
  /** Tags live with the entry: they are dropped when it is evicted, expires or is deleted. */
  tags?: Set<string>
  /** Set on derived slots only: the derived body's ETag ('' for a parsed value). */
  etag?: string
  /** Set on parsed-value slots only. */
  parsed?: unknown
}

const EMPTY = Buffer.alloc(0)

// A GET reply's value sits in a Buffer 10 bytes longer than itself (the protocol's framing): not worth a copy.
const OWNED_SLACK_BYTES = 1024

/**
 * The bytes in a Buffer of their own. A Buffer that is a view into a larger one (a value sliced out of
 * a Redis reply, zlib output, Node's small-Buffer pool) keeps the whole of it alive while stored, so the
 * budget, which counts the view's length, would undercount what is held: an MGET reply's values are
 * slices of one 64 KiB read buffer, and 5 KB of gzip output sits in a 16 KiB one. Copying costs a
 * memcpy of the value once per write. The copy is made with allocUnsafeSlow: Buffer.copyBytesFrom (and
 * every pooled allocation) puts a value under half of Buffer.poolSize in a slab of Node's shared pool
 * again (under 4 KiB in an 8 KiB slab on Node 20 and 22, under 32 KiB in a 64 KiB one on Node 24), and
 * a store of 300-byte values then held about 24 times its budget in slabs on Node 20.
 */
function owned (value: Buffer): Buffer {
  if (value.buffer.byteLength - value.byteLength <= OWNED_SLACK_BYTES) return value
  const copy = Buffer.allocUnsafeSlow(value.length)
  value.copy(copy)
  return copy
}

// Per-slot overhead charged for an entry besides its key and value: the slot, its Map entry and the
// Buffer object (measured: 2,994 cone-sized entries, no tags, held 426 B of JS heap each with their
// ~60-byte keys). Without it a budget of small entries held twice its size.
export const SLOT_OVERHEAD = 360
// Derived keys start with a byte no cache key contains (keys.ts builds them from printable text).
const DERIVED_PREFIX = '\u0000d:'
// Per-slot overhead charged for a derived slot besides its key, body and ETag (the objects holding them).
const DERIVED_OVERHEAD = 64

export interface MemoryStore extends CacheStore {
  readonly derived: DerivedMemo
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
  const order = new RecencyOrder()
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
    // A derived slot is reachable only through `derived`.
    if (slot === undefined || slot.etag !== undefined) return undefined
    if (slot.expiresAt <= now()) {
      remove(key)
      return undefined
    }
    // The most recently used position: the end of the Map (lib/recency.ts).
    order.touch(slots, key, slot)
    return slot.value
  }

  /** The whole value, without moving it in the recency order (a look-ahead is not a use). */
  function peek (key: string): Buffer | undefined {
    const slot = slots.get(key)
    return slot === undefined || slot.etag !== undefined || slot.expiresAt <= now() ? undefined : slot.value
  }

  function makeRoom (size: number): void {
    while (bytes + size > maxBytes) {
      const oldest = slots.keys().next()
      /* c8 ignore next -- unreachable: size ≤ maxBytes, so the loop ends before the Map empties */
      if (oldest.done === true) break
      remove(oldest.value)
    }
  }

  function write (key: string, given: Buffer, ttlMs: number): void {
    const previous = remove(key)
    const value = owned(given)
    const size = Buffer.byteLength(key) + value.length + SLOT_OVERHEAD
    // A value that cannot fit would evict everything and still not fit; the old value is gone either way,
    // since keeping it would serve data the caller just replaced.
    if (ttlMs <= 0 || size > maxBytes) return
    makeRoom(size)
    // Tags survive an overwrite, as a Redis tag set does: the key still belongs to the same resource.
    const tags = previous?.tags
    slots.set(key, order.stamp({ value, expiresAt: now() + ttlMs, size, rank: 0, ...(tags === undefined ? {} : { tags }) }))
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

  function tag (tags: readonly string[], keys: readonly string[]): void {
    for (const key of keys) {
      const slot = slots.get(key)
      if (slot === undefined) continue
      slot.tags ??= new Set()
      for (const t of tags) {
        slot.tags.add(t)
        indexTag(t, key)
      }
    }
  }

  function getDerived (key: string): Slot | undefined {
    const k = DERIVED_PREFIX + key
    const slot = slots.get(k)
    if (slot?.etag === undefined) return undefined
    order.touch(slots, k, slot)
    return slot
  }

  function setDerived (key: string, slot: Omit<Slot, 'size' | 'expiresAt' | 'rank'>, charged: number): void {
    const k = DERIVED_PREFIX + key
    remove(k)
    const size = k.length + charged + DERIVED_OVERHEAD
    // One derived value may not take more than a quarter of the budget: it would evict too many entries.
    if (size > maxBytes / 4) return
    makeRoom(size)
    slots.set(k, order.stamp({ ...slot, expiresAt: Number.POSITIVE_INFINITY, size, rank: 0 }))
    bytes += size
  }

  const derived: DerivedMemo = {
    get (key) {
      const slot = getDerived(key)
      return slot === undefined || slot.parsed !== undefined ? undefined : { bytes: slot.value, etag: slot.etag as string }
    },
    set (key, value: Derived) {
      setDerived(key, { value: owned(value.bytes), etag: value.etag }, value.bytes.length + value.etag.length)
    },
    getValue (key) {
      return getDerived(key)?.parsed
    },
    peekValue (key) {
      return slots.get(DERIVED_PREFIX + key)?.parsed
    },
    setValue (key, value, size) {
      if (value === undefined) return
      setDerived(key, { value: EMPTY, etag: '', parsed: value }, size)
    }
  }

  return {
    derived,
    get bytes () { return bytes },
    get size () { return slots.size },
    async get (key) {
      return read(key)
    },
    async getMany (keys) {
      return keys.map(read)
    },
    getManyNow (keys) {
      return keys.map(read)
    },
    // Held in memory already: the whole value costs nothing more than its start.
    async peekMany (keys, _bytes) {
      return keys.map(peek)
    },
    async set (key, value, ttlMs) {
      write(key, value, ttlMs)
    },
    async setMany (entries: readonly StoreEntry[]) {
      for (const e of entries) {
        write(e.key, e.value, e.ttlMs)
        if (e.tags !== undefined && e.tags.length > 0) tag(e.tags, [e.key])
      }
    },
    async delete (keys) {
      for (const key of keys) remove(key)
    },
    // ttlMs is not needed here: a tag lives exactly as long as the entries carrying it. Tagging a key
    // that is not stored is a no-op (nothing to invalidate).
    async addTags (tags, keys, _ttlMs) {
      tag(tags, keys)
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
