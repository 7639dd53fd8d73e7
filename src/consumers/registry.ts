// The set of known consumers, swapped whole on reload: a request sees either the old set or the new one,
// never a half-read file, and a broken file leaves the old set in place.
import type { FastifyBaseLogger } from 'fastify'
import { readConsumersFile } from './file.js'
import { generateKey, hashKey, isKeyShaped, keyDigest, verifyKey } from './keys.js'
import { toRecord, type Consumer, type ConsumerRecord } from './schema.js'
import { ALL_LISTS, SCOPES } from './scopes.js'

export const DEMO_CONSUMER_ID = 'demo'
/** Keys remembered after a verified lookup (the oldest is forgotten first). */
export const KNOWN_KEYS_MAX = 10_000

export interface ConsumerRegistryOptions {
  /** Path of the consumers file; '' creates the in-memory demo consumer. */
  file: string
  log: Pick<FastifyBaseLogger, 'info' | 'warn'>
  /** How many verified keys to remember (default KNOWN_KEYS_MAX). */
  knownKeysMax?: number
  /** Whether the list catalogue (CUSTOM_LISTS) has this custom list; a grant of one it lacks is warned about. */
  isCustomList?: (name: string) => boolean
}

export interface ReloadResult { ok: boolean, error?: string }

/** Runs after a reload installed the new consumers (the limits hand back what was leased under the old ones). */
export type ReloadListener = () => Promise<void>

export type ConsumerRegistry = Awaited<ReturnType<typeof createConsumerRegistry>>

function demoRecord (key: string): ConsumerRecord {
  return toRecord({
    id: DEMO_CONSUMER_ID,
    name: 'Demo consumer (in memory; set CONSUMERS_FILE to use real consumers)',
    key_sha256: hashKey(key),
    scopes: [...SCOPES],
    lists: [ALL_LISTS]
  })
}

export async function createConsumerRegistry (opts: ConsumerRegistryOptions) {
  let byHash = new Map<string, ConsumerRecord>()
  let byId = new Map<string, ConsumerRecord>()
  // Keys that hashed to a record: a known key costs one map lookup instead of a SHA-256 per request.
  // Only keys that matched a record go in (an unknown key is hashed every time, so guessing cannot
  // fill it), it is bounded, and it is emptied whenever the set of consumers changes. Looking a key up
  // by its own text compares strings only on a full hash match, which tells a guesser nothing.
  let known = new Map<string, ConsumerRecord>()
  const knownMax = opts.knownKeysMax ?? KNOWN_KEYS_MAX
  const demoKey = opts.file === '' ? generateKey() : undefined
  const listeners: ReloadListener[] = []

  // Warned, not refused: the catalogue follows CUSTOM_LISTS, which may name the list after the grant is
  // made. Until it does, every write to it answers 404 while /v1/me shows the grant.
  function warnUnknownLists (records: readonly ConsumerRecord[]): void {
    const isCustomList = opts.isCustomList
    if (isCustomList === undefined) return
    for (const { consumer } of records) {
      const unknown = consumer.lists.filter((name) => name !== ALL_LISTS && !isCustomList(name))
      if (unknown.length > 0) opts.log.warn({ consumer: consumer.id, lists: unknown }, 'consumer is granted lists that are not custom lists of CUSTOM_LISTS (or its defaults): writes to them answer 404')
    }
  }

  function install (records: readonly ConsumerRecord[]): void {
    warnUnknownLists(records)
    const hashes = new Map<string, ConsumerRecord>()
    const ids = new Map<string, ConsumerRecord>()
    for (const record of records) {
      ids.set(record.consumer.id, record)
      for (const hash of record.hashes) hashes.set(hash, record)
    }
    byHash = hashes
    byId = ids
    known = new Map()
  }

  /** The record holding this key (enabled or not), or undefined. */
  function recordOf (key: string): ConsumerRecord | undefined {
    const remembered = known.get(key)
    if (remembered !== undefined) return remembered
    if (!isKeyShaped(key)) return undefined
    // The map lookup is by the hash of a 160-bit random key, which reveals nothing useful through
    // timing; verifyKey then makes the final comparison in constant time.
    // One hash per new key: the hex form finds the record, the raw digest is compared in constant time.
    const digest = keyDigest(key)
    const record = byHash.get(digest.toString('hex'))
    if (record === undefined || !verifyKey(key, record.hashes, digest)) return undefined
    if (known.size >= knownMax) known.delete(known.keys().next().value as string)
    known.set(key, record)
    return record
  }

  /** Reads and installs the file, then tells the listeners; never throws. */
  async function reloadOnce (): Promise<ReloadResult> {
    try {
      const records = await readConsumersFile(opts.file)
      install(records)
      opts.log.info({ consumers: records.length }, 'consumers reloaded')
    } catch (err) {
      const error = (err as Error).message
      opts.log.warn({ error }, 'consumers reload failed; keeping the previous consumers')
      return { ok: false, error }
    }
    // The new consumers are in place whatever a listener meets: its failure is its own, logged.
    for (const listener of listeners) {
      try {
        await listener()
      } catch (err) {
        opts.log.warn({ error: (err as Error).message }, 'a consumers reload listener failed')
      }
    }
    return { ok: true }
  }

  // Reloads run one at a time, listeners included: two reads at once could end in either order, and the
  // older file install last. `queued` is the reload that starts once the running one ends; every request
  // made before it starts joins it, as it reads the file after all of them.
  let tail: Promise<unknown> = Promise.resolve()
  let queued: Promise<ReloadResult> | undefined

  // Boot: a bad file throws here and so fails buildApp, naming the entry and field.
  install(demoKey === undefined ? await readConsumersFile(opts.file) : [demoRecord(demoKey)])

  return {
    demoKey,
    /** The enabled consumer holding this key, or undefined (malformed, unknown, revoked or disabled). */
    authenticate (key: string): Consumer | undefined {
      const record = recordOf(key)
      if (record === undefined || record.consumer.disabled) return undefined
      return record.consumer
    },
    get (id: string): Consumer | undefined {
      return byId.get(id)?.consumer
    },
    list (): Consumer[] {
      return [...byId.values()].map((r) => r.consumer)
    },
    /**
     * Re-reads the file, after any reload running (requests made meanwhile share one); on any error the
     * current consumers stay and the reason is logged and returned.
     */
    async reload (): Promise<ReloadResult> {
      if (demoKey !== undefined) return { ok: true }
      if (queued !== undefined) return await queued
      const run = tail.then(async () => {
        queued = undefined
        return await reloadOnce()
      })
      queued = run
      // reloadOnce never throws; were it to, the next reloads must still run.
      tail = run.catch(() => undefined)
      return await run
    },
    /** Calls `listener` after every successful reload of the file; reload() resolves once it has. */
    onReload (listener: ReloadListener): void {
      listeners.push(listener)
    }
  }
}
