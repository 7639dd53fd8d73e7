// The two-tier cache in front of the upstream: L1 (in-process LRU) → L2 (Redis) → loader. Fresh entries
// are HITs; stale ones are served while one background refresh runs (stale-while-revalidate), or only
// when the loader fails with an upstream error (stale-if-error). Identical concurrent misses share one
// loader call in this process (single flight) and, with a Redis lock, across replicas. Errors are never
// stored: a loader that throws leaves the stores as they were.
//
// The upstream budget sets priorities (the budget policy, set by the service): a background refresh
// runs only while background work may spend a token; while it may not (the budget is low), entries
// past their freshness answer without a load, up to the maximum staleness, so the tokens left go to
// misses nothing cached can answer; a load refused by the budget is answered by any entry within the
// maximum staleness. Nothing older than the maximum staleness is ever served stale.
import { createResendQueue } from '../lib/resend-queue.js'
import { createSingleFlight, type SingleFlight } from '../lib/single-flight.js'
import type { CacheStore, StoreEntry } from './store.js'
import { createEntry, decodeEntry as decodeBytes, encodeSharing, type CacheEntry } from './entry.js'
import { DEFAULT_FRESHNESS, storeTtlMs, type Freshness, type FreshnessTable, type RouteId } from './freshness.js'
import { createFillLock, type Acquired, type FillLockOptions } from './lock.js'
import type { InvalidationBus } from './invalidation-bus.js'
import { createInvalidationLog } from './invalidation-log.js'

export type { CacheEntry } from './entry.js'
export type { Freshness } from './freshness.js'

export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'BYPASS'
/**
 * Why a STALE answer is not the ordinary stale-while-revalidate one: `budget-low`, the budget is low or
 * spent, so nothing refreshes it now; `upstream-error`, the load failed and stale-if-error answered.
 */
export type StaleReason = 'budget-low' | 'upstream-error'

/** What a read served, as an answer's cache headers (X-Cache, Age, X-Cache-Reason) say it. */
export interface ReadOutcome { status: CacheStatus, ageS: number, reason?: StaleReason }

// An answer made of several reads is as good as its worst part: a STALE one makes it STALE, a load
// makes a HIT a MISS, and a BYPASS (nothing was looked up) stays one unless stale entries answered.
const STATUS_RANK: Record<CacheStatus, number> = { HIT: 0, MISS: 1, BYPASS: 2, STALE: 3 }

/** The status of an answer with parts of status `a` and `b`. */
export function combinedStatus (a: CacheStatus, b: CacheStatus): CacheStatus {
  return STATUS_RANK[b] > STATUS_RANK[a] ? b : a
}

/** Why an answer with STALE parts is STALE: budget-low (nothing refreshes it now) over upstream-error. */
export function combinedReason (a: StaleReason | undefined, b: StaleReason | undefined): StaleReason | undefined {
  return a === 'budget-low' || b === 'budget-low' ? 'budget-low' : a ?? b
}

/** What an answer made of several reads served (as fetchMany's answer of its keys): the worst status, and the oldest part's age. */
export function combinedOutcome (reads: readonly ReadOutcome[]): ReadOutcome {
  let status: CacheStatus = 'HIT'
  let reason: StaleReason | undefined
  let ageS = 0
  for (const read of reads) {
    status = combinedStatus(status, read.status)
    if (read.status === 'STALE') reason = combinedReason(reason, read.reason)
    ageS = Math.max(ageS, read.ageS)
  }
  return { status, ageS, ...(status === 'STALE' && reason !== undefined ? { reason } : {}) }
}
export type CoalesceKind = 'single-flight' | 'lock-wait'

export interface LoaderResult {
  body: Buffer
  contentType?: string
  status?: number
  /** Tags a later write invalidates this entry by (src/cache/tags.ts). */
  tags?: string[]
}

export interface FetchOptions {
  /** Route id for metrics (the onResult label); defaults to 'other'. */
  route?: string
  /** Skip the cached value: run the loader, store and answer its result with status BYPASS. */
  bypass?: boolean
  /** Whether a loader error may be answered with a stale entry (default: GW_UPSTREAM_* errors). */
  isStaleUsable?: (err: unknown) => boolean
  /**
   * The tags the loader's entry will carry, when known before the load: a read or load in flight since
   * before a write of any of them is not joined (its answer may predate the write); a new one starts.
   */
  tags?: readonly string[]
}

export interface FetchResult { entry: CacheEntry, status: CacheStatus, ageS: number, reason?: StaleReason }

export interface ManyOptions {
  /** Route id for metrics. */
  route: string
  /** Skip cached values: load every key, store and answer with status BYPASS. */
  bypass?: boolean
  /** The freshness of one stored entry (e.g. a shorter life for a "does not exist" marker). */
  freshnessOf: (entry: CacheEntry) => Freshness
  /** Whether a loader error may be answered with stale entries (default: GW_UPSTREAM_* errors). */
  isStaleUsable?: (err: unknown) => boolean
  /**
   * false for a bulk read (a stream passing thousands of records once): entries it loads or finds in L2
   * stay out of L1, so it does not push out the hot entries other reads keep there. L1 still answers what
   * it holds, and takes the refresh of an entry it holds. Ignored without L2, where L1 is the only tier.
   * Default true.
   */
  fillL1?: boolean
}

/** Entries in the order of the keys asked for, all present; the batch's status and oldest age. */
export interface ManyResult { entries: CacheEntry[], status: CacheStatus, ageS: number, reason?: StaleReason }

/** Loads the given keys; one item per key, in the same order. */
export type ManyLoader = (keys: string[]) => Promise<PutItem[]>
/** Takes over a write that need not be waited for (it is kept until it settles; see drain). */
type DeferL2 = (write: Promise<unknown>) => void
/**
 * How putEntries stores: `freshnessOf` keeps entries a route may serve stale up to the maximum
 * staleness; `deferL2` takes over the L2 write; not `isFilling` (a bulk read, see ManyOptions.fillL1).
 */
interface StoreHow { freshnessOf?: (entry: CacheEntry) => Freshness, deferL2?: DeferL2, isFilling?: boolean }

export interface PutItem {
  key: string
  body: Buffer
  ttlMs: number
  tags?: string[]
  contentType?: string
  status?: number
  /** Where the body's integer literals beyond 2^53 are, when the loader looked (see CacheEntry). */
  bigInts?: readonly number[]
}

export interface CacheOptions {
  l1?: CacheStore
  l2?: CacheStore
  /** Clock in ms; tests inject one to age entries. */
  now?: () => number
  /** Every fetch outcome, labelled by route (metrics). */
  onResult?: (status: CacheStatus, route: string) => void
  /** A request answered by joining another's upstream call (metrics). */
  onCoalesced?: (kind: CoalesceKind) => void
  /** A background refresh failed; the stale entry stays in place. */
  onRefreshError?: (err: unknown, key: string) => void
  /** A write's invalidation did not reach Redis and is kept, was sent after all, or was dropped (logs). */
  onUnsentInvalidation?: (event: 'kept' | 'sent' | 'dropped', tags: number) => void
  freshness?: FreshnessTable
  /** Cross-replica fill lock; used only together with an L2 store. */
  lock?: FillLockOptions
  /** Carries invalidations to the other replicas' L1. */
  bus?: InvalidationBus
  /**
   * The oldest an entry may be (ms since it was loaded) when served stale: it caps every route's stale
   * windows, entries are kept this long, and while background work may not spend they answer up to it
   * without a load. Undefined: the routes' windows alone, and no budget-low answers.
   */
  maxStaleMs?: number
  /**
   * Whether background work may spend an upstream token now; false means the budget is low. `claim`:
   * a yes will be spent (a look-ahead only peeks). `overdue`: how far past its freshness the entry is, in
   * ms (older entries may be refreshed first). Default: always.
   */
  backgroundAllowed?: (claim: boolean, overdue: number) => boolean
}

/** The upstream budget's say in the cache's decisions (see CacheOptions). */
export interface BudgetPolicy {
  maxStaleMs?: number
  backgroundAllowed: (claim: boolean, overdue: number) => boolean
}

export type Cache = ReturnType<typeof createCache>

const DEFAULT_ROUTE = 'other'

/** A fetch's loader, carrying its FetchOptions.tags down to the load it shares (loadShared). */
interface Loader {
  (): Promise<LoaderResult>
  readonly tags?: readonly string[]
}

/**
 * One read's outcome, shared by every request that joined it. `isShareRefused`: a stale entry answered
 * because the consumer whose request made the load had spent its upstream share: not an answer for the
 * others, who read for themselves.
 */
interface Answer { entry: CacheEntry, status: CacheStatus, reason?: StaleReason, isShareRefused?: boolean }

/**
 * A refusal by the upstream budget: the global one (spent, or paused after an upstream 429), or the
 * consumer's share of it (GW_QUOTA_EXHAUSTED is thrown inside a load only by the share's take).
 */
function isBudgetError (err: unknown): boolean {
  return isShareRefusal(err) || codeOf(err) === 'GW_UPSTREAM_BUDGET'
}

/** An error's `code`, when it has one. */
function codeOf (err: unknown): unknown {
  return typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined
}

/** Whether a route's entries are ever served stale: a "does not exist" marker, with no stale window, is not. */
function servesStale (f: Freshness): boolean {
  return f.staleWhileRevalidateMs > 0 || f.staleIfErrorMs > 0
}

// How far ahead of this replica's clock an entry's storedAt may be and still count as stored now: the
// clocks of replicas sharing L2 differ a little. Further ahead, the clock has stepped back since the entry
// was stored (NTP step, VM resume), and how old it is cannot be told.
const CLOCK_SKEW_MS = 5000

/**
 * An entry's age at `at`, in ms; a little ahead of the clock, as new. One stored further ahead than
 * replicas' clocks differ has an age that cannot be told: Infinity, past every window, so it is never
 * served (neither fresh, nor stale within any window, nor under a low budget) and is loaded again like an
 * absent one. Read as fresh, it answered HIT for as long as the clock had stepped back; read as just past
 * its freshness, STALE past the maximum staleness.
 */
function ageOf (entry: CacheEntry, at: number): number {
  const age = at - entry.storedAt
  return age < -CLOCK_SKEW_MS ? Infinity : Math.max(0, age)
}

/** What a cached entry answers: a hit, a stale answer (refreshed in the background or not), or nothing without a load. */
type Plan = { kind: 'hit' } | { kind: 'stale', refresh: boolean, reason?: StaleReason } | { kind: 'load' }
const HIT_PLAN: Plan = { kind: 'hit' }
const LOAD_PLAN: Plan = { kind: 'load' }

/** A refusal by the consumer's own upstream share (thrown inside a load only by the share's take). */
function isShareRefusal (err: unknown): boolean {
  return codeOf(err) === 'GW_QUOTA_EXHAUSTED'
}

/**
 * Default stale-if-error policy: only upstream failures (error, timeout, auth, budget, the consumer's
 * upstream share) may be papered over.
 */
export function isUpstreamError (err: unknown): boolean {
  const code = codeOf(err)
  return isShareRefusal(err) || (typeof code === 'string' && code.startsWith('GW_UPSTREAM'))
}

// The memory store hands back the very Buffer it holds, so an L1 hit can reuse the entry decoded the
// first time instead of decoding the header again on every request.
const decoded = new WeakMap<Buffer, CacheEntry | undefined>()

function decodeEntry (raw: Buffer): CacheEntry | undefined {
  if (decoded.has(raw)) return decoded.get(raw)
  const entry = decodeBytes(raw)
  decoded.set(raw, entry)
  return entry
}

// Bytes of a stored value a look-ahead reads (peekEntries): the header (about 140 bytes for a record
// with one tag) and the start of the body, enough to tell a "does not exist" marker from a record.
const PEEK_BYTES = 512
// A fillShared claim of a key holdFills holds: not taken, not busy, so this replica loads it.
const HELD_HERE: Acquired = { isAcquired: false, isBusy: false }

export function createCache (opts: CacheOptions = {}) {
  const { l1, l2 } = opts
  const now = opts.now ?? Date.now
  const table = opts.freshness ?? DEFAULT_FRESHNESS
  const lock = opts.lock !== undefined && l2 !== undefined ? createFillLock(opts.lock) : undefined
  // Keys whose fill locks holdFills holds for a call of this replica.
  const heldHere = new Set<string>()
  // What L2 and the other replicas have not heard of a write: sent again until Redis takes it.
  const unsent = createResendQueue<string, true>({
    send: async (entries) => {
      const tags = entries.map(([tag]) => tag)
      const [deleted, isPublished] = await Promise.all([l2 === undefined ? 0 : l2.invalidateTags(tags), opts.bus?.publish(tags) ?? true])
      return deleted !== undefined && isPublished ? tags : []
    },
    ...(opts.onUnsentInvalidation === undefined ? {} : { onChange: opts.onUnsentInvalidation })
  })
  const reads = createSingleFlight<string, Answer>()
  const loads = createSingleFlight<string, CacheEntry | undefined>()
  // Where the invalidation log stood as each read and load in flight started.
  const flightMarks = new WeakMap<Promise<unknown>, number>()
  // Background refreshes, and the L2 writes (with the fill locks released after them) that an answer
  // did not wait for: each kept in its set until it settles (drain, settleWrites).
  const background = new Set<Promise<void>>()
  const deferred = new Set<Promise<void>>()
  function keep (set: Set<Promise<void>>, work: Promise<unknown>, onError: (err: unknown) => void = () => {}): void {
    const tracked: Promise<void> = work.then(() => {}, onError).finally(() => { set.delete(tracked) })
    set.add(tracked)
  }
  const deferWrite = (write: Promise<unknown>): void => { keep(deferred, write) }
  const invalidations = createInvalidationLog()
  const policy: BudgetPolicy = {
    ...(opts.maxStaleMs === undefined ? {} : { maxStaleMs: opts.maxStaleMs }),
    backgroundAllowed: opts.backgroundAllowed ?? (() => true)
  }

  /** How long the stores keep an entry of a route: its own lifetime, or up to the maximum staleness. */
  function retainMs (f: Freshness, ttlMs: number): number {
    return policy.maxStaleMs === undefined || !servesStale(f) ? ttlMs : Math.max(ttlMs, policy.maxStaleMs)
  }

  /**
   * What an entry of this age answers. Fresh: a hit. Within stale-while-revalidate: stale, refreshed in
   * the background only while background work may spend. Older, while it may not (the budget is low):
   * stale up to the maximum staleness, without a load. Otherwise (or from the maximum staleness on): a
   * foreground load.
   */
  function plan (age: number, f: Freshness, allowed: () => boolean = () => policy.backgroundAllowed(true, overdue(age, f))): Plan {
    if (age < f.freshMs) return HIT_PLAN
    if (!servesStale(f) || age >= (policy.maxStaleMs ?? Infinity)) return LOAD_PLAN
    if (age < f.freshMs + f.staleWhileRevalidateMs) {
      return allowed() ? { kind: 'stale', refresh: true } : { kind: 'stale', refresh: false, reason: 'budget-low' }
    }
    if (policy.maxStaleMs !== undefined && !allowed()) return { kind: 'stale', refresh: false, reason: 'budget-low' }
    return LOAD_PLAN
  }

  /** How far past its freshness an entry of this age is, in ms (0 while fresh). */
  function overdue (age: number, f: Freshness): number {
    return Math.max(0, age - f.freshMs)
  }

  /**
   * One budget answer for a whole batch (its loads go out in one call), asked once when first needed,
   * for the most overdue of its entries.
   */
  function batchAllowance (claim: boolean, found: ReadonlyArray<CacheEntry | undefined>, at: number, freshnessOf: (entry: CacheEntry) => Freshness): () => boolean {
    let answer: boolean | undefined
    return () => {
      if (answer !== undefined) return answer
      let most = 0
      for (const e of found) {
        if (e === undefined) continue
        const age = ageOf(e, at)
        // One of unknown age is loaded in the foreground whatever the budget says: it asks for nothing.
        if (age !== Infinity) most = Math.max(most, overdue(age, freshnessOf(e)))
      }
      answer = policy.backgroundAllowed(claim, most)
      return answer
    }
  }

  /**
   * Whether an entry of this age answers when its load failed with `err`, and why: a budget refusal is
   * answered up to the maximum staleness, other upstream failures within the route's stale-if-error.
   * `age` is the entry's age now, as the answer goes out: a failed load may have taken minutes.
   */
  function fallback (err: unknown, age: number, f: Freshness, isStaleUsable: (err: unknown) => boolean): StaleReason | undefined {
    if (!servesStale(f) || !isStaleUsable(err) || age >= (policy.maxStaleMs ?? Infinity)) return undefined
    if (policy.maxStaleMs !== undefined && isBudgetError(err)) return 'budget-low'
    return age < f.freshMs + f.staleIfErrorMs ? 'upstream-error' : undefined
  }

  const usable = (entry: CacheEntry | undefined, at: number): entry is CacheEntry => entry !== undefined && entry.expiresAt > at

  /** Copies L2 values into L1 with the same bytes (no re-encoding) for the rest of their life, tags included. */
  async function fillL1 (items: ReadonlyArray<{ key: string, raw: Buffer, entry: CacheEntry }>, at: number): Promise<void> {
    if (l1 === undefined || items.length === 0) return
    await l1.setMany(items.map(({ key, raw, entry }) => ({ key, value: raw, ttlMs: entry.expiresAt - at, tags: entry.tags })))
  }

  /** The L2 entry when it is stored later than `newerThan` (any, when undefined); copied into L1. */
  async function fromL2 (key: string, newerThan?: number): Promise<CacheEntry | undefined> {
    const mark = invalidations.mark()
    const raw = l2 === undefined ? undefined : await l2.get(key)
    // A fresh Buffer from Redis every time: decode it directly, the L1 memo would only churn.
    const entry = raw === undefined ? undefined : decodeBytes(raw)
    const at = now()
    if (!usable(entry, at) || raw === undefined) return undefined
    if (newerThan !== undefined && entry.storedAt <= newerThan) return undefined
    // A write invalidated it while the read was out (L1 first, L2 a round trip later): not the answer.
    if (invalidations.isInvalidatedSince(mark, entry.tags)) return undefined
    await fillL1([{ key, raw, entry }], at)
    return entry
  }

  async function lookup (key: string, freshness: Freshness): Promise<CacheEntry | undefined> {
    const raw = l1 === undefined ? undefined : await l1.get(key)
    const decoded = raw === undefined ? undefined : decodeEntry(raw)
    const local = usable(decoded, now()) ? decoded : undefined
    if (local !== undefined && ageOf(local, now()) < freshness.freshMs) return local
    // Absent or stale here: another replica may already have refreshed L2, which costs no upstream call.
    return (await fromL2(key, local?.storedAt)) ?? local
  }

  /** After taking the lock: a fill that landed between our lookup and the lock makes the load unnecessary. */
  async function freshFromL2 (key: string, freshness: Freshness, newerThan?: number): Promise<CacheEntry | undefined> {
    const entry = await fromL2(key, newerThan)
    return entry !== undefined && ageOf(entry, now()) < freshness.freshMs ? entry : undefined
  }

  async function store (key: string, entry: CacheEntry): Promise<void> {
    const ttlMs = entry.expiresAt - entry.storedAt
    if (ttlMs <= 0) return
    const value = [{ key, value: encodeSharing(entry), ttlMs, tags: entry.tags }]
    const tiers = [l1, l2].filter((s): s is CacheStore => s !== undefined)
    await Promise.all(tiers.map(async (s) => s.setMany(value)))
  }

  opts.bus?.onInvalidate(async (tags) => {
    invalidations.record(tags)
    await l1?.invalidateTags(tags)
  })

  async function loadAndStore (key: string, freshness: Freshness, loader: () => Promise<LoaderResult>): Promise<CacheEntry> {
    const mark = invalidations.mark()
    const result = await loader()
    const entry = createEntry(result.body, now(), retainMs(freshness, storeTtlMs(freshness)), result.contentType, result.status, result.tags)
    if (!invalidations.isInvalidatedSince(mark, entry.tags)) await store(key, entry)
    return entry
  }

  /**
   * Runs `fn` as the flight of `key`, or joins the one in flight, unless a write invalidated `tags`
   * since that one started: it may answer what the write replaced, so `fn` runs and takes its place.
   */
  async function share<V> (flights: SingleFlight<string, V>, key: string, fn: () => Promise<V>, tags?: readonly string[]): Promise<V> {
    const mark = invalidations.mark()
    const shared = flights.run(key, fn, (current) => tags === undefined || !invalidations.isInvalidatedSince(flightMarks.get(current) ?? mark, tags))
    if (!flightMarks.has(shared)) flightMarks.set(shared, mark)
    return shared
  }

  /** One load per key in this process; with the lock, one per key across replicas. `after`: the stale entry's storedAt. */
  async function loadShared (
    key: string, freshness: Freshness, loader: Loader, isBackground: boolean, after?: number
  ): Promise<CacheEntry | undefined> {
    return share(loads, key, async () => {
      if (lock === undefined) return loadAndStore(key, freshness, loader)
      const got = await lock.acquire(key)
      if (got.isAcquired) {
        try {
          return (await freshFromL2(key, freshness, after)) ?? await loadAndStore(key, freshness, loader)
        } finally {
          await got.release()
        }
      }
      if (!got.isBusy) return loadAndStore(key, freshness, loader)
      // Another replica is loading: a background refresh leaves it to them; a request waits for its fill.
      if (isBackground) return undefined
      opts.onCoalesced?.('lock-wait')
      const filled = await lock.waitFor(key, async () => fromL2(key, after))
      return filled ?? loadAndStore(key, freshness, loader)
    }, loader.tags)
  }

  async function loadForeground (key: string, freshness: Freshness, loader: Loader, after?: number): Promise<CacheEntry> {
    // Joining a background refresh that deferred to another replica yields nothing; then load directly.
    return (await loadShared(key, freshness, loader, false, after)) ?? loadAndStore(key, freshness, loader)
  }

  function refreshInBackground (key: string, freshness: Freshness, loader: Loader, after: number): void {
    if (loads.has(key)) return
    keep(background, loadShared(key, freshness, loader, true, after), (err) => { opts.onRefreshError?.(err, key) })
  }

  /** `isAlone`: load with this loader, joining no load in flight (see fetch: a share refusal). */
  async function read (
    key: string, freshness: Freshness, loader: Loader, isStaleUsable: (err: unknown) => boolean, isAlone = false
  ): Promise<Answer> {
    const load = async (after?: number): Promise<CacheEntry> => isAlone ? loadAndStore(key, freshness, loader) : loadForeground(key, freshness, loader, after)
    const found = await lookup(key, freshness)
    if (found === undefined) return { entry: await load(), status: 'MISS' }
    const next = plan(ageOf(found, now()), freshness)
    if (next.kind === 'hit') return { entry: found, status: 'HIT' }
    if (next.kind === 'stale') {
      if (next.refresh) refreshInBackground(key, freshness, loader, found.storedAt)
      return { entry: found, status: 'STALE', ...(next.reason === undefined ? {} : { reason: next.reason }) }
    }
    try {
      return { entry: await load(found.storedAt), status: 'MISS' }
    } catch (err) {
      const reason = fallback(err, ageOf(found, now()), freshness, isStaleUsable)
      if (reason === undefined) throw err
      return { entry: found, status: 'STALE', reason, ...(isShareRefusal(err) ? { isShareRefused: true } : {}) }
    }
  }

  /**
   * The read of a request whose joined read was refused by its own consumer's spent share: not this
   * request's answer. Read again, joining a load others start the same way (N such requests, one call),
   * unless that load too was refused by a share not this request's: then alone, on its own loader.
   */
  async function readAgain (key: string, freshness: Freshness, loader: Loader, isStaleUsable: (err: unknown) => boolean): Promise<Answer> {
    let isMine = false
    const mine: Loader = Object.assign(async () => { isMine = true; return await loader() }, loader.tags === undefined ? {} : { tags: loader.tags })
    try {
      const answer = await read(key, freshness, mine, isStaleUsable)
      if (answer.isShareRefused !== true || isMine) return answer
    } catch (err) {
      if (!isShareRefusal(err) || isMine) throw err
    }
    return await read(key, freshness, loader, isStaleUsable, true)
  }

  /**
   * L1's entries for `keys` (a peek reads without counting as a use) and the keys it cannot answer,
   * with their places in `keys`.
   */
  async function fromL1 (keys: readonly string[], at: number, isPeek: boolean, freshnessOf?: (entry: CacheEntry) => Freshness) {
    const raws: Array<Buffer | undefined> = l1 === undefined
      ? keys.map(() => undefined)
      : await (isPeek ? l1.peekMany(keys, PEEK_BYTES) : l1.getMany(keys))
    const entries = raws.map((raw) => (raw === undefined ? undefined : decodeEntry(raw)))
    // With freshnessOf, entries past fresh are looked for in L2 too (see isPastFresh).
    const missing = keys.flatMap((key, i) => {
      const e = entries[i]
      return usable(e, at) && (freshnessOf === undefined || !isPastFresh(e, at, freshnessOf)) ? [] : [{ key, i }]
    })
    return { entries, missing }
  }

  /**
   * Whether an L1 entry is past fresh while an L2 exists: another replica may have refreshed it there
   * already, which costs a Redis read instead of an upstream call (the per-key counterpart of lookup).
   */
  function isPastFresh (entry: CacheEntry, at: number, freshnessOf: (entry: CacheEntry) => Freshness): boolean {
    if (l2 === undefined) return false
    const f = freshnessOf(entry)
    return ageOf(entry, at) >= f.freshMs
  }

  /**
   * getEntries when an in-process L1 holds every key (the common hit): the same entries, found without
   * a promise. Undefined when any key is absent or expired there, so the caller takes the full path.
   */
  function entriesFromL1Now (keys: readonly string[], at: number, freshnessOf: (entry: CacheEntry) => Freshness): CacheEntry[] | undefined {
    const raws = l1?.getManyNow?.(keys)
    if (raws === undefined) return undefined
    const entries: CacheEntry[] = []
    for (const raw of raws) {
      const entry = raw === undefined ? undefined : decodeEntry(raw)
      if (!usable(entry, at) || isPastFresh(entry, at, freshnessOf)) return undefined
      entries.push(entry)
    }
    return entries
  }

  /**
   * Per-key entries (fresh or stale, not expired) in the order of `keys`; the caller judges freshness.
   * With `freshnessOf`, an L1 entry past fresh gives way to a newer one in L2.
   */
  async function getEntries (keys: readonly string[], isFilling = true, freshnessOf?: (entry: CacheEntry) => Freshness): Promise<Array<CacheEntry | undefined>> {
    const at = now()
    const { entries, missing } = await fromL1(keys, at, false, freshnessOf)
    if (l2 !== undefined && missing.length > 0) {
      const mark = invalidations.mark()
      const fills = await l2.getMany(missing.map((m) => m.key))
      const toL1: Array<{ key: string, raw: Buffer, entry: CacheEntry }> = []
      missing.forEach((m, j) => {
        const raw = fills[j]
        const entry = raw === undefined ? undefined : decodeBytes(raw)
        // As in fromL2: what a write invalidated while the read was out is not an answer.
        if (raw === undefined || !usable(entry, at) || invalidations.isInvalidatedSince(mark, entry.tags)) return
        const held = entries[m.i]
        const isHeld = usable(held, at)
        if (isHeld && held.storedAt >= entry.storedAt) return
        entries[m.i] = entry
        // A bulk read copies into L1 only the newer versions of what L1 holds (else L1 would keep
        // answering the older copy); what L1 does not hold stays out of it.
        if (isFilling || isHeld) toL1.push({ key: m.key, raw, entry })
      })
      await fillL1(toL1, at)
    }
    return entries.map((e) => (usable(e, at) ? e : undefined))
  }

  /**
   * As getEntries, for a look-ahead: the entries' headers (their bodies cut short: a record's first
   * bytes, a "does not exist" marker whole), read without counting as a use and without copying L2
   * values into L1. A stream of thousands of cached records looked at ahead of reading them would
   * otherwise fetch every record from Redis twice and push the records about to be read out of L1.
   */
  async function peekEntries (keys: readonly string[]): Promise<Array<CacheEntry | undefined>> {
    const at = now()
    const { entries, missing } = await fromL1(keys, at, true)
    if (l2 !== undefined && missing.length > 0) {
      const l2Heads = await l2.peekMany(missing.map((m) => m.key), PEEK_BYTES)
      const whole: Array<{ key: string, i: number }> = []
      missing.forEach((m, j) => {
        const raw = l2Heads[j]
        if (raw === undefined) return
        const entry = decodeBytes(raw, PEEK_BYTES)
        // A header longer than the peek (many tags): read that value whole.
        if (entry === undefined) whole.push(m)
        else entries[m.i] = entry
      })
      if (whole.length > 0) {
        const values = await l2.getMany(whole.map((m) => m.key))
        whole.forEach((m, j) => {
          const raw = values[j]
          entries[m.i] = raw === undefined ? undefined : decodeBytes(raw)
        })
      }
    }
    return entries.map((e) => (usable(e, at) ? e : undefined))
  }

  /**
   * Cross-replica single flight for per-key fills (object records): runs `load` for the keys this
   * replica claims (or all of them without Redis), and waits for the others' fills of keys another
   * replica is loading; keys whose fill does not arrive are loaded here after all. Resolves when every
   * key has been loaded here or found filled. `replacing`: the storedAt of each key's entry being
   * replaced, which a fill must be newer than.
   */
  async function fillShared (
    keys: readonly string[], load: (keys: string[], deferL2: DeferL2) => Promise<void>, replacing?: ReadonlyMap<string, number>
  ): Promise<void> {
    if (lock === undefined || keys.length === 0) return load([...keys], deferWrite)
    // A key held by holdFills is being filled by a call of this replica: load it here (the object loader
    // joins that call) rather than wait on our own lock.
    const claims = await Promise.all(keys.map(async (key) => ({ key, got: heldHere.has(key) ? HELD_HERE : await lock.acquire(key) })))
    const mine = claims.filter((c) => c.got.isAcquired || !c.got.isBusy)
    const theirs = claims.filter((c) => !c.got.isAcquired && c.got.isBusy).map((c) => c.key)
    const writes: Array<Promise<unknown>> = []
    try {
      if (mine.length > 0) await load(mine.map((c) => c.key), (write) => { writes.push(write) })
    } finally {
      // Released once the L2 fill has landed (a replica waiting for it polls L2), and not waited for.
      if (mine.length > 0) {
        deferWrite(Promise.allSettled(writes).then(async () => {
          await Promise.all(mine.map(async (c) => { if (c.got.isAcquired) await c.got.release() }))
        }))
      }
    }
    if (theirs.length === 0) return
    opts.onCoalesced?.('lock-wait')
    // The entry being replaced is still in L2 (kept for stale-if-error): only a newer one is the fill.
    const filled = await Promise.all(theirs.map(async (key) => lock.waitFor(key, async () => (await fromL2(key, replacing?.get(key))) ?? undefined)))
    const left = theirs.filter((_, i) => filled[i] === undefined)
    if (left.length > 0) await load(left, deferWrite)
  }

  /**
   * Takes the fill locks of `keys` for a fill already under way outside fillShared (predicted records
   * riding an objects/ call), without waiting for Redis: other replicas missing them wait for this fill
   * instead of loading them again. Returns what releases them, to call once they are stored (or will not
   * come). Keys another replica holds stay with it.
   */
  function holdFills (keys: readonly string[]): () => void {
    if (lock === undefined || keys.length === 0) return () => {}
    for (const key of keys) heldHere.add(key)
    const claims = Promise.all(keys.map(async (key) => lock.acquire(key)))
    return () => {
      for (const key of keys) heldHere.delete(key)
      claims.then(async (got) => { await Promise.all(got.map(async (g) => { if (g.isAcquired) await g.release() })) }).catch(() => {})
    }
  }

  /**
   * Stores per-key entries in both tiers, except those a write invalidated since `mark`; returns them all.
   * With `deferL2`, it resolves once L1 holds them and hands over the L2 write instead of waiting for it.
   * Not `isFilling` (a bulk read) and with L2, L1 takes only the entries whose keys it holds (a refreshed
   * stale entry), so that it never answers an older copy than L2 holds.
   */
  async function putEntries (items: readonly PutItem[], mark?: number, how: StoreHow = {}): Promise<CacheEntry[]> {
    const { freshnessOf, deferL2, isFilling = true } = how
    const at = now()
    const all = items.map((item) => {
      const entry = createEntry(item.body, at, item.ttlMs, item.contentType, item.status, item.tags, item.bigInts)
      // Kept up to the maximum staleness when the route's entries may be served stale.
      return { key: item.key, entry: freshnessOf === undefined ? entry : { ...entry, expiresAt: at + retainMs(freshnessOf(entry), item.ttlMs) } }
    })
    const kept = all.filter(({ entry }) => entry.expiresAt > at && (mark === undefined || !invalidations.isInvalidatedSince(mark, entry.tags)))
    const values = kept.map(({ key, entry }) => ({ key, value: encodeSharing(entry), ttlMs: entry.expiresAt - at, tags: entry.tags }))
    // One batch write per tier, tags included: one Redis round trip per slice of the batch. Both start
    // now, so the L2 write is ordered before any later invalidation on the same connection.
    const l2Write = l2?.setMany(values)
    if (deferL2 !== undefined && l2Write !== undefined) deferL2(l2Write)
    await Promise.all([isFilling || l2Write === undefined ? l1?.setMany(values) : refreshHeld(values), deferL2 === undefined ? l2Write : undefined])
    return all.map(({ entry }) => entry)
  }

  /** Stores in L1 those of `values` whose keys it holds already (without counting as a use of them). */
  async function refreshHeld (values: readonly StoreEntry[]): Promise<void> {
    if (l1 === undefined || values.length === 0) return
    const held = await l1.peekMany(values.map((v) => v.key), 1)
    const newer = values.filter((_, i) => held[i] !== undefined)
    if (newer.length > 0) await l1.setMany(newer)
  }

  /** Loads `keys`, stores what it got (unless a write invalidated it meanwhile), returns the entries by key. */
  async function loadMany (keys: string[], load: ManyLoader, how: StoreHow & { freshnessOf: (entry: CacheEntry) => Freshness }): Promise<Map<string, CacheEntry>> {
    const mark = invalidations.mark()
    const items = await load(keys)
    const entries = await putEntries(items, mark, how)
    return new Map(items.map((item, k) => [item.key, entries[k] as CacheEntry]))
  }

  /**
   * Per-key reads (object records) with the same freshness rules as fetch: fresh entries are hits;
   * entries within stale-while-revalidate are served while one background load refreshes them; absent
   * or older ones are loaded together in one call of `load` (with Redis, keys another replica is
   * loading are waited for instead); when that load fails with an upstream error and every missing key
   * still has an entry within stale-if-error (within the maximum staleness for a budget refusal), those
   * are served. The budget policy applies per entry as in fetch.
   */
  /**
   * The keys a fetchMany now would load (absent, or too old to serve under the current freshness and
   * budget rules), without loading anything or keeping the entries: for callers that look ahead. It
   * reads headers only (peekEntries), so `freshnessOf` sees the start of a body, at least the first
   * PEEK_BYTES of the stored value.
   */
  async function toLoad (keys: readonly string[], freshnessOf: (entry: CacheEntry) => Freshness): Promise<string[]> {
    const found = await peekEntries(keys)
    const at = now()
    const allowed = batchAllowance(false, found, at, freshnessOf)
    return keys.filter((_, i) => {
      const entry = found[i]
      if (entry === undefined) return true
      const f = freshnessOf(entry)
      return plan(ageOf(entry, at), f, allowed).kind === 'load'
    })
  }

  async function fetchMany (keys: readonly string[], load: ManyLoader, manyOpts: ManyOptions): Promise<ManyResult> {
    const at = now()
    const bypass = manyOpts.bypass === true
    const isFilling = manyOpts.fillL1 !== false
    const found = bypass ? keys.map(() => undefined) : entriesFromL1Now(keys, at, manyOpts.freshnessOf) ?? await getEntries(keys, isFilling, manyOpts.freshnessOf)
    const entries = new Array<CacheEntry | undefined>(keys.length)
    const misses: number[] = []
    const stale: number[] = []
    let status: CacheStatus = bypass ? 'BYPASS' : 'HIT'
    let reason: StaleReason | undefined
    // When the oldest entry served was stored, as its age counts (loaded ones are new).
    let oldest = at
    const allowed = batchAllowance(true, found, at, manyOpts.freshnessOf)
    found.forEach((entry, i) => {
      if (entry === undefined) { misses.push(i); return }
      const f = manyOpts.freshnessOf(entry)
      const age = ageOf(entry, at)
      const next = plan(age, f, allowed)
      if (next.kind === 'load') { misses.push(i); return }
      entries[i] = entry
      oldest = Math.min(oldest, at - age)
      if (next.kind === 'hit') return
      status = 'STALE'
      if (next.refresh) stale.push(i)
      if (next.reason !== undefined) reason = next.reason
    })
    const keysAt = (idx: number[]): string[] => [...new Set(idx.map((i) => keys[i] as string))]

    if (stale.length > 0) {
      keep(background, loadMany(keysAt(stale), load, { freshnessOf: manyOpts.freshnessOf, isFilling }), (err) => { opts.onRefreshError?.(err, keys[stale[0] as number] as string) })
    }
    if (misses.length > 0) {
      const wanted = keysAt(misses)
      const how = { freshnessOf: manyOpts.freshnessOf, isFilling }
      // What another replica's fill must be newer than: the entry too stale to serve, or with a bypass
      // whatever was stored before this request.
      const replacing = new Map<string, number>()
      for (const i of misses) {
        const before = bypass ? at - 1 : found[i]?.storedAt
        if (before !== undefined) replacing.set(keys[i] as string, before)
      }
      try {
        const loaded = new Map<string, CacheEntry>()
        // The answer goes out once L1 holds the records (a bulk read's at once); their L2 write (and the
        // fill locks) finish after, ordered before any later read on the same connection.
        await fillShared(wanted, async (mine, deferL2) => {
          for (const [key, entry] of await loadMany(mine, load, { ...how, deferL2 })) loaded.set(key, entry)
        }, replacing)
        const elsewhere = wanted.filter((key) => !loaded.has(key))
        if (elsewhere.length > 0) {
          const filled = await getEntries(elsewhere, isFilling)
          elsewhere.forEach((key, k) => {
            const e = filled[k]
            const before = replacing.get(key)
            if (e !== undefined && (before === undefined || e.storedAt > before)) loaded.set(key, e)
          })
          const lost = elsewhere.filter((key) => !loaded.has(key))
          if (lost.length > 0) for (const [key, entry] of await loadMany(lost, load, how)) loaded.set(key, entry)
        }
        for (const i of misses) {
          const entry = loaded.get(keys[i] as string)
          entries[i] = entry
          // Another replica's fill may be older than this request: Age counts from when it was stored.
          if (entry !== undefined) oldest = Math.min(oldest, entry.storedAt)
        }
        // Loaded records are new; one served stale above still makes the answer STALE, with its reason.
        status = combinedStatus(status, 'MISS')
      } catch (err) {
        const isStaleUsable = manyOpts.isStaleUsable ?? isUpstreamError
        const failedAt = now()
        // Each entry's age as the answer goes out, and why it may answer (undefined: it may not).
        const served = misses.map((i) => {
          const e = found[i]
          if (e === undefined) return undefined
          const f = manyOpts.freshnessOf(e)
          const age = ageOf(e, failedAt)
          const why = fallback(err, age, f, isStaleUsable)
          return why === undefined ? undefined : { age, why }
        })
        if (served.some((r) => r === undefined)) {
          // A lookup that missed is a miss whether or not its load succeeds (else the hit ratio reads
          // 100 % through an outage).
          opts.onResult?.(status === 'BYPASS' ? 'BYPASS' : 'MISS', manyOpts.route)
          throw err
        }
        misses.forEach((i, k) => {
          entries[i] = found[i]
          oldest = Math.min(oldest, failedAt - (served[k]?.age ?? 0))
        })
        status = 'STALE'
        reason = combinedReason(reason, served.some((r) => r?.why === 'budget-low') ? 'budget-low' : 'upstream-error')
      }
    }
    opts.onResult?.(status, manyOpts.route)
    return { entries: entries as CacheEntry[], status, ageS: Math.max(0, Math.floor((now() - oldest) / 1000)), ...(reason === undefined ? {} : { reason }) }
  }

  /** Resolves when the L2 writes answers did not wait for have settled (each is bounded by the Redis timeout). */
  async function settleWrites (): Promise<void> {
    while (deferred.size > 0) await Promise.all([...deferred])
  }

  /** A read of one key through both tiers; fetch counts the outcome of one that fails. */
  async function fetchOne (key: string, freshness: Freshness, loader: () => Promise<LoaderResult>, fetchOpts: FetchOptions): Promise<FetchResult> {
    const route = fetchOpts.route ?? DEFAULT_ROUTE
    const load: Loader = fetchOpts.tags === undefined ? loader : Object.assign(async () => loader(), { tags: fetchOpts.tags })
    if (fetchOpts.bypass === true) {
      // Shares an in-flight load (its answer is as new as ours would be), never a cached value.
      const entry = await share(loads, key, async () => loadAndStore(key, freshness, load), load.tags)
      return finish({ entry: entry ?? await loadAndStore(key, freshness, load), status: 'BYPASS' }, route)
    }
    // The whole read (lookup included) is shared: a request arriving while a fill is being stored
    // cannot slip between a miss and the store and start a second load.
    let isJoining = true
    const isStaleUsable = fetchOpts.isStaleUsable ?? isUpstreamError
    let answer: Answer
    try {
      answer = await share(reads, key, async () => {
        isJoining = false
        return read(key, freshness, load, isStaleUsable)
      }, load.tags)
    } catch (err) {
      if (!isJoining || !isShareRefusal(err)) throw err
      return finish(await readAgain(key, freshness, load, isStaleUsable), route)
    }
    if (isJoining && answer.isShareRefused === true) return finish(await readAgain(key, freshness, load, isStaleUsable), route)
    if (isJoining && answer.status === 'MISS') opts.onCoalesced?.('single-flight')
    return finish(answer, route)
  }

  function finish (answer: Answer, route: string): FetchResult {
    const { entry, status, reason } = answer
    opts.onResult?.(status, route)
    // Only a load answers an entry of unknown age: another replica's fill, stored by its clock (it was
    // waited for, so it is new).
    const age = ageOf(entry, now())
    return { entry, status, ageS: age === Infinity ? 0 : Math.floor(age / 1000), ...(reason === undefined ? {} : { reason }) }
  }

  return {
    /** The configured freshness of a route. */
    freshness (route: RouteId): Freshness {
      return table[route]
    },

    /** The cache's clock (ms); injected in tests. */
    now,

    /** The upstream budget's say in freshness decisions (the service sets it once at boot). */
    setBudgetPolicy (next: BudgetPolicy): void {
      if (next.maxStaleMs === undefined) delete policy.maxStaleMs
      else policy.maxStaleMs = next.maxStaleMs
      policy.backgroundAllowed = next.backgroundAllowed
    },

    async fetch (key: string, freshness: Freshness, loader: () => Promise<LoaderResult>, fetchOpts: FetchOptions = {}): Promise<FetchResult> {
      try {
        return await fetchOne(key, freshness, loader, fetchOpts)
      } catch (err) {
        // Every outcome that reaches an answer is counted in finish; a read that fails missed the cache.
        opts.onResult?.(fetchOpts.bypass === true ? 'BYPASS' : 'MISS', fetchOpts.route ?? DEFAULT_ROUTE)
        throw err
      }
    },

    getEntries,

    /** Derived representations (renderings, compressed variants) within L1's byte budget; none without L1. */
    derived: l1?.derived,

    fillShared,

    holdFills,

    fetchMany,

    toLoad,

    /**
     * Stores per-key entries (e.g. one object record per id) in both tiers; `ttlMs` is the store lifetime.
     * With `mark` (from mark(), taken before the upstream was asked), entries a write invalidated since,
     * here or on another replica, are not stored.
     */
    async putEntries (items: readonly PutItem[], mark?: number): Promise<void> {
      await putEntries(items, mark)
    },

    /** A point in the invalidation log, for putEntries. */
    mark: (): number => invalidations.mark(),

    /** Whether a write invalidated any of `tags` since `mark`, here or on another replica (when unsure: yes). */
    isInvalidatedSince: (mark: number, tags: readonly string[]): boolean => invalidations.isInvalidatedSince(mark, tags),

    /** Deletes every entry carrying any of `tags` from both tiers (after a write). */
    async invalidate (tags: readonly string[]): Promise<void> {
      if (tags.length === 0) return
      invalidations.record(tags)
      const [, deleted, isPublished] = await Promise.all([l1?.invalidateTags(tags), l2?.invalidateTags(tags), opts.bus?.publish(tags)])
      if ((l2 !== undefined && deleted === undefined) || isPublished === false) unsent.keep(tags.map((tag) => [tag, true] as const))
    },

    /** Counts an outcome decided outside fetch (e.g. per-id hits of a batch read). */
    report (status: CacheStatus, route: string): void {
      opts.onResult?.(status, route)
    },

    /** Resolves when every background refresh and deferred L2 write has settled (tests). */
    async drain (): Promise<void> {
      while (background.size > 0 || deferred.size > 0) await Promise.all([...background, ...deferred])
    },

    settleWrites,

    /** At close: the L2 writes settled, and one last try for invalidations Redis has not taken. */
    async close (): Promise<void> {
      await settleWrites()
      await unsent.close()
    }
  }
}
