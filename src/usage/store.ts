// Where usage counters and last_used go, one batch at a time (the plugin counts in memory). With Redis:
// one hash per UTC day (`<prefix>usage:{<day>}`, fields `<consumer>|<counter>`), its counters added and
// its expiry set at the end of the retention by one script per day, each its own command (the days lie
// in different slots); last_used in one hash (`<prefix>last-used`, fields `consumer:<id>` and
// `key:<sha256>`). Each batch has an id, and
// each day's script first sets a guard key for it (`<prefix>usage:{<day>}:batch:<id>`, in the day's
// slot, kept a day): a batch sent again because its reply was lost is applied once; a last_used field only
// ever moves forward. Without Redis: one JSON file, rewritten whole (write to a temporary file, then
// rename) at each flush.
import { readFile, rename, writeFile } from 'node:fs/promises'
import type { Redis } from 'ioredis'
import { toRow, type Counters, type UsageRow } from './report.js'

const DAY_MS = 86400000
// How long a batch's guard is kept: far longer than a batch is sent again (at the next flushes).
const BATCH_GUARD_S = 86400
// KEYS[1] the day's hash, KEYS[2] the batch's guard; ARGV[1] the hash's expiry (epoch ms), ARGV[2] the
// guard's lifetime (s), then field, increment pairs. Applies the counters only if the guard is new.
const ADD_DAY_LUA = `
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
`

// KEYS[1] the last-used hash; then field, epoch-ms pairs. Each field keeps the later of its value and
// the one sent: replicas flush in any order, and a batch sent again after an outage is older still.
const LAST_USED_LUA = `
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
`

/** Increments by day, then consumer. */
export type UsageDelta = Map<string, Map<string, Counters>>
/** Epoch ms of the last use, by `consumer:<id>` or `key:<sha256>`. */
export type LastUsed = Map<string, number>

/** One flush's counts; a batch sent again keeps its id, and the Redis store applies an id once. */
export interface UsageBatch {
  id: string
  delta: UsageDelta
  lastUsed: LastUsed
}

export interface UsageStore {
  add: (batch: UsageBatch) => Promise<void>
  /** Counters of the given days, by day then consumer. */
  read: (days: readonly string[]) => Promise<Map<string, Map<string, Counters>>>
  lastUsed: () => Promise<Record<string, number>>
}

const expiresAt = (day: string, retentionDays: number): number => Date.parse(day + 'T00:00:00Z') + (retentionDays + 1) * DAY_MS

export function createRedisUsageStore (redis: Redis, prefix: string, retentionDays: number): UsageStore {
  const dayKey = (day: string): string => `${prefix}usage:{${day}}`
  const lastKey = `${prefix}last-used`
  return {
    async add ({ id, delta, lastUsed }) {
      // One command per day and one for last_used, not one pipeline: their keys hash to different slots,
      // and a Cluster refuses a pipeline across slots of different masters (it did, and the failure
      // marked Redis down for every user at each flush). Each is applied once (the batch guard, the max).
      const sent: Array<Promise<unknown>> = []
      for (const [day, consumers] of delta) {
        const key = dayKey(day)
        const increments: Array<string | number> = []
        for (const [consumer, counters] of consumers) {
          for (const [name, n] of Object.entries(counters)) increments.push(`${consumer}|${name}`, n)
        }
        sent.push(redis.eval(ADD_DAY_LUA, 2, key, `${key}:batch:${id}`, expiresAt(day, retentionDays), BATCH_GUARD_S, ...increments))
      }
      // last_used is the later of the stored and the sent time, not added: sent again, it counts nothing twice.
      if (lastUsed.size > 0) sent.push(redis.eval(LAST_USED_LUA, 1, lastKey, ...[...lastUsed].flat()))
      const failed = (await Promise.allSettled(sent)).find((r) => r.status === 'rejected')
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
    },
    async read (days) {
      const out = new Map<string, Map<string, Counters>>()
      const hashes = await Promise.all(days.map((day) => redis.hgetall(dayKey(day))))
      days.forEach((day, k) => {
        const consumers = new Map<string, Counters>()
        for (const [field, value] of Object.entries(hashes[k] ?? {})) {
          const bar = field.indexOf('|')
          const consumer = field.slice(0, bar)
          const counters = consumers.get(consumer) ?? {}
          counters[field.slice(bar + 1)] = Number(value)
          consumers.set(consumer, counters)
        }
        if (consumers.size > 0) out.set(day, consumers)
      })
      return out
    },
    async lastUsed () {
      const all = await redis.hgetall(lastKey)
      return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Number(v)]))
    }
  }
}

interface UsageFile { days: Record<string, Record<string, Counters>>, last_used: Record<string, number> }

async function readUsageFile (path: string): Promise<UsageFile> {
  try {
    const data = JSON.parse(await readFile(path, 'utf8')) as Partial<UsageFile>
    return { days: data.days ?? {}, last_used: data.last_used ?? {} }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { days: {}, last_used: {} }
    throw err
  }
}

export function createFileUsageStore (path: string, retentionDays: number, now: () => number = Date.now): UsageStore {
  return {
    async add ({ delta, lastUsed }) {
      const data = await readUsageFile(path)
      for (const [day, consumers] of delta) {
        const stored = data.days[day] ??= {}
        for (const [consumer, counters] of consumers) {
          const into = stored[consumer] ??= {}
          for (const [name, n] of Object.entries(counters)) into[name] = (into[name] ?? 0) + n
        }
      }
      for (const [day] of Object.entries(data.days)) if (expiresAt(day, retentionDays) <= now()) delete data.days[day]
      for (const [key, ms] of lastUsed) data.last_used[key] = Math.max(ms, data.last_used[key] ?? 0)
      const tmp = `${path}.${process.pid}.tmp`
      await writeFile(tmp, JSON.stringify(data), { mode: 0o600 })
      await rename(tmp, path)
    },
    async read (days) {
      const data = await readUsageFile(path)
      const out = new Map<string, Map<string, Counters>>()
      for (const day of days) {
        const consumers = data.days[day]
        if (consumers !== undefined) out.set(day, new Map(Object.entries(consumers)))
      }
      return out
    },
    async lastUsed () {
      return (await readUsageFile(path)).last_used
    }
  }
}

export interface UsageQuery {
  days: readonly string[]
  consumer?: string
  /** `<day>|<consumer>` of the last row of the previous page. */
  cursor?: string
  limit: number
}

/** Report rows in (day, consumer) order, a page at a time. */
export async function readUsage (store: UsageStore, query: UsageQuery): Promise<{ rows: UsageRow[], next: string | null }> {
  const data = await store.read(query.days)
  const rows: UsageRow[] = []
  for (const day of [...query.days].sort()) {
    const consumers = data.get(day)
    if (consumers === undefined) continue
    for (const consumer of [...consumers.keys()].sort()) {
      if (query.consumer !== undefined && consumer !== query.consumer) continue
      if (query.cursor !== undefined && `${day}|${consumer}` <= query.cursor) continue
      rows.push(toRow(day, consumer, consumers.get(consumer) as Counters))
    }
  }
  const page = rows.slice(0, query.limit)
  const last = page[page.length - 1]
  return { rows: page, next: rows.length > query.limit && last !== undefined ? `${last.day}|${last.consumer}` : null }
}
