// Holds the upstream token server-side and keeps it usable unattended (contract §2.2–§2.3):
// - `Token has expired.` → one refresh through auth-token/ (single flight: every caller that saw the
//   same stale token waits on the same promise), then the caller replays once;
// - `Invalid token.` (another holder rotated it) → re-read the token source first, refresh only if that
//   gives nothing new.
// The token never leaves this module except as the Authorization header the client builds.
import { readFile } from 'node:fs/promises'
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

export type TokenManager = ReturnType<typeof createTokenManager>

const TOKEN_RE = /^[0-9a-f]{40}$/

async function readSecret (value: string, file: string): Promise<string> {
  if (file === '') return value
  return (await readFile(file, 'utf8')).trim()
}

export function createTokenManager (sources: TokenSources, login: LoginFn, onRefresh: (result: 'ok' | 'failed') => void = () => {}) {
  let current: string | undefined
  let refreshing: Promise<string> | undefined
  let lastRefreshFailed = false

  async function readSource (): Promise<string> {
    return readSecret(sources.token, sources.tokenFile)
  }

  async function doRefresh (): Promise<string> {
    const username = await readSecret(sources.username, sources.usernameFile).catch(() => '')
    const password = await readSecret(sources.password, sources.passwordFile).catch(() => '')
    if (username === '' || password === '') {
      lastRefreshFailed = true
      onRefresh('failed')
      throw new UpstreamAuthError('The upstream token is no longer valid and no refresh credentials are configured; the operator must set ATLAS_USERNAME and ATLAS_PASSWORD.')
    }
    try {
      const token = await login(username, password)
      if (!TOKEN_RE.test(token)) throw new Error('auth-token/ returned a token that is not 40 hex characters')
      current = token
      lastRefreshFailed = false
      onRefresh('ok')
      return token
    } catch (err) {
      lastRefreshFailed = true
      onRefresh('failed')
      throw Object.assign(new UpstreamAuthError('The upstream token could not be refreshed; the operator must check the ATLAS credentials.'), { cause: err })
    }
  }

  return {
    async current (): Promise<string> {
      if (current === undefined) current = await readSource()
      return current
    },

    /** Refreshes once for every caller that saw `stale`; a caller that saw an older token just gets the new one. */
    async refresh (stale: string): Promise<string> {
      if (refreshing !== undefined) return refreshing
      if (current !== undefined && current !== stale) return current
      refreshing = doRefresh().finally(() => { refreshing = undefined })
      return refreshing
    },

    /** After `Invalid token.`: a changed token source wins; otherwise refresh. */
    async recoverInvalid (stale: string): Promise<string> {
      if (refreshing !== undefined) return refreshing
      if (current !== undefined && current !== stale) return current
      const fromSource = await readSource().catch(() => '')
      if (fromSource !== '' && fromSource !== stale) {
        current = fromSource
        return fromSource
      }
      return this.refresh(stale)
    },

    /** For /readyz: a token is configured and the last refresh (if any) did not fail. */
    async isUsable (): Promise<boolean> {
      const token = await this.current().catch(() => '')
      return token !== '' && !lastRefreshFailed
    }
  }
}
