// Every Redis call of the cache goes through a guard, so that a stalled or dead Redis never takes reads
// down (issue 5): each call is bounded by a timeout (even when the shared client has no commandTimeout),
// a failure becomes the caller's fallback value (a miss, a no-op), and after a failure the guard skips
// Redis for a short cool-down instead of making every request wait out its own timeout.

export interface RedisGuardOptions {
  /** A call slower than this counts as failed (default 500 ms, as REDIS_COMMAND_TIMEOUT_MS). */
  timeoutMs?: number
  /** How long Redis is skipped after a failure (default 1 s). */
  cooldownMs?: number
  /** Clock in ms; tests inject one to end the cool-down. */
  now?: () => number
  /** Told about every failure (timeouts included), e.g. to count a metric. */
  onError?: (err: unknown) => void
}

export interface RedisGuard {
  /** Runs `op`; on failure, timeout or during a cool-down resolves with `fallback` instead. */
  run: <T>(op: () => Promise<T>, fallback: T) => Promise<T>
  /** Whether calls are being skipped after a recent failure. */
  readonly isOpen: boolean
}

export const DEFAULT_REDIS_TIMEOUT_MS = 500
export const DEFAULT_REDIS_COOLDOWN_MS = 1000

export function createRedisGuard (opts: RedisGuardOptions = {}): RedisGuard {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS
  const cooldownMs = opts.cooldownMs ?? DEFAULT_REDIS_COOLDOWN_MS
  const now = opts.now ?? Date.now
  let openUntil = 0

  function fail (err: unknown): void {
    openUntil = now() + cooldownMs
    opts.onError?.(err)
  }

  return {
    get isOpen () { return now() < openUntil },
    async run<T> (op: () => Promise<T>, fallback: T): Promise<T> {
      if (now() < openUntil) return fallback
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`redis call took over ${timeoutMs} ms`)), timeoutMs)
      })
      let pending: Promise<T> | undefined
      try {
        pending = op()
        return await Promise.race([pending, timeout])
      } catch (err) {
        // A call abandoned by the timeout may still reject later; that rejection has been accounted for.
        pending?.catch(() => {})
        fail(err)
        return fallback
      } finally {
        clearTimeout(timer)
      }
    }
  }
}
