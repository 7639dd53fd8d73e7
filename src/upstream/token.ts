// Holds the upstream token server-side and keeps it usable unattended:
// - `Token has expired.` → one refresh through auth-token/ (single flight: every caller that saw the
//   same stale token waits on the same promise), then the caller replays once;
// - `Invalid token.` (another holder rotated it) → re-read the shared token and the token source first,
//   refresh only if neither gives anything new.
// With Redis, replicas share the current token, and one replica refreshes under a lock while the others
// wait for the new token (a refresh rotates the key, which would kill every other replica's copy).
// A failed login starts a backoff shared by every replica (login-backoff.ts); until it ends, a token the
// upstream refused is not sent again and callers get 503 GW_UPSTREAM_AUTH_BACKOFF with Retry-After.
// The token never leaves this module except as the Authorization header the client builds, and as the
// list of secrets the client scrubs from upstream replies (secrets()).
import { createHash, randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Redis } from 'ioredis'
import { UpstreamAuthBackoffError, UpstreamAuthError, withRetryAfter } from '../errors.js'
import type { RedisGuard } from '../lib/redis-health.js'
import { DEFAULT_LOGIN_BACKOFF, classifyLoginError, createLoginBackoff, type LoginBackoffOptions, type RefreshState } from './login-backoff.js'

export type { RefreshState } from './login-backoff.js'

/** How a refresh went: a login succeeded or failed, or none was tried because logins are backing off. */
export type RefreshResult = 'ok' | 'failed' | 'locked_out'

export interface TokenSources {
  token: string
  tokenFile: string
  username: string
  usernameFile: string
  password: string
  passwordFile: string
  /**
   * A *_FILE setting could not be read (it then counts as empty: no token, no credential). Called once per
   * distinct failure of a setting, not on every read: the token file is read again on every refusal.
   */
  onUnreadable?: (setting: FileSetting, file: string, err: Error) => void
}

export type FileSetting = 'ATLAS_TOKEN_FILE' | 'ATLAS_USERNAME_FILE' | 'ATLAS_PASSWORD_FILE'

/** Logs in through auth-token/ and returns the new key; throws when the upstream refuses. */
export type LoginFn = (username: string, password: string) => Promise<string>

export interface SharedToken {
  redis: Redis
  prefix: string
  /** The app's shared Redis health: counts failures, and skips Redis while it is unavailable. */
  guard: RedisGuard
  /**
   * LIMITS_ON_REDIS_ERROR=closed: while the lock cannot be taken, no replica logs in (each would, and a
   * Redis failover would cost one login per replica); requests wait, then get a 503 with Retry-After.
   */
  isClosed?: boolean
  /** How long the refresh lock lives (default 15 s, beyond the login's own 10 s bound); tests shorten it. */
  lockTtlMs?: number
}

export type TokenManager = ReturnType<typeof createTokenManager>

const TOKEN_RE = /^[0-9a-f]{40}$/
const LOCK_TTL_MS = 15_000
// The shared token key expires like every gateway key. Each refresh rewrites it; when it lapses (a token
// unused and unrefreshed for this long), replicas keep their own copy, and one that starts fresh falls
// back to the configured token and the usual `Invalid token.` recovery.
const TOKEN_KEY_TTL_S = 30 * 86400
// Deletes the lock only while it still holds this holder's value: a login that outlasted the lock must
// not release the lock another replica took after it expired (a third could then log in beside it).
// One key: on a Redis Cluster it runs on the key's own node.
const RELEASE_LOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`
const WAIT_STEP_MS = 100
const WAIT_MAX_MS = 10_000
// Tokens remembered for scrubbing: the current one and a few before it (a reply may quote an old one).
const HELD_TOKENS = 4

async function readSecret (value: string, file: string): Promise<string> {
  if (file === '') return value
  return (await readFile(file, 'utf8')).trim()
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Tokens are compared by digest where they are remembered only to be refused. */
const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16)

export function createTokenManager (
  sources: TokenSources,
  login: LoginFn,
  onRefresh: (result: RefreshResult) => void = () => {},
  shared?: SharedToken,
  backoffOptions: LoginBackoffOptions = DEFAULT_LOGIN_BACKOFF
) {
  let current: string | undefined
  let refreshing: Promise<string> | undefined
  let lastRefreshFailed = false
  // Tokens the upstream refused that no login has replaced yet: sending them again would only spend budget.
  const refused = new Set<string>()
  const held = new Set<string>()
  let password = sources.password
  // The token source as last read: only a change there (an operator put a new token in) is worth a try.
  // After an unattended login the configured token is stale, yet differs from the one held.
  let sourceSeen: string | undefined
  // Each *_FILE setting's last read failure, until a read succeeds: what was warned about.
  const unreadable = new Map<FileSetting, string>()

  /** `value`, or the content of `file` when one is set; a failure is reported once, then thrown. */
  async function readNamed (setting: FileSetting, value: string, file: string): Promise<string> {
    try {
      const text = await readSecret(value, file)
      unreadable.delete(setting)
      return text
    } catch (err) {
      const message = (err as Error).message
      if (unreadable.get(setting) !== message) {
        unreadable.set(setting, message)
        sources.onUnreadable?.(setting, file, err as Error)
      }
      throw err
    }
  }
  const readUsername = () => readNamed('ATLAS_USERNAME_FILE', sources.username, sources.usernameFile).catch(() => '')
  const readPassword = () => readNamed('ATLAS_PASSWORD_FILE', sources.password, sources.passwordFile).catch(() => '')

  /** Why no login can be tried, for the operator: which settings are missing, or which files unreadable. */
  function noCredentials (stale: string): string {
    const files = (['ATLAS_USERNAME_FILE', 'ATLAS_PASSWORD_FILE'] as const).filter((s) => unreadable.has(s))
    const why = files.length === 0 ? '' : ` (${files.join(' and ')} could not be read)`
    const set = 'ATLAS_USERNAME and ATLAS_PASSWORD (or ATLAS_USERNAME_FILE and ATLAS_PASSWORD_FILE)'
    return stale === ''
      ? `No upstream token is configured and no login credentials are${why}; the operator must set ATLAS_TOKEN (or ATLAS_TOKEN_FILE), or ${set}.`
      : `The upstream token is no longer valid and no refresh credentials are configured${why}; the operator must set ${set}.`
  }
  /** Makes `token` the current token, and remembers it for secrets(). */
  function hold (token: string): string {
    current = token
    if (token === '') return token
    held.delete(token)
    held.add(token)
    if (held.size > HELD_TOKENS) held.delete(held.values().next().value as string)
    return token
  }
  const tokenKey = `${shared?.prefix ?? ''}token`
  const lockKey = `${shared?.prefix ?? ''}token:lock`
  const lockTtlMs = shared?.lockTtlMs ?? LOCK_TTL_MS

  /**
   * Redis failures never stop upstream calls, nor make them wait: the local copy serves, and while
   * Redis is unavailable (after a failure anywhere in the gateway) it is not even asked.
   */
  async function guarded<T> (fn: (redis: Redis) => Promise<T>, fallback: T): Promise<T> {
    if (shared === undefined) return fallback
    const { redis } = shared
    return shared.guard.run(async () => fn(redis), fallback)
  }

  const readShared = () => guarded(async (r) => (await r.get(tokenKey)) ?? undefined, undefined)
  const writeShared = (token: string) => guarded(async (r) => { await r.set(tokenKey, token, 'EX', TOKEN_KEY_TTL_S) }, undefined)

  async function readSource (): Promise<string> {
    const token = await readNamed('ATLAS_TOKEN_FILE', sources.token, sources.tokenFile)
    sourceSeen = token
    return token
  }

  /** The token source, if it holds a token other than when it was last read (the first read counts). */
  async function changedSource (): Promise<string | undefined> {
    const before = sourceSeen
    const fromSource = await readSource().catch(() => '')
    return fromSource === '' || fromSource === before ? undefined : fromSource
  }

  const backoff = createLoginBackoff(backoffOptions, shared === undefined ? undefined : { run: guarded, prefix: shared.prefix })

  /** Logins are backing off: `stale` is not sent again until a login replaces it. */
  function lockedOut (record: Parameters<typeof backoff.error>[0], stale: string): Error {
    refused.add(fingerprint(stale))
    onRefresh('locked_out')
    return backoff.error(record)
  }

  async function login1 (stale: string): Promise<string> {
    const username = await readUsername()
    password = await readPassword()
    if (username === '' || password === '') {
      lastRefreshFailed = true
      onRefresh('failed')
      throw new UpstreamAuthError(noCredentials(stale))
    }
    let token: string
    try {
      token = await login(username, password)
      if (!TOKEN_RE.test(token)) throw new Error('auth-token/ returned a token that is not 40 hex characters')
    } catch (err) {
      const failure = classifyLoginError(err)
      // No login reached the upstream (its breaker is open): not a step of the backoff.
      if (failure === undefined) throw err
      lastRefreshFailed = true
      onRefresh('failed')
      refused.add(fingerprint(stale))
      const record = await backoff.recordFailure(failure.reason, failure.retryAfterS)
      throw Object.assign(backoff.error(record), { cause: err })
    }
    hold(token)
    lastRefreshFailed = false
    refused.clear()
    onRefresh('ok')
    await backoff.recordSuccess()
    await writeShared(token)
    return token
  }

  /**
   * One replica logs in under the lock; the others wait for the token it stores, or for the backoff it
   * records when its login fails. The record is written before the lock is released, so every replica
   * sees it before it could try: one attempt per backoff step for the whole deployment.
   */
  async function refreshAcrossReplicas (stale: string): Promise<string> {
    for (let waited = 0; ; waited += WAIT_STEP_MS) {
      const holder = randomUUID()
      const isLocked = await guarded(async (r) => (await r.set(lockKey, holder, 'PX', lockTtlMs, 'NX')) === 'OK', shared?.isClosed !== true)
      if (isLocked) {
        try {
          const fresh = await readShared()
          if (fresh !== undefined && fresh !== stale) return hold(fresh)
          const waiting = await backoff.readShared()
          if (waiting !== undefined) throw lockedOut(waiting, stale)
          return await login1(stale)
        } finally {
          await guarded(async (r) => { await r.eval(RELEASE_LOCK_LUA, 1, lockKey, holder) }, undefined)
        }
      }
      if (waited >= WAIT_MAX_MS) {
        throw withRetryAfter(new UpstreamAuthBackoffError('Another gateway replica is refreshing the upstream token; retry after the indicated time.'), 1)
      }
      await sleep(WAIT_STEP_MS)
      const fresh = await readShared()
      if (fresh !== undefined && fresh !== stale) return hold(fresh)
      const waiting = await backoff.readShared()
      if (waiting !== undefined) throw lockedOut(waiting, stale)
    }
  }

  async function refresh (stale: string): Promise<string> {
    if (refreshing !== undefined) return refreshing
    if (current !== undefined && current !== stale) return current
    const waiting = backoff.active()
    if (waiting !== undefined) throw lockedOut(waiting, stale)
    refreshing = refreshAcrossReplicas(stale).finally(() => { refreshing = undefined })
    return refreshing
  }

  return {
    /**
     * The token to send. No token, or one the upstream refused, is not sent: a changed token source wins,
     * else 503 GW_UPSTREAM_AUTH_BACKOFF while logins back off, else a refresh before the call.
     */
    async current (): Promise<string> {
      const fromRedis = await readShared()
      let token: string
      if (fromRedis !== undefined) {
        token = hold(fromRedis)
      } else {
        if (current === undefined) {
          // An unreadable token file is no token (warned about once): the login below then gets one.
          current = hold(await readSource().catch(() => ''))
          if (current !== '') await guarded(async (r) => { await r.set(tokenKey, current as string, 'EX', TOKEN_KEY_TTL_S, 'NX') }, undefined)
        }
        token = current
      }
      if (token !== '' && (refused.size === 0 || !refused.has(fingerprint(token)))) return token
      // No token (only the login's credentials, or none yet), or one the upstream refused: a token put in
      // the source since wins (no 401 would come to have it re-read: nothing is sent without a token);
      // else log in first. Sent without one, every call of a cold start was refused and replayed, two
      // calls and two budget tokens each.
      const fromSource = await changedSource()
      if (fromSource !== undefined && !refused.has(fingerprint(fromSource))) {
        hold(fromSource)
        await writeShared(fromSource)
        return fromSource
      }
      return refresh(token)
    },

    /** Refreshes once for every caller that saw `stale`; a caller that saw an older token just gets the new one. */
    refresh,

    /** After `Invalid token.`: a newer shared token or a changed token source wins; otherwise refresh. */
    async recoverInvalid (stale: string): Promise<string> {
      if (refreshing !== undefined) return refreshing
      const fromRedis = await readShared()
      if (fromRedis !== undefined && fromRedis !== stale) return hold(fromRedis)
      if (current !== undefined && current !== stale) return current
      const fromSource = await changedSource()
      if (fromSource !== undefined && fromSource !== stale) {
        hold(fromSource)
        await writeShared(fromSource)
        return fromSource
      }
      return refresh(stale)
    },

    /** Token refresh as this replica last saw it: for /healthz detail and the backoff gauge. */
    refreshState (): RefreshState {
      return backoff.state()
    },

    /** What an upstream reply must never show: the configured and recently held tokens, and the password. */
    secrets (): string[] {
      return [sources.token, ...held, password]
    },

    /**
     * For the `token_refresh` health check: login credentials are configured (values or files), so an
     * expired token can be replaced unattended. Passive, like isUsable: it reads the sources, never logs in.
     */
    async hasCredentials (): Promise<boolean> {
      const [username, secret] = await Promise.all([readUsername(), readPassword()])
      return username !== '' && secret !== ''
    },

    /** At boot: reads every *_FILE setting once, so one that cannot be read is reported before any call. */
    async checkFiles (): Promise<void> {
      await Promise.all([readNamed('ATLAS_TOKEN_FILE', sources.token, sources.tokenFile).catch(() => ''), readUsername(), readPassword()])
    },

    /**
     * For the `token` health check: a token is held (or configured), the upstream has not refused it, and
     * the last refresh (if any) did not fail. Passive: it never refreshes, so no check spends a login.
     */
    async isUsable (): Promise<boolean> {
      // Not readSource(): a look here must not make the source count as read.
      const token = current ?? await readNamed('ATLAS_TOKEN_FILE', sources.token, sources.tokenFile).catch(() => '')
      return token !== '' && !refused.has(fingerprint(token)) && !lastRefreshFailed
    }
  }
}
