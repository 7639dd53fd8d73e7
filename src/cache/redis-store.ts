// The shared (L2) store on Redis. Values are raw bytes (getBuffer/mgetBuffer, SET PX), keys carry the
// gateway prefix, and tags are Redis sets of the keys carrying them. Every call goes through the
// gateway's RedisGuard (lib/redis-health.ts): an error or timeout is a miss or a no-op for the caller,
// and while Redis is unavailable the store is skipped without a call.
import type { Redis } from 'ioredis'
import { createRedisHealth, type RedisGuard } from '../lib/redis-health.js'
import { createTurnBatch } from '../lib/turn-batch.js'
import type { CacheStore, StoreEntry } from './store.js'

export interface RedisStoreOptions {
  redis: Redis
  /** The gateway's key prefix (REDIS_KEY_PREFIX); the store adds `c:` and its own sub-spaces. */
  prefix: string
  /** The app's shared Redis health (every Redis user skips a failing Redis together); built from the options below when absent. */
  guard?: RedisGuard
  timeoutMs?: number
  onError?: (err: unknown) => void
}

// Adds members to each tag set and extends (never shortens) its TTL, so a tag outlives every key it
// lists. PEXPIRE GT cannot do this: it treats a set without a TTL as infinite and would never set one.
// ARGV is unpacked in slices to stay below Lua's stack limit on large batches.
const ADD_TAGS_LUA = `
local ttl = tonumber(ARGV[1])
for _, tag in ipairs(KEYS) do
  for i = 2, #ARGV, 1000 do
    redis.call('SADD', tag, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  if redis.call('PTTL', tag) < ttl then redis.call('PEXPIRE', tag, ttl) end
end
return 0`

// setMany's tagging: one EVAL for a whole slice of entries, each entry's (tag, key) pairs with its own
// TTL: KEYS[i] is a tag set, ARGV[2i-1] the key it gains and ARGV[2i] that key's TTL. The same rule as
// ADD_TAGS_LUA: a tag's TTL is extended, never shortened.
const TAG_PAIRS_LUA = `
for i, tag in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i])
  redis.call('SADD', tag, ARGV[2 * i - 1])
  if redis.call('PTTL', tag) < ttl then redis.call('PEXPIRE', tag, ttl) end
end
return 0`

const DEL_CHUNK = 1000
// A large batch (a 1,000-id objects/ answer, ~11 MB) is written in slices, one after another, each its
// own guarded round trip: one slow slice cannot make the whole batch count as a Redis failure, and since
// ioredis copies a pipeline twice on its way out (each command, then the whole pipeline), only one
// slice's copies exist at a time; sent together, 4 MiB slices held two copies of the whole batch. A
// batch's L2 write is off the answer's path (cache.ts, deferL2), so the extra round trips delay no
// consumer.
const WRITE_CHUNK_ENTRIES = 500
const WRITE_CHUNK_BYTES = 1024 * 1024

function chunk (entries: readonly StoreEntry[]): StoreEntry[][] {
  const chunks: StoreEntry[][] = []
  let current: StoreEntry[] = []
  let bytes = 0
  for (const e of entries) {
    if (current.length > 0 && (current.length >= WRITE_CHUNK_ENTRIES || bytes + e.value.length > WRITE_CHUNK_BYTES)) {
      chunks.push(current)
      current = []
      bytes = 0
    }
    current.push(e)
    bytes += e.value.length
  }
  if (current.length > 0) chunks.push(current)
  return chunks
}

export function createRedisStore (opts: RedisStoreOptions): CacheStore {
  const { redis } = opts
  const guard = opts.guard ?? createRedisHealth({
    ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
    ...(opts.onError === undefined ? {} : { onFailure: opts.onError })
  }).guard('cache')
  // Entries and tag sets share one hash tag, `{c}`: an invalidation deletes entries and trims tag sets
  // in one MULTI, which a Redis Cluster runs only on keys of one slot (docs/architecture.md, Redis keys).
  const entryPrefix = `${opts.prefix}{c}:k:`
  const tagPrefix = `${opts.prefix}{c}:t:`
  const entryKey = (key: string): string => entryPrefix + key
  const tagKey = (tag: string): string => tagPrefix + tag
  const ttlOf = (ttlMs: number): number => Math.max(1, Math.ceil(ttlMs))

  /** Pipeline and MULTI report per-command errors in their result; any of them fails the whole call. */
  function check (results: Array<[Error | null, unknown]> | null): unknown[] {
    if (results === null) throw new Error('redis transaction aborted')
    return results.map(([err, value]) => {
      if (err !== null) throw err
      return value
    })
  }

  // Writes asked for in one event-loop turn go out together (lib/turn-batch.ts): the records of one
  // objects/ reply, stored by each request that waited on it, one id each, become one pipeline with one
  // tagging EVAL (slices as below), not a pipeline and an EVAL per request. Independent SETs need no
  // transaction: a pipeline is one round trip without MULTI's bookkeeping, and the slice's tags ride in
  // it as one EVAL.
  const writes = createTurnBatch<StoreEntry>(async (entries) => {
    for (const slice of chunk(entries)) await writeSlice(slice)
  })
  // addTags calls of one turn share one pipeline, hence one round trip and one timeout.
  const tagging = createTurnBatch<{ numKeys: number, args: Array<string | number> }>(async (batch) => {
    await guard.run(async () => {
      const pipeline = redis.pipeline()
      for (const { numKeys, args } of batch) pipeline.eval(ADD_TAGS_LUA, numKeys, ...args)
      check(await pipeline.exec())
    }, undefined)
  })

  /** A delete or invalidation lands after the writes and tags asked for before it, so it removes them too. */
  async function writesAskedBefore (): Promise<void> {
    await Promise.all([writes.flush(), tagging.flush()])
  }

  async function setMany (entries: readonly StoreEntry[]): Promise<void> {
    const live = entries.filter((e) => e.ttlMs > 0)
    if (live.length > 0) await writes.add(live)
  }

  async function writeSlice (slice: readonly StoreEntry[]): Promise<void> {
    await guard.run(async () => {
      const pipeline = redis.pipeline()
      const tagKeys: string[] = []
      const tagArgs: Array<string | number> = []
      for (const e of slice) {
        const key = entryKey(e.key)
        const ttl = ttlOf(e.ttlMs)
        pipeline.set(key, e.value, 'PX', ttl)
        for (const tag of e.tags ?? []) {
          tagKeys.push(tagKey(tag))
          tagArgs.push(key, ttl)
        }
      }
      if (tagKeys.length > 0) pipeline.eval(TAG_PAIRS_LUA, tagKeys.length, ...tagKeys, ...tagArgs)
      check(await pipeline.exec())
    }, undefined)
  }

  return {
    async get (key) {
      return guard.run(async () => (await redis.getBuffer(entryKey(key))) ?? undefined, undefined)
    },
    async getMany (keys) {
      const misses = keys.map(() => undefined)
      if (keys.length === 0) return misses
      return guard.run<Array<Buffer | undefined>>(async () => {
        const values = await redis.mgetBuffer(keys.map(entryKey))
        return values.map((v) => v ?? undefined)
      }, misses)
    },
    async peekMany (keys, bytes) {
      const misses = keys.map(() => undefined)
      if (keys.length === 0) return misses
      return guard.run<Array<Buffer | undefined>>(async () => {
        // One round trip; GETRANGE answers an absent key with an empty string.
        const pipeline = redis.pipeline()
        for (const key of keys) pipeline.getrangeBuffer(entryKey(key), 0, bytes - 1)
        return (check(await pipeline.exec()) as Buffer[]).map((v) => (v.length === 0 ? undefined : v))
      }, misses)
    },
    async set (key, value, ttlMs) {
      await setMany([{ key, value, ttlMs }])
    },
    setMany,
    async delete (keys) {
      if (keys.length === 0) return
      await writesAskedBefore()
      await guard.run(async () => { await redis.del(...keys.map(entryKey)) }, undefined)
    },
    async addTags (tags, keys, ttlMs) {
      if (tags.length === 0 || keys.length === 0 || ttlMs <= 0) return
      await tagging.add([{ numKeys: tags.length, args: [...tags.map(tagKey), ttlOf(ttlMs), ...keys.map(entryKey)] }])
    },
    async invalidateTags (tags) {
      if (tags.length === 0) return 0
      await writesAskedBefore()
      const done = await guard.attempt(async () => {
        const read = redis.pipeline()
        for (const tag of tags) read.smembers(tagKey(tag))
        const memberSets = check(await read.exec()) as string[][]
        // SREM of exactly the members read (not DEL of the tag) keeps any key tagged concurrently, so a
        // fill racing the invalidation stays findable by the next one.
        const write = redis.multi()
        let dels = 0
        const all = [...new Set(memberSets.flat())]
        for (let i = 0; i < all.length; i += DEL_CHUNK) {
          write.del(...all.slice(i, i + DEL_CHUNK))
          dels++
        }
        tags.forEach((tag, i) => {
          const members = memberSets[i] ?? []
          if (members.length > 0) write.srem(tagKey(tag), ...members)
        })
        const results = check(await write.exec())
        return results.slice(0, dels).reduce<number>((sum, n) => sum + Number(n), 0)
      })
      return done.ok ? done.value : undefined
    }
  }
}
