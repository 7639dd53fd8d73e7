// One view of Redis health for every Redis user of the gateway (cache, fill locks, pub/sub, limits,
// upstream token, upstream budget), so that a stalled Redis costs a request at most one command
// timeout in total instead of one per user (issue 12):
// - every call is bounded by `timeoutMs`, even when the client itself has no commandTimeout;
// - the first timeout or connection error marks Redis down: calls still in flight are released at once
//   (they share the stalled connection, so they would only time out one after another), and every
//   later call is skipped for a cool-down, each user taking its own fallback;
// - after the cool-down a background probe (PING) tests Redis and, when it answers, calls go to Redis
//   again. Without a probe function, the first call after the cool-down is the probe and the others
//   keep skipping until it settles.
// A reply error (a script error, OOM) means Redis answered: it fails that call but Redis stays up. So
// does a value that does not parse (a SyntaxError, what JSON.parse throws: another version's record, a
// damaged one): Redis answered with it. Users decode what they read so that it does not throw at all.
// Until 2026-12-02 one truncated record made each read of it mark Redis down for every user.

export type RedisState = 'up' | 'down'

/** A call's outcome; `err` is undefined when the call was skipped or released because Redis is down. */
export type Attempt<T> = { ok: true, value: T } | { ok: false, err: unknown }

export interface RedisHealthOptions {
  /** A call slower than this counts as failed (default 500 ms, as REDIS_COMMAND_TIMEOUT_MS). */
  timeoutMs?: number
  /** How long Redis is skipped after a failure before it is probed (default 1 s). */
  cooldownMs?: number
  /** Clock in ms for the cool-down; tests inject one. */
  now?: () => number
  /** Run in the background when a cool-down ends; Redis is up again once it resolves. */
  probe?: () => Promise<unknown>
  /** Every failed call or reported error (timeouts included), with the user it came from. */
  onFailure?: (err: unknown, user: string) => void
  /** A call not made because Redis is cooling down. */
  onSkip?: (user: string) => void
  /** Transitions only: up → down (with the error and user that caused it) and down → up. */
  onStateChange?: (state: RedisState, err?: unknown, user?: string) => void
}

/** What one Redis user holds: the same health, with skips counted under its name. */
export interface RedisGuard {
  /** Whether a call made now would go to Redis. */
  readonly isAvailable: boolean
  /** Runs `op`; when skipped, failed or timed out, resolves with `fallback` instead. */
  run: <T>(op: () => Promise<T>, fallback: T) => Promise<T>
  /** Runs `op` and says how it went, for users whose fallback depends on why (limits). */
  attempt: <T>(op: () => Promise<T>) => Promise<Attempt<T>>
  /** Runs `op`; when skipped, failed or timed out, rejects (RedisSkippedError when it was skipped). */
  call: <T>(op: () => Promise<T>) => Promise<T>
  /**
   * call() for an `op` of many round trips (a scan of the audit stream, usage over many days): each is
   * bounded by the client's own command timeout, not the whole by one, so a long scan of good replies
   * is not taken for Redis failing (it was, and marked Redis down for every user).
   */
  callScan: <T>(op: () => Promise<T>) => Promise<T>
}

/** The value of an attempt, or its failure thrown (RedisSkippedError when the call was skipped). */
function settled<T> (result: Attempt<T>): T {
  if (result.ok) return result.value
  throw result.err ?? new RedisSkippedError()
}

/** A guarded call that was not made: Redis is known down. */
export class RedisSkippedError extends Error {
  constructor () {
    super('redis is down; skipped')
    this.name = 'RedisSkippedError'
  }
}

export type RedisHealth = ReturnType<typeof createRedisHealth>

export const DEFAULT_REDIS_TIMEOUT_MS = 500
export const DEFAULT_REDIS_COOLDOWN_MS = 1000

const RELEASED = new Error('redis went down while this call waited')

/** Redis answered with an error, or with a value that does not parse: the call failed, Redis did not. */
function isAnswered (err: unknown): boolean {
  return err instanceof SyntaxError || (typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'ReplyError')
}

export function createRedisHealth (opts: RedisHealthOptions = {}) {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS
  const cooldownMs = opts.cooldownMs ?? DEFAULT_REDIS_COOLDOWN_MS
  const now = opts.now ?? Date.now
  let state: RedisState = 'up'
  let downUntil = 0
  let isProbing = false
  let isClosed = false
  let probeTimer: NodeJS.Timeout | undefined
  const waiting = new Set<(err: Error) => void>()

  function isAvailable (): boolean {
    if (state === 'up') return true
    // With a background probe, only the probe decides; without one, the first call after the cool-down does.
    return opts.probe === undefined && !isProbing && now() >= downUntil
  }

  function markUp (): void {
    clearTimeout(probeTimer)
    if (state === 'up') return
    state = 'up'
    opts.onStateChange?.('up')
  }

  function markDown (err: unknown, user: string): void {
    const wasUp = state === 'up'
    state = 'down'
    downUntil = now() + cooldownMs
    if (wasUp) {
      for (const release of waiting) release(RELEASED)
      waiting.clear()
      opts.onStateChange?.('down', err, user)
    }
    scheduleProbe()
  }

  function report (err: unknown, user: string): void {
    opts.onFailure?.(err, user)
    if (!isAnswered(err)) markDown(err, user)
  }

  /** Runs `op` within the timeout; rejects with RELEASED when Redis is marked down meanwhile. */
  async function bounded<T> (op: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    let release: ((err: Error) => void) | undefined
    const stop = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`redis call took over ${timeoutMs} ms`)), timeoutMs)
      release = reject
      waiting.add(reject)
    })
    let pending: Promise<T> | undefined
    try {
      pending = op()
      return await Promise.race([pending, stop])
    } finally {
      // A call given up on may still reject later; its failure has been accounted for.
      pending?.catch(() => {})
      clearTimeout(timer)
      if (release !== undefined) waiting.delete(release)
    }
  }

  async function attempt<T> (user: string, op: () => Promise<T>, isBounded = true): Promise<Attempt<T>> {
    if (!isAvailable()) {
      opts.onSkip?.(user)
      return { ok: false, err: undefined }
    }
    const isProbe = state === 'down'
    if (isProbe) isProbing = true
    try {
      const value = isBounded ? await bounded(op) : await op()
      if (isProbe) markUp()
      return { ok: true, value }
    } catch (err) {
      if (err === RELEASED) return { ok: false, err: undefined }
      report(err, user)
      if (isProbe && isAnswered(err)) markUp()
      return { ok: false, err }
    } finally {
      if (isProbe) isProbing = false
    }
  }

  async function runProbe (probe: () => Promise<unknown>): Promise<void> {
    isProbing = true
    try {
      await bounded(probe)
      markUp()
    } catch (err) {
      if (isAnswered(err)) markUp()
      else report(err, 'probe')
    } finally {
      isProbing = false
    }
  }

  function scheduleProbe (): void {
    const probe = opts.probe
    if (probe === undefined || isClosed) return
    clearTimeout(probeTimer)
    probeTimer = setTimeout(() => { runProbe(probe).catch(() => {}) }, cooldownMs)
    // The probe never keeps the process alive on its own.
    probeTimer.unref()
  }

  return {
    get state (): RedisState { return state },
    get isAvailable (): boolean { return isAvailable() },
    /** The view one user holds; `user` labels its skips and failures (a bounded set of names). */
    guard (user: string): RedisGuard {
      return {
        get isAvailable () { return isAvailable() },
        async run<T> (op: () => Promise<T>, fallback: T): Promise<T> {
          const result = await attempt(user, op)
          return result.ok ? result.value : fallback
        },
        attempt: async <T>(op: () => Promise<T>) => attempt(user, op),
        async call<T> (op: () => Promise<T>): Promise<T> {
          return settled(await attempt(user, op))
        },
        async callScan<T> (op: () => Promise<T>): Promise<T> {
          return settled(await attempt(user, op, false))
        }
      }
    },
    /** A failure seen outside a guarded call (the client's connection errors, a health check). */
    report,
    /** Redis answered outside a guarded call (the client is ready again, a health check passed). */
    reportSuccess: markUp,
    /** Stops the background probe (on close). */
    close (): void {
      isClosed = true
      clearTimeout(probeTimer)
    }
  }
}
