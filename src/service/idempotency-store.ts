// Where Idempotency-Key outcomes live: one small contract, in memory or in Redis (shared by every
// replica). A key holds either an in-progress marker (a lease its request renews while it runs, so a
// crashed replica cannot lock a key for a day) or the final outcome of the first request, kept 24 h.
// Every change is atomic: a marker is set only if the key is empty (Lua: GET, else SET PX), and it is
// replaced, renewed or dropped only by the request that owns it (Lua compares the marker's text).
import type { Redis, Result } from 'ioredis'

declare module 'ioredis' {
  interface RedisCommander<Context> {
    agwIdemClaim (key: string, marker: string, leaseMs: number): Result<string | null, Context>
    agwIdemSwap (key: string, marker: string, value: string, ttlMs: number): Result<number, Context>
  }
}

/** How long an outcome is replayed (the draft's suggested retention). */
export const OUTCOME_TTL_MS = 24 * 60 * 60 * 1000
// The memory store's bound: the oldest entries go first (a replica without Redis is a dev setup).
const DEFAULT_MAX_MEMORY_ENTRIES = 10_000

/** A request still running under the key. `owner` is unique per request. */
export interface RunningEntry { state: 'running', owner: string, fingerprint: string }

/** The first request's answer, as it was sent. */
export interface DoneEntry {
  state: 'done'
  fingerprint: string
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * What a key holds when it decodes as neither (another version's form during a rolling update or a
 * rollback, or a damaged value): not an empty key. Its request may have been applied upstream, so it is
 * never taken as absent (a write is not sent again on a guess); the reason is for the log.
 */
export interface UnreadableEntry { state: 'unreadable', reason: string }

export type IdempotencyEntry = RunningEntry | DoneEntry | UnreadableEntry

export interface IdempotencyStore {
  /** Sets `marker` on an empty key (lapsing after `leaseMs`) and resolves undefined; else the entry held. */
  claim (key: string, marker: RunningEntry, leaseMs: number): Promise<IdempotencyEntry | undefined>
  /**
   * Replaces the caller's marker with its outcome for `ttlMs`, or fills the key with it when the marker
   * lapsed and nobody claimed the key since; false when another request holds the key.
   */
  complete (key: string, marker: RunningEntry, outcome: DoneEntry, ttlMs: number): Promise<boolean>
  /** Extends the caller's marker by `leaseMs`; false when it is gone. */
  renew (key: string, marker: RunningEntry, leaseMs: number): Promise<boolean>
  /** Drops the caller's marker (its outcome is not kept), so that a retry can run. */
  release (key: string, marker: RunningEntry): Promise<void>
  get (key: string): Promise<IdempotencyEntry | undefined>
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

function isRunning (value: Record<string, unknown>): boolean {
  return value.state === 'running' && typeof value.owner === 'string' && typeof value.fingerprint === 'string'
}

/** An outcome that can be replayed as it is: a status the reply can take, string headers, a string body. */
function isDone (value: Record<string, unknown>): boolean {
  const { status, headers } = value
  return value.state === 'done' && typeof value.fingerprint === 'string' && typeof value.body === 'string' &&
    typeof status === 'number' && Number.isInteger(status) && status >= 100 && status <= 599 &&
    isObject(headers) && Object.values(headers).every((v) => typeof v === 'string')
}

/**
 * The entry a stored text holds. Never throws: it runs inside a guarded Redis call, where a throw was
 * taken for Redis failing (until 2026-12-02 one truncated record marked Redis down for every user, and a
 * record without `headers` answered 500). Fields this version does not know are kept and ignored.
 */
function decode (text: string | null): IdempotencyEntry | undefined {
  if (text === null) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { state: 'unreadable', reason: `not JSON (${text.length} characters)` }
  }
  if (isObject(value) && (isRunning(value) || isDone(value))) return value as unknown as RunningEntry | DoneEntry
  return { state: 'unreadable', reason: 'JSON, but neither a marker nor an outcome of this version' }
}

/** Redis refused the command because the key holds another type (a hash, a list): it holds no record of ours. */
function isWrongType (err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError' && err.message.includes('WRONGTYPE')
}

async function readOrUnreadable (read: () => Promise<string | null>): Promise<IdempotencyEntry | undefined> {
  try {
    return decode(await read())
  } catch (err) {
    if (isWrongType(err)) return { state: 'unreadable', reason: 'another Redis type' }
    throw err
  }
}

// KEYS[1] the key; ARGV[1] the marker, ARGV[2] its lease in ms.
const CLAIM_LUA = `
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
`

// KEYS[1] the key; ARGV[1] the caller's marker; ARGV[2] the new value ('' deletes, '=' keeps it and
// only extends); ARGV[3] the TTL in ms. Acts only while the key still holds that exact marker, except
// that an outcome also fills an empty key (its marker lapsed, and no other request claimed the key).
const SWAP_LUA = `
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] and (held or ARGV[2] == '' or ARGV[2] == '=') then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] == '=' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`

export function createRedisIdempotencyStore (redis: Redis): IdempotencyStore {
  // defineCommand loads each script once and then calls it by SHA.
  redis.defineCommand('agwIdemClaim', { numberOfKeys: 1, lua: CLAIM_LUA })
  redis.defineCommand('agwIdemSwap', { numberOfKeys: 1, lua: SWAP_LUA })
  return {
    async claim (key, marker, leaseMs) {
      return await readOrUnreadable(async () => redis.agwIdemClaim(key, JSON.stringify(marker), leaseMs))
    },
    async complete (key, marker, outcome, ttlMs) {
      return await redis.agwIdemSwap(key, JSON.stringify(marker), JSON.stringify(outcome), ttlMs) === 1
    },
    async renew (key, marker, leaseMs) {
      return await redis.agwIdemSwap(key, JSON.stringify(marker), '=', leaseMs) === 1
    },
    async release (key, marker) {
      await redis.agwIdemSwap(key, JSON.stringify(marker), '', 0)
    },
    async get (key) {
      return await readOrUnreadable(async () => redis.get(key))
    }
  }
}

export function createMemoryIdempotencyStore (opts: { maxEntries?: number, now?: () => number } = {}): IdempotencyStore {
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_MEMORY_ENTRIES
  const now = opts.now ?? Date.now
  const entries = new Map<string, { entry: IdempotencyEntry, expiresAt: number }>()

  function live (key: string): IdempotencyEntry | undefined {
    const held = entries.get(key)
    if (held === undefined) return undefined
    if (held.expiresAt > now()) return held.entry
    entries.delete(key)
    return undefined
  }

  function put (key: string, entry: IdempotencyEntry, ttlMs: number): void {
    entries.delete(key)
    entries.set(key, { entry, expiresAt: now() + ttlMs })
    // Map order is insertion order: the first key is the oldest.
    if (entries.size > maxEntries) entries.delete(entries.keys().next().value as string)
  }

  const isOwnedBy = (key: string, marker: RunningEntry): boolean => {
    const held = live(key)
    return held?.state === 'running' && held.owner === marker.owner
  }

  return {
    async claim (key, marker, leaseMs) {
      const held = live(key)
      if (held !== undefined) return held
      put(key, marker, leaseMs)
      return undefined
    },
    async complete (key, marker, outcome, ttlMs) {
      if (!isOwnedBy(key, marker) && live(key) !== undefined) return false
      put(key, outcome, ttlMs)
      return true
    },
    async renew (key, marker, leaseMs) {
      if (!isOwnedBy(key, marker)) return false
      put(key, marker, leaseMs)
      return true
    },
    async release (key, marker) {
      if (isOwnedBy(key, marker)) entries.delete(key)
    },
    async get (key) {
      return live(key)
    }
  }
}
