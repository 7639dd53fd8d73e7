// Holds the upstream token server-side and keeps it usable unattended:
// - `Token has expired.` → one refresh through auth-token/ (single flight: every caller that saw the
//   same stale token waits on the same promise), then the caller replays once;
// - `Invalid token.` (another holder rotated it) → re-read the shared token and the token source first,
//   refresh only if neither gives anything new.
// With Redis, replicas share the current token, and one replica refreshes under a lock while the others
// wait for the new token (a refresh rotates the key, which would kill every other replica's copy).
// The token never leaves this module except as the Authorization header the client builds, and as the
// list of secrets the client scrubs from upstream replies (secrets()).
import { readFile } from 'node:fs/promises'
import type { Redis } from 'ioredis'
import { UpstreamAuthError } from '../errors.js'

export interface TokenSources {
  token: string
  tokenFile: string
  username: string
  usernameFile: string
  password: string
  passwordFile: string
}

/** Logs in through auth-token/ and returns the new key; throws when the upstream refuses. */
export type LoginFn = (username: string, password: string) => Promise<string>

export interface SharedToken {
  redis: Redis
  prefix: string
  onError: (err: unknown) => void
}

export type TokenManager = ReturnType<typeof createTokenManager>

const TOKEN_RE = /^[0-9a-f]{40}$/
const LOCK_TTL_MS = 15_000
// The shared token key expires like every gateway key. Each refresh rewrites it; when it lapses (a token
// unused and unrefreshed for this long), replicas keep their own copy, and one that starts fresh falls
// back to the configured token and the usual `Invalid token.` recovery.
const TOKEN_KEY_TTL_S = 30 * 86400
const WAIT_STEP_MS = 100
const WAIT_MAX_MS = 10_000
// Tokens remembered for scrubbing: the current one and a few before it (a reply may quote an old one).
const HELD_TOKENS = 4

async function readSecret (value: string, file: string): Promise<string> {
  if (file === '') return value
  return (await readFile(file, 'utf8')).trim()
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function createTokenManager (sources: TokenSources, login: LoginFn, onRefresh: (result: 'ok' | 'failed') => void = () => {}, shared?: SharedToken) {
  let current: string | undefined
  let refreshing: Promise<string> | undefined
  let lastRefreshFailed = false
  const held = new Set<string>()
  let password = sources.password
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

  /** Redis failures never stop upstream calls: the local copy serves, and the error is counted. */
  async function guarded<T> (fn: (redis: Redis) => Promise<T>, fallback: T): Promise<T> {
    if (shared === undefined) return fallback
    try {
      return await fn(shared.redis)
    } catch (err) {
      shared.onError(err)
      return fallback
    }
  }

  const readShared = () => guarded(async (r) => (await r.get(tokenKey)) ?? undefined, undefined)
  const writeShared = (token: string) => guarded(async (r) => { await r.set(tokenKey, token, 'EX', TOKEN_KEY_TTL_S) }, undefined)

  async function readSource (): Promise<string> {
    return readSecret(sources.token, sources.tokenFile)
  }

  async function login1 (): Promise<string> {
    const username = await readSecret(sources.username, sources.usernameFile).catch(() => '')
    password = await readSecret(sources.password, sources.passwordFile).catch(() => '')
    if (username === '' || password === '') {
      lastRefreshFailed = true
      onRefresh('failed')
      throw new UpstreamAuthError('The upstream token is no longer valid and no refresh credentials are configured; the operator must set ATLAS_USERNAME and ATLAS_PASSWORD.')
    }
    try {
      const token = await login(username, password)
      if (!TOKEN_RE.test(token)) throw new Error('auth-token/ returned a token that is not 40 hex characters')
      hold(token)
      lastRefreshFailed = false
      onRefresh('ok')
      await writeShared(token)
      return token
    } catch (err) {
      lastRefreshFailed = true
      onRefresh('failed')
      throw Object.assign(new UpstreamAuthError('The upstream token could not be refreshed; the operator must check the ATLAS credentials.'), { cause: err })
    }
  }

  /** One replica logs in under the lock; the others wait for the token it stores. */
  async function refreshAcrossReplicas (stale: string): Promise<string> {
    const isLocked = await guarded(async (r) => (await r.set(lockKey, '1', 'PX', LOCK_TTL_MS, 'NX')) === 'OK', true)
    if (isLocked) {
      try {
        const fresh = await readShared()
        if (fresh !== undefined && fresh !== stale) return hold(fresh)
        return await login1()
      } finally {
        await guarded(async (r) => { await r.del(lockKey) }, undefined)
      }
    }
    for (let waited = 0; waited < WAIT_MAX_MS; waited += WAIT_STEP_MS) {
      await sleep(WAIT_STEP_MS)
      const fresh = await readShared()
      if (fresh !== undefined && fresh !== stale) return hold(fresh)
    }
    return login1()
  }

  return {
    async current (): Promise<string> {
      const fromRedis = await readShared()
      if (fromRedis !== undefined) return hold(fromRedis)
      if (current === undefined) {
        current = hold(await readSource())
        if (current !== '') await guarded(async (r) => { await r.set(tokenKey, current as string, 'EX', TOKEN_KEY_TTL_S, 'NX') }, undefined)
      }
      return current
    },

    /** Refreshes once for every caller that saw `stale`; a caller that saw an older token just gets the new one. */
    async refresh (stale: string): Promise<string> {
      if (refreshing !== undefined) return refreshing
      if (current !== undefined && current !== stale) return current
      refreshing = refreshAcrossReplicas(stale).finally(() => { refreshing = undefined })
      return refreshing
    },

    /** After `Invalid token.`: a newer shared token or a changed token source wins; otherwise refresh. */
    async recoverInvalid (stale: string): Promise<string> {
      if (refreshing !== undefined) return refreshing
      const fromRedis = await readShared()
      if (fromRedis !== undefined && fromRedis !== stale) return hold(fromRedis)
      if (current !== undefined && current !== stale) return current
      const fromSource = await readSource().catch(() => '')
      if (fromSource !== '' && fromSource !== stale) {
        hold(fromSource)
        await writeShared(fromSource)
        return fromSource
      }
      return this.refresh(stale)
    },

    /** What an upstream reply must never show: the configured and recently held tokens, and the password. */
    secrets (): string[] {
      return [sources.token, ...held, password]
    },

    /** For /readyz: a token is configured and the last refresh (if any) did not fail. */
    async isUsable (): Promise<boolean> {
      const token = await this.current().catch(() => '')
      return token !== '' && !lastRefreshFailed
    }
  }
}
