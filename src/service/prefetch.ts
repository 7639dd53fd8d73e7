// Prediction for objects/ calls. A call costs one budget token whether it carries 1 id or
// UPSTREAM_MAX_IDS_PER_CALL, so the room a call leaves is filled with the ids most likely to be read
// soon: members of tables consumers read recently (lists, custom lists, VRA tables, cone hits; those
// whose members consumers have been reading first) that are not cached (or go stale within the horizon),
// then hot records (read more than once) that go stale within the horizon (refresh ahead). After a list
// read, members still uncached once PREFETCH_DELAY_MS has passed (no consumer call carried them) are
// fetched in calls of their own, only while the budget is above the background headroom.
//
// What is cached is known from what this replica read and stored (no store round trip while a call
// waits to go); another replica's fills may be fetched again, which costs bytes in a call that goes
// anyway, never a token. A prefetch call of its own goes through the cache, which skips what is stored.
//
// A list's membership (up to MAX_TRACKED_IDS ids) is derived from its table as the table's parse is:
// it is kept in L1's derived memo, charged to CACHE_MAX_BYTES, and goes when the LRU needs the room (a
// list then predicts nothing until it is read again). Without L1, lists predict nothing.
import type { Freshness } from '../cache/freshness.js'
import type { CacheEntry } from '../cache/cache.js'
import type { DerivedMemo } from '../cache/store.js'
import { RecencyOrder, type Ranked } from '../lib/recency.js'
import type { Metrics } from '../plugins/metrics.js'
import type { CallFiller, RecordText } from '../upstream/object-loader.js'

// How many ids and lists the predictor remembers; the oldest are forgotten first (list memberships also
// go when L1 needs their room).
const MAX_TRACKED_IDS = 50_000
const MAX_LISTS = 256
// Weight of the newest reply in the running record-size estimate.
const SIZE_WEIGHT = 0.2
// Heap a list's membership takes (measured on Node 20: 500,000 19-digit ids as Strings of bigints): an id
// in its `ids` (the string and its slot) and in its `members` Set (the entry; the string is shared).
const ID_BYTES = 48
const MEMBER_BYTES = 26
// Calls one prefetch run may make at most (a run stops earlier once nothing is left to fetch).
const MAX_CALLS_PER_RUN = 16

/** How an id the upstream does not know is cached (the service stores it so). */
export const MISSING_ENTRY = Buffer.from('null')

export type PredictionSource = 'list' | 'refresh'

interface Seen extends Ranked { storedAt: number, isMissing: boolean, reads: number, lastReadAt: number }
/** A table read recently; its membership is in the memo (membershipKey) while the memo keeps it. */
interface ListSource { etag: string, readAt: number, hits: number, isPrefetched: boolean, isTooLarge: boolean }
interface Membership { ids: readonly string[], members: ReadonlySet<string> }

/** Keyed by what it derives from: the table's bytes (ETag) and the read (its cache key names the row field). */
const membershipKey = (key: string, etag: string): string => `members:${etag}:${key}`
const membershipBytes = (m: Membership): number => m.ids.length * ID_BYTES + m.members.size * MEMBER_BYTES

export interface PrefetchOptions {
  now?: () => number
  /** L1's derived memo, where list memberships are kept (inside CACHE_MAX_BYTES); none without L1. */
  memo?: DerivedMemo
  metrics: Metrics
  /** Object records' freshness, and that of "no such id". */
  freshness: () => { record: Freshness, missing: Freshness }
  horizonMs: number
  delayMs: number
  minIds: number
  maxBytesPerCall: number
  recordBytes: number
  /** The loader's current id limit per call. */
  maxIds: () => number
  /** Ids waiting for a call or in flight. */
  isTaken: (id: string) => boolean
  /**
   * Stores predicted records as any record is stored (same tags and freshness), except those a write
   * invalidated after `mark` (taken when they were picked for a call).
   */
  store: (ids: string[], records: RecordText[], mark: number) => Promise<void>
  /** Holds the cross-replica fill locks of predicted ids while their call runs; returns what releases them. */
  holdFills?: (ids: string[]) => () => void
  /** The cache's invalidation-log position now (cache.mark). */
  mark: () => number
  /** Reads ids through the cache without a consumer (a prefetch call); the entries by id. */
  loadInBackground: (ids: string[]) => Promise<Array<CacheEntry | undefined>>
  /** Whether background work may spend a token now (service/priorities.ts). */
  isBackgroundAllowed: () => boolean
  onError?: (err: unknown) => void
}

export type Prefetch = ReturnType<typeof createPrefetch>

/** Moves a key to the newest end of a Map, forgetting the oldest beyond `max`. */
function touch<K, V> (map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key)
  map.set(key, value)
  while (map.size > max) map.delete(map.keys().next().value as K)
}

export function createPrefetch (opts: PrefetchOptions) {
  const now = opts.now ?? Date.now
  const seen = new Map<string, Seen>()
  const seenOrder = new RecencyOrder()
  // The ids of `seen` read at least twice (refresh-ahead candidates), so that a call's filler walks these
  // rather than all of `seen` (up to MAX_TRACKED_IDS, on every call). Ids `seen` forgot leave on the next walk.
  const hot = new Set<string>()
  const lists = new Map<string, ListSource>()
  /**
   * A list's membership, while the memo keeps it. Only a call it tops up uses it (moves it to the LRU's
   * recent end); counting what reads hit only looks (`isLook`), or every read would keep it there.
   */
  function membershipOf (key: string, list: ListSource, isLook = false): Membership | undefined {
    const mkey = membershipKey(key, list.etag)
    return (isLook ? opts.memo?.peekValue(mkey) : opts.memo?.getValue(mkey)) as Membership | undefined
  }
  // Predicted records not read yet: when they were stored and why they were picked.
  const predicted = new Map<string, { at: number, source: PredictionSource }>()
  // Picked for a call, not delivered yet: why, the write sequence and the invalidation mark at the pick.
  const picked = new Map<string, { source: PredictionSource, seq: number, mark: number }>()
  // Object records a write changed, by write sequence: a prediction in flight across it is not stored.
  const written = new Map<string, number>()
  let writeSeq = 0
  let recordBytes = opts.recordBytes
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let isClosed = false
  // A list read while a run was going: run again after it.
  let isRerunDue = false

  const isMissingFresh = (s: Seen, at: number) => at - s.storedAt < opts.freshness().missing.freshMs
  /** Whether a read now would find the id cached (fresh or stale but not dropped); by this replica's knowledge. */
  function isCached (s: Seen | undefined, at: number): boolean {
    if (s === undefined) return false
    if (s.isMissing) return isMissingFresh(s, at)
    const f = opts.freshness().record
    return at - s.storedAt < f.freshMs + Math.max(f.staleWhileRevalidateMs, f.staleIfErrorMs)
  }
  /** When a cached record goes stale; -Infinity for what is not cached (most wanted first). */
  function dueAt (s: Seen | undefined, at: number): number {
    return s === undefined || !isCached(s, at) ? -Infinity : s.storedAt + opts.freshness().record.freshMs
  }

  /** Candidates with their source and due time, most wanted first; `isTaken` and `limit` bound them. */
  function candidates (at: number, limit: number, isTaken: (id: string) => boolean, onlyUncached: boolean): Array<{ id: string, source: PredictionSource }> {
    const horizonEnd = at + opts.horizonMs
    const chosen = new Map<string, { source: PredictionSource, due: number, order: number }>()
    let order = 0
    const consider = (id: string, source: PredictionSource) => {
      if (chosen.has(id) || isTaken(id)) return
      const s = seen.get(id)
      // An id known to be missing is not asked for again while that answer is fresh.
      if (s?.isMissing === true && isMissingFresh(s, at)) return
      const due = dueAt(s, at)
      if (onlyUncached ? due !== -Infinity : due > horizonEnd) return
      chosen.set(id, { source, due, order: order++ })
    }
    // Tables whose members consumers have been reading come first (a call's room is bounded by bytes),
    // then the most recently read.
    // A prefetch call of its own (onlyUncached) takes only the members of lists (isPrefetched).
    const recent = [...lists.entries()]
      .filter(([, l]) => at - l.readAt <= opts.horizonMs && (!onlyUncached || l.isPrefetched))
      .sort(([, a], [, b]) => b.hits - a.hits || b.readAt - a.readAt)
    for (const [key, list] of recent) for (const id of membershipOf(key, list)?.ids ?? []) consider(id, 'list')
    if (!onlyUncached) {
      for (const id of hot) {
        const s = seen.get(id)
        if (s === undefined || s.reads < 2) hot.delete(id)
        else if (!s.isMissing && at - s.lastReadAt <= opts.horizonMs) consider(id, 'refresh')
      }
    }
    return [...chosen.entries()]
      .sort(([, a], [, b]) => a.due - b.due || a.order - b.order)
      .slice(0, limit)
      .map(([id, c]) => ({ id, source: c.source }))
  }

  function addHot (id: string): void {
    hot.add(id)
    // Without calls (whose walk drops forgotten ids), keep the set within what `seen` can hold.
    if (hot.size > MAX_TRACKED_IDS) for (const h of hot) if (!seen.has(h)) hot.delete(h)
  }

  /**
   * Records what this replica knows of an id (updated in place: every cache hit comes here) and moves
   * it towards the newest end of `seen` (lib/recency.ts); the oldest ids are forgotten beyond the limit.
   */
  function see (id: string, storedAt: number, isMissing: boolean, readAt?: number): Seen {
    const s = seen.get(id)
    if (s !== undefined) {
      s.storedAt = storedAt
      s.isMissing = isMissing
      if (readAt !== undefined) {
        s.reads++
        s.lastReadAt = readAt
      }
      seenOrder.touch(seen, id, s)
      return s
    }
    const fresh = seenOrder.stamp({ storedAt, isMissing, reads: readAt === undefined ? 0 : 1, lastReadAt: readAt ?? 0, rank: 0 })
    touch(seen, id, fresh, MAX_TRACKED_IDS)
    return fresh
  }

  function remember (ids: readonly string[], isMissing: (k: number) => boolean, storedAt: (k: number) => number): void {
    ids.forEach((id, k) => { see(id, storedAt(k), isMissing(k)) })
  }

  function notePredicted (ids: readonly string[], source: (id: string) => PredictionSource): void {
    const at = now()
    for (const id of ids) {
      const s = source(id)
      opts.metrics.predicted.inc({ source: s })
      touch(predicted, id, { at, source: s }, MAX_TRACKED_IDS)
    }
  }

  async function runBackground (): Promise<void> {
    const maxIds = opts.maxIds()
    const minIds = Math.min(opts.minIds, maxIds)
    let progress = true
    for (let calls = 0; progress && calls < MAX_CALLS_PER_RUN && opts.isBackgroundAllowed(); calls++) {
      if (isClosed) return
      const room = Math.max(1, Math.min(maxIds, Math.floor(opts.maxBytesPerCall / recordBytes)))
      const ids = candidates(now(), room, opts.isTaken, true).map((c) => c.id)
      if (ids.length < minIds) return
      const startedAt = now()
      const entries = await opts.loadInBackground(ids)
      const got = ids.flatMap((id, k) => { const e = entries[k]; return e === undefined ? [] : [{ id, e }] })
      remember(got.map((g) => g.id), (k) => (got[k] as { e: CacheEntry }).e.body.equals(MISSING_ENTRY), (k) => (got[k] as { e: CacheEntry }).e.storedAt)
      // Entries another replica had stored already were not fetched here: not predictions of ours.
      notePredicted(got.filter((g) => g.e.storedAt >= startedAt && !predicted.has(g.id)).map((g) => g.id), () => 'list')
      progress = got.length > 0
    }
  }

  function schedule (): void {
    if (running !== undefined) isRerunDue = true
    if (timer !== undefined || running !== undefined || isClosed) return
    timer = setTimeout(() => {
      timer = undefined
      running = runBackground()
        .catch((err: unknown) => { opts.onError?.(err) })
        .finally(() => {
          running = undefined
          if (isRerunDue) {
            isRerunDue = false
            schedule()
          }
        })
    }, opts.delayMs)
    timer.unref()
  }

  const filler: CallFiller = {
    pick (room, requested, isTaken) {
      const byBytes = Math.floor(opts.maxBytesPerCall / recordBytes) - requested
      const limit = Math.min(room, byBytes)
      if (limit <= 0) return []
      const chosen = candidates(now(), limit, isTaken, false)
      const mark = opts.mark()
      for (const c of chosen) touch(picked, c.id, { source: c.source, seq: writeSeq, mark }, MAX_TRACKED_IDS)
      return chosen.map((c) => c.id)
    },
    deliver (ids, records) {
      const keep: number[] = []
      const sources = new Map<string, PredictionSource>()
      // A write on any replica after the earliest pick (the invalidation log hears the others') keeps
      // its record out of the store.
      let mark = Infinity
      ids.forEach((id, k) => {
        const p = picked.get(id)
        picked.delete(id)
        if (p !== undefined && (written.get(id) ?? 0) > p.seq) return
        mark = Math.min(mark, p?.mark ?? Infinity)
        sources.set(id, p?.source ?? 'list')
        keep.push(k)
      })
      const keptIds = keep.map((k) => ids[k] as string)
      const keptRecords = keep.map((k) => records[k] ?? null)
      const at = now()
      remember(keptIds, (k) => keptRecords[k] === null, () => at)
      notePredicted(keptIds, (id) => sources.get(id) ?? 'list')
      return opts.store(keptIds, keptRecords, Number.isFinite(mark) ? mark : opts.mark()).catch((err: unknown) => { opts.onError?.(err) })
    },
    ...(opts.holdFills === undefined ? {} : { hold: opts.holdFills }),
    observe (ids, bytes) {
      if (ids > 0) recordBytes = Math.max(1, Math.round((1 - SIZE_WEIGHT) * recordBytes + SIZE_WEIGHT * (bytes / ids)))
    }
  }

  return {
    filler,

    /** A consumer read these ids and got these entries: what is cached, what is hot, which predictions hit. */
    noteRead (ids: readonly string[], entries: ReadonlyArray<CacheEntry | undefined>): void {
      const at = now()
      const freshMs = opts.freshness().record.freshMs
      // Which tables name what consumers read: those rank first as prediction sources.
      for (const [key, list] of lists) {
        if (at - list.readAt > opts.horizonMs) continue
        const members = membershipOf(key, list, true)?.members
        if (members !== undefined) for (const id of ids) if (members.has(id)) list.hits++
      }
      ids.forEach((id, k) => {
        const entry = entries[k]
        if (entry !== undefined && see(id, entry.storedAt, entry.body.equals(MISSING_ENTRY), at).reads === 2) addHot(id)
        const p = predicted.get(id)
        if (p === undefined) return
        predicted.delete(id)
        if (at - p.at < freshMs) opts.metrics.predictedRead.inc({ source: p.source })
      })
    },

    /**
     * A consumer read a table naming objects: its members become prediction sources (parsed once per
     * version). Only a list's (`isPrefetched`) are also fetched in calls of their own; the others only
     * ride along calls that go anyway.
     */
    noteList (key: string, etag: string, members: () => string[], isPrefetched = true): void {
      const memo = opts.memo
      if (memo === undefined) return
      const known = lists.get(key)
      // A version whose membership the memo would not take (over a quarter of L1) is not parsed again.
      let isTooLarge = known?.etag === etag && known.isTooLarge
      const mkey = membershipKey(key, etag)
      if (!isTooLarge && memo.getValue(mkey) === undefined) {
        const ids = members().slice(0, MAX_TRACKED_IDS)
        const membership: Membership = { ids, members: new Set(ids) }
        memo.setValue(mkey, membership, membershipBytes(membership))
        isTooLarge = memo.peekValue(mkey) === undefined
      }
      touch(lists, key, { etag, readAt: now(), hits: known?.hits ?? 0, isPrefetched, isTooLarge }, MAX_LISTS)
      if (isPrefetched && !isTooLarge) schedule()
    },

    /** A write changed this object's record: a prediction of it in flight is not stored. */
    noteWrite (id: string): void {
      writeSeq++
      seen.delete(id)
      hot.delete(id)
      touch(written, id, writeSeq, MAX_TRACKED_IDS)
    },

    /** Heap held by the memberships of the lists remembered (estimated: ID_BYTES, MEMBER_BYTES; all in the memo). */
    get listBytes (): number {
      let bytes = 0
      for (const [key, list] of lists) {
        const membership = membershipOf(key, list, true)
        if (membership !== undefined) bytes += membershipBytes(membership)
      }
      return bytes
    },

    /** The current record-size estimate, in bytes. */
    get recordBytes (): number { return recordBytes },

    /**
     * Stops prefetching (shutdown). A prefetch call in flight is not waited for: the upstream client
     * abandons its calls on close, and a prefetch serves nobody waiting.
     */
    close (): void {
      isClosed = true
      clearTimeout(timer)
      timer = undefined
    },

    /** Waits for the pending prefetch to run and finish (tests). */
    async settle (): Promise<void> {
      const isBusy = () => timer !== undefined || running !== undefined
      while (isBusy()) {
        if (running !== undefined) await running
        else await new Promise((resolve) => setTimeout(resolve, Math.max(1, opts.delayMs / 4)))
      }
    }
  }
}
