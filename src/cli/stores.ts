// What the CLIs (audit, usage, keys list) read: the gateway's own stores, chosen by the same settings
// (REDIS_URL and REDIS_KEY_PREFIX, else AUDIT_FILE and USAGE_FILE), so a report reads exactly what the
// gateway wrote. Opens Redis only for the call and closes it after.
import type { Redis } from 'ioredis'
import { createAuditStore } from '../audit/plugin.js'
import type { AuditStore } from '../audit/store.js'
import { loadConfig, type Config } from '../config.js'
import { createRedis } from '../plugins/redis.js'
import { createUsageStore } from '../usage/plugin.js'
import type { UsageStore } from '../usage/store.js'

// A CLI waits longer than a request would: reading a month of usage or a page of audit is one-off work.
const CLI_REDIS_TIMEOUT_MS = 10000

export interface Stores { config: Config, audit: AuditStore, usage: UsageStore }

/**
 * Runs `fn` with the stores the settings in `env` choose, closing Redis afterwards. `onUnreadableAudit`:
 * told of each audit record in Redis that does not decode (the reads leave it out).
 */
export async function withStores<T> (
  env: Record<string, string | undefined>, fn: (stores: Stores) => Promise<T>, onUnreadableAudit?: (id: string, reason: string) => void
): Promise<T> {
  const config = loadConfig(env)
  let redis: Redis | null = null
  try {
    if (config.REDIS_URL !== '') {
      redis = createRedis({ ...config, REDIS_COMMAND_TIMEOUT_MS: Math.max(config.REDIS_COMMAND_TIMEOUT_MS, CLI_REDIS_TIMEOUT_MS) })
      redis.on('error', () => {})
      await redis.connect()
    }
    return await fn({ config, audit: createAuditStore(config, redis, onUnreadableAudit), usage: createUsageStore(config, redis) })
  } finally {
    // A client that never connected (or lost Redis) keeps reconnecting, and the process would never
    // exit: it is disconnected, which stops that; a connected one quits politely.
    const client = redis as Redis | null
    if (client !== null) {
      if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
      else client.disconnect()
    }
  }
}
