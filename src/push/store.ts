// Where push keeps what every replica must agree on: each source's events (a Redis stream, trimmed to
// PUSH_RETENTION_S and PUSH_MAX_EVENTS, and the newest id trimmed away), the snapshot its next poll is compared with, the lead of its
// poll, webhook cursors, dead letters and the count of open event streams per consumer. Without Redis,
// the same in memory (one replica).
//
// Event ids are stream ids (`<ms>-<seq>`), increasing per source. A poll's events and its new snapshot
// are written by one script that first checks the writer still holds the lead (a fencing check): a
// replica that lost the lead while it polled writes nothing, and the next leader polls again from the
// snapshot that went with the last events written, so no change is announced twice or lost. The keys
// of one source share a hash tag (`{push:<source>}`), so the script stays in one slot on a Cluster.
import type { Redis } from 'ioredis'
import type { RedisGuard } from '../lib/redis-health.js'

export interface StoredEvent {
  id: string
  /** The event as JSON (see sources.ts). */
  data: string
}

export interface Snapshot {
  /** When the poll that produced it ran (ms since the epoch, the writer's clock). */
  at: number
  /** The JSON of the rows it saw (an older release could store '' over an expired one: counts as no snapshot). */
  rows: string
}

export interface CommitInput {
  source: string
  token: string
  /** The rows as JSON, or '' to keep the stored ones (nothing changed). */
  rows: string
  at: number
  events: string[]
}

export interface PushStore {
  /** Takes the lead of `source` for `ttlMs`, or renews it when `token` holds it; false when another does. */
  lead: (source: string, token: string, ttlMs: number) => Promise<boolean>
  /** Gives the lead up (shutdown), when `token` holds it. */
  resign: (source: string, token: string) => Promise<void>
  snapshot: (source: string) => Promise<Snapshot | null>
  /**
   * Writes a poll's events and snapshot if `token` still leads: the new ids, null when it does not lead,
   * SNAPSHOT_MISSING (nothing written) when `rows` is '' and no snapshot is stored to keep.
   */
  commit: (input: CommitInput) => Promise<string[] | typeof SNAPSHOT_MISSING | null>
  /** The newest event id ('0-0' when there is none). */
  tail: (source: string) => Promise<string>
  /**
   * Up to `count` events with ids after `afterId`, oldest first, with the newest id trimmed away as it was
   * when they were read ('0-0' when none was): when `afterId` is before it, events after `afterId` are
   * gone (a gap) and the events read all come after it.
   */
  page: (source: string, afterId: string, count: number) => Promise<{ events: StoredEvent[], trimmed: string }>
  /** Claims one of `limit` open streams of `consumer` for `ttlMs` (renewed by heartbeats). */
  claimStream: (consumer: string, streamId: string, limit: number, ttlMs: number) => Promise<boolean>
  releaseStream: (consumer: string, streamId: string) => Promise<void>
  cursor: (source: string, target: string) => Promise<string | null>
  /**
   * Stores `target`'s cursor; `replaces`: another name of the same cursor, removed in the same step;
   * `lead`: only while this token holds the source's lead (false, nothing written, when it does not), so
   * that a replica that lost the lead cannot move the cursor of the one that took it back.
   */
  setCursor: (source: string, target: string, id: string, opts?: { replaces?: string, lead?: string }) => Promise<boolean>
  deadLetter: (consumer: string, entry: string, keep: number) => Promise<void>
  deadLetters: (consumer: string) => Promise<string[]>
}

/** A commit that would keep the stored rows found none (expired or evicted): send them in full. */
export const SNAPSHOT_MISSING = 'snapshot-missing'

export interface StoreLimits {
  retentionMs: number
  maxEvents: number
}

/** `a` < `b` for stream ids `<ms>-<seq>`. */
export function idBefore (a: string, b: string): boolean {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt)
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt)
  return am < bm || (am === bm && as < bs)
}

const EVENT_ID = /^\d{1,20}-\d{1,20}$/
const MAX_PART = 2n ** 64n - 1n

/**
 * Whether `value` can be resumed after: a stream id (`<ms>-<seq>`, each part at most 2^64−1, as Redis
 * takes them) below the last one there is (nothing can come after that one; Redis refuses to read past it).
 */
export function isResumableId (value: string): boolean {
  if (!EVENT_ID.test(value)) return false
  const [ms, seq] = value.split('-').map(BigInt) as [bigint, bigint]
  return ms <= MAX_PART && seq <= MAX_PART && !(ms === MAX_PART && seq === MAX_PART)
}

// KEYS: lock, stream, snapshot, trimmed. ARGV: token, rows ('' keeps them), at, retention ms, max events,
// events…
// Rows '' with no snapshot stored (it expired or was evicted) write nothing and answer SNAPSHOT_MISSING:
// stored as '', the next leader would take it for a source without rows and announce every row as added.
// The stream is trimmed exactly (not `~`), and the newest id trimmed away is kept in its own key: Redis
// records one (XINFO's max-deleted-entry-id) only for XDEL, never for trimming, and `~` would leave the
// entries trimmed unknown. Finding the last one costs a read of what the MAXLEN trim removes (about as
// many entries as this commit added), and MINID's one entry.
const COMMIT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
if ARGV[2] == '' and not redis.call('HGET', KEYS[3], 'rows') then return 'snapshot-missing' end
local ids = {}
if #ARGV > 5 then
  for i = 6, #ARGV do
    ids[#ids + 1] = redis.call('XADD', KEYS[2], '*', 'e', ARGV[i])
  end
  local t = redis.call('TIME')
  local minid = math.max(0, t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(ARGV[4]))
  local gone = nil
  if minid > 0 then
    local old = redis.call('XREVRANGE', KEYS[2], string.format('%d', minid - 1), '-', 'COUNT', 1)[1]
    if old then
      gone = old[1]
      redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', minid))
    end
  end
  local over = redis.call('XLEN', KEYS[2]) - tonumber(ARGV[5])
  if over > 0 then
    local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)
    gone = old[#old][1]
    redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[5])
  end
  if gone then redis.call('SET', KEYS[4], gone) end
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], 'rows', ARGV[2]) end
redis.call('HSET', KEYS[3], 'at', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return ids
`
// KEYS: lock, snapshot. ARGV: token, ttl ms, retention ms. The holder also keeps the snapshot for another
// retention: a source that is led keeps it however long its polls are apart (PUSH_POLL_MAX_INTERVAL_MS,
// polls skipped while the budget is low or the upstream down); one nobody subscribes to loses it.
const LEAD = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`
const RESIGN = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
// KEYS: cursors, lock. ARGV: target, id, token ('' writes without the check), another name to remove ('' none).
const CURSOR = `
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('HDEL', KEYS[1], ARGV[4]) end
return 1
`
// KEYS: the consumer's open streams (a sorted set by expiry). ARGV: now ms, stream id, limit, ttl ms.
const CLAIM = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0
`

type Commands = Redis & {
  pushCommit: (...args: Array<string | number>) => Promise<string[] | typeof SNAPSHOT_MISSING | null>
  pushLead: (...args: Array<string | number>) => Promise<number>
  pushResign: (...args: Array<string | number>) => Promise<number>
  pushClaim: (...args: Array<string | number>) => Promise<number>
  pushCursor: (...args: Array<string | number>) => Promise<number>
}

export function createRedisPushStore (redis: Redis, prefix: string, limits: StoreLimits): PushStore {
  const r = redis as Commands
  if (typeof r.pushCommit !== 'function') {
    redis.defineCommand('pushCommit', { numberOfKeys: 4, lua: COMMIT })
    redis.defineCommand('pushLead', { numberOfKeys: 2, lua: LEAD })
    redis.defineCommand('pushResign', { numberOfKeys: 1, lua: RESIGN })
    redis.defineCommand('pushClaim', { numberOfKeys: 1, lua: CLAIM })
    redis.defineCommand('pushCursor', { numberOfKeys: 2, lua: CURSOR })
  }
  const key = (source: string, part: string) => `${prefix}{push:${source}}:${part}`
  const streamsKey = (consumer: string) => `${prefix}{push-streams:${consumer}}`
  const deadKey = (consumer: string) => `${prefix}{push-dead:${consumer}}`

  return {
    async lead (source, token, ttlMs) {
      return await r.pushLead(key(source, 'lead'), key(source, 'snap'), token, ttlMs, limits.retentionMs) === 1
    },
    async resign (source, token) {
      await r.pushResign(key(source, 'lead'), token)
    },
    async snapshot (source) {
      const [rows, at] = await redis.hmget(key(source, 'snap'), 'rows', 'at')
      return rows === null || rows === undefined || at === null || at === undefined ? null : { rows, at: Number(at) }
    },
    async commit ({ source, token, rows, at, events }) {
      const ids = await r.pushCommit(key(source, 'lead'), key(source, 'events'), key(source, 'snap'), key(source, 'trimmed'),
        token, rows, at, limits.retentionMs, limits.maxEvents, ...events)
      return ids ?? null
    },
    async tail (source) {
      const [last] = await redis.xrevrange(key(source, 'events'), '+', '-', 'COUNT', 1)
      return last?.[0] ?? '0-0'
    },
    async page (source, afterId, count) {
      // In one step: what was trimmed is known for the moment the events were read.
      const replies = await redis.multi()
        .get(key(source, 'trimmed'))
        .xrange(key(source, 'events'), `(${afterId}`, '+', 'COUNT', count)
        .exec()
      const failed = replies?.find(([err]) => err !== null)?.[0]
      if (replies === null || failed !== undefined) throw failed ?? new Error('push: the read was aborted')
      const entries = replies[1]?.[1] as Array<[string, string[]]>
      return { events: entries.map(([id, fields]) => ({ id, data: fields[1] ?? '{}' })), trimmed: (replies[0]?.[1] as string | null) ?? '0-0' }
    },
    async claimStream (consumer, streamId, limit, ttlMs) {
      return await r.pushClaim(streamsKey(consumer), Date.now(), streamId, limit, ttlMs) === 1
    },
    async releaseStream (consumer, streamId) {
      await redis.zrem(streamsKey(consumer), streamId)
    },
    async cursor (source, target) {
      return await redis.hget(key(source, 'cursors'), target)
    },
    async setCursor (source, target, id, { replaces = '', lead = '' } = {}) {
      return await r.pushCursor(key(source, 'cursors'), key(source, 'lead'), target, id, lead, replaces) === 1
    },
    async deadLetter (consumer, entry, keep) {
      await redis.multi().lpush(deadKey(consumer), entry).ltrim(deadKey(consumer), 0, keep - 1).exec()
    },
    async deadLetters (consumer) {
      return await redis.lrange(deadKey(consumer), 0, -1)
    }
  }
}

interface MemorySource {
  events: StoredEvent[]
  trimmed: string
  snapshot: Snapshot | null
  lead: { token: string, until: number } | null
  cursors: Map<string, string>
}

/** One replica's store, for a gateway without Redis. */
export function createMemoryPushStore (limits: StoreLimits, now: () => number = Date.now): PushStore {
  const sources = new Map<string, MemorySource>()
  const streams = new Map<string, Map<string, number>>()
  const dead = new Map<string, string[]>()
  let lastMs = 0
  let seq = 0
  const of = (source: string): MemorySource => {
    let s = sources.get(source)
    if (s === undefined) {
      s = { events: [], trimmed: '0-0', snapshot: null, lead: null, cursors: new Map() }
      sources.set(source, s)
    }
    return s
  }
  const nextId = (): string => {
    const ms = Math.max(now(), lastMs)
    seq = ms === lastMs ? seq + 1 : 0
    lastMs = ms
    return `${ms}-${seq}`
  }
  const after = (source: string, afterId: string, count: number): StoredEvent[] => {
    const out: StoredEvent[] = []
    for (const e of of(source).events) {
      if (idBefore(afterId, e.id)) out.push(e)
      if (out.length >= count) break
    }
    return out
  }
  const holds = (s: MemorySource, token: string) => s.lead !== null && s.lead.token === token && s.lead.until > now()

  return {
    async lead (source, token, ttlMs) {
      const s = of(source)
      if (s.lead !== null && s.lead.until > now() && s.lead.token !== token) return false
      s.lead = { token, until: now() + ttlMs }
      return true
    },
    async resign (source, token) {
      const s = of(source)
      if (s.lead?.token === token) s.lead = null
    },
    async snapshot (source) {
      return of(source).snapshot
    },
    async commit ({ source, token, rows, at, events }) {
      const s = of(source)
      if (!holds(s, token)) return null
      if (rows === '' && s.snapshot === null) return SNAPSHOT_MISSING
      const ids = events.map((data) => {
        const id = nextId()
        s.events.push({ id, data })
        return id
      })
      const oldest = now() - limits.retentionMs
      let drop = Math.max(0, s.events.length - limits.maxEvents)
      while (drop < s.events.length && Number((s.events[drop] as StoredEvent).id.split('-')[0]) < oldest) drop++
      if (drop > 0) s.trimmed = (s.events[drop - 1] as StoredEvent).id
      s.events.splice(0, drop)
      s.snapshot = { at, rows: rows !== '' || s.snapshot === null ? rows : s.snapshot.rows }
      return ids
    },
    async page (source, afterId, count) {
      return { events: after(source, afterId, count), trimmed: of(source).trimmed }
    },
    async tail (source) {
      return of(source).events.at(-1)?.id ?? '0-0'
    },
    async claimStream (consumer, streamId, limit, ttlMs) {
      const open = streams.get(consumer) ?? new Map<string, number>()
      streams.set(consumer, open)
      for (const [id, until] of open) if (until <= now()) open.delete(id)
      if (!open.has(streamId) && open.size >= limit) return false
      open.set(streamId, now() + ttlMs)
      return true
    },
    async releaseStream (consumer, streamId) {
      streams.get(consumer)?.delete(streamId)
    },
    async cursor (source, target) {
      return of(source).cursors.get(target) ?? null
    },
    async setCursor (source, target, id, { replaces, lead } = {}) {
      const s = of(source)
      if (lead !== undefined && !holds(s, lead)) return false
      if (replaces !== undefined) s.cursors.delete(replaces)
      s.cursors.set(target, id)
      return true
    },
    async deadLetter (consumer, entry, keep) {
      const list = dead.get(consumer) ?? []
      list.unshift(entry)
      list.splice(keep)
      dead.set(consumer, list)
    },
    async deadLetters (consumer) {
      return [...dead.get(consumer) ?? []]
    }
  }
}

/**
 * `store` with each call through the shared Redis guard, as every other Redis user: while Redis is down
 * a call fails at once (RedisSkippedError) instead of waiting its own timeout, so a stalled Redis costs
 * a stream's open one timeout at most and the loops that read and poll skip it.
 */
export function guardedPushStore (store: PushStore, guard: RedisGuard): PushStore {
  const call = async <T>(op: () => Promise<T>): Promise<T> => guard.call(op)
  return {
    lead: async (source, token, ttlMs) => call(() => store.lead(source, token, ttlMs)),
    resign: async (source, token) => call(() => store.resign(source, token)),
    snapshot: async (source) => call(() => store.snapshot(source)),
    commit: async (input) => call(() => store.commit(input)),
    tail: async (source) => call(() => store.tail(source)),
    page: async (source, afterId, count) => call(() => store.page(source, afterId, count)),
    claimStream: async (consumer, streamId, limit, ttlMs) => call(() => store.claimStream(consumer, streamId, limit, ttlMs)),
    releaseStream: async (consumer, streamId) => call(() => store.releaseStream(consumer, streamId)),
    cursor: async (source, target) => call(() => store.cursor(source, target)),
    setCursor: async (source, target, id, opts) => call(() => store.setCursor(source, target, id, opts)),
    deadLetter: async (consumer, entry, keep) => call(() => store.deadLetter(consumer, entry, keep)),
    deadLetters: async (consumer) => call(() => store.deadLetters(consumer))
  }
}
