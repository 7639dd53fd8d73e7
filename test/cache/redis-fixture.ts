// Redis for the cache tests: a client on the shared REDIS_URL with a per-test key prefix (removed on
// teardown), and a private redis-server child process for tests that pause it (never the shared one).
import { spawnSync } from 'node:child_process'
import type { Test } from 'tap'
import type { Redis } from 'ioredis'
import { createRedis } from '../../src/plugins/redis.js'
import { deleteByPrefix } from '../fixtures/redis-keys.js'

export const REDIS_URL = process.env.REDIS_URL ?? ''
/** Tests that start their own redis-server need the binary; like the others they run only when Redis is configured. */
export const CAN_START_REDIS = REDIS_URL !== '' && spawnSync('redis-server', ['--version']).status === 0

/**
 * The store's guard bound in these tests: writes of thousands of keys share two cores with a whole
 * parallel suite (and, in test/scale's matrix, a six-node cluster), far slower than production's 500 ms.
 */
export const TEST_STORE_TIMEOUT_MS = 3000

export function uniquePrefix (): string {
  return `agw-test:${process.pid}:${Math.random().toString(36).slice(2)}:`
}

/** A connected client on `url` (default REDIS_URL); its prefix's keys are deleted and it quits on teardown. */
export async function connectRedis (t: Test, url = REDIS_URL, timeoutMs = 2000): Promise<{ redis: Redis, prefix: string }> {
  const redis = createRedis({ REDIS_URL: url, REDIS_COMMAND_TIMEOUT_MS: timeoutMs })
  // Connection errors are expected in the pause tests; the guard counts failures of commands.
  redis.on('error', () => {})
  try {
    await redis.connect()
  } catch (err) {
    // A client whose first connect failed keeps reconnecting, and its timers kept the test file alive
    // until tap's timeout (seen on a loaded machine under Node 22): stop it, and fail this test alone.
    redis.disconnect()
    throw err
  }
  const prefix = uniquePrefix()
  t.teardown(async () => {
    await deleteByPrefix(redis, prefix).catch(() => {})
    await redis.quit().catch(() => redis.disconnect())
  })
  return { redis, prefix }
}

export { freePort, startRedisServer, type RedisServer } from '../fixtures/redis-server.js'
