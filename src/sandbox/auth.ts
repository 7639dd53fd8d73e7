// Users, tokens and the authentication schemes: `Authorization: Token <key>` (keyword
// case-insensitive), then `?token=`; per-group expiry measured from token creation; staff exempt from
// expiry but not from the group-profile check. Basic auth exists only for auth-token, as in DRF.
import { createHash } from 'node:crypto'
import { AUTH_DETAILS, QUERY_TOKEN_PATTERN } from '../upstream/endpoints.js'

/** settings.TOKEN_EXPIRY: the window of users with no group. */
export const DEFAULT_TOKEN_EXPIRY_S = 86400
const DAY_US = 86400e6

export interface GroupProfile {
  name: string
  writeAccess: boolean
  expiryS: number
}

export interface SandboxUser {
  id: number
  username: string
  password: string
  role: string
  isStaff: boolean
  isActive: boolean
  /** The first group's profile; 'no-profile' for a group without one; null for no group. */
  group: GroupProfile | 'no-profile' | null
  token: { key: string, createdUs: number } | null
  generation: number
}

/** An authentication failure; the view decides 401 + WWW-Authenticate or 403. */
export class AuthFailed extends Error {}

/** The 40-hex key of a user's n-th token: deterministic from the seed, as DRF keys look. */
export function deriveToken (seed: number, username: string, generation = 0): string {
  return createHash('sha1').update(`atlas-sandbox:${seed}:${username}:${generation}`).digest('hex')
}

export function derivePassword (seed: number, username: string): string {
  return `pw-${createHash('sha1').update(`atlas-sandbox-password:${seed}:${username}`).digest('hex').slice(0, 16)}`
}

interface UserSeed {
  key: string
  username: string
  staff?: boolean
  active?: boolean
  group: 'readers' | 'writers' | 'one-day' | 'no-profile' | null
  /** Token age at start in days; null for no token. */
  tokenAgeDays: number | null
}

// The roles of the design plus the golden corpus users (upstream-golden.json `fixtures.users`).
const USER_SEEDS: readonly UserSeed[] = [
  { key: 'read', username: 'sandbox_read', group: 'readers', tokenAgeDays: 0 },
  { key: 'write', username: 'sandbox_write', group: 'writers', tokenAgeDays: 0 },
  { key: 'staff', username: 'sandbox_staff', staff: true, group: null, tokenAgeDays: 400 },
  { key: 'expired', username: 'sandbox_expired', group: 'one-day', tokenAgeDays: 2 },
  { key: 'inactive', username: 'sandbox_inactive', active: false, group: 'writers', tokenAgeDays: 0 },
  { key: 'noprofile', username: 'sandbox_noprofile', group: 'no-profile', tokenAgeDays: 0 },
  { key: 'golden_login', username: 'golden_login', group: 'writers', tokenAgeDays: 0 },
  { key: 'golden_newuser', username: 'golden_newuser', group: 'writers', tokenAgeDays: null },
  { key: 'golden_rotator', username: 'golden_rotator', group: 'one-day', tokenAgeDays: 2 }
]

function splitPyWhitespace (text: string): string[] {
  return text.split(/[ \t\n\r\v\f]+/).filter((part) => part !== '')
}

export class UserStore {
  readonly users = new Map<string, SandboxUser>()
  private readonly byKey = new Map<string, SandboxUser>()
  private readonly byUsername = new Map<string, SandboxUser>()

  constructor (private readonly seed: number, tokenTtlS: number, startUs: number) {
    const groups: Record<'readers' | 'writers' | 'one-day', GroupProfile> = {
      readers: { name: 'readers', writeAccess: false, expiryS: tokenTtlS },
      writers: { name: 'writers', writeAccess: true, expiryS: tokenTtlS },
      'one-day': { name: 'one-day', writeAccess: true, expiryS: 86400 }
    }
    USER_SEEDS.forEach((s, i) => {
      const user: SandboxUser = {
        id: i + 1,
        username: s.username,
        password: derivePassword(seed, s.username),
        role: s.key,
        isStaff: s.staff === true,
        isActive: s.active !== false,
        group: s.group === null || s.group === 'no-profile' ? s.group : groups[s.group],
        token: null,
        generation: 0
      }
      if (s.tokenAgeDays !== null) this.issue(user, startUs - s.tokenAgeDays * DAY_US)
      this.users.set(s.key, user)
      this.byUsername.set(user.username, user)
    })
  }

  private issue (user: SandboxUser, createdUs: number): string {
    if (user.token !== null) {
      this.byKey.delete(user.token.key)
      user.generation++
    }
    const key = deriveToken(this.seed, user.username, user.generation)
    user.token = { key, createdUs }
    this.byKey.set(key, user)
    return key
  }

  /** Deletes the user's token and creates a new one, as auth-token does for an expired token. */
  rotate (user: SandboxUser, nowUs: number): { key: string, createdUs: number } {
    const key = this.issue(user, nowUs)
    return { key, createdUs: nowUs }
  }

  /** The expiry window: the first group's profile, else settings.TOKEN_EXPIRY. */
  windowS (user: SandboxUser): number {
    return user.group === null || user.group === 'no-profile' ? DEFAULT_TOKEN_EXPIRY_S : user.group.expiryS
  }

  /** Backdates the user's token past its window, like the upstream tests do with `created`. */
  expire (user: SandboxUser, nowUs: number): void {
    if (user.token !== null) user.token.createdUs = nowUs - (this.windowS(user) + 1) * 1e6
  }

  hasWriteAccess (user: SandboxUser): boolean {
    return user.isStaff || (user.group !== null && user.group !== 'no-profile' && user.group.writeAccess)
  }

  /** ExpiringTokenAuthentication.authenticate_credentials. */
  authenticateKey (key: string, nowUs: number): SandboxUser {
    const user = this.byKey.get(key)
    if (user?.token == null) throw new AuthFailed(AUTH_DETAILS.invalid)
    if (!user.isActive) throw new AuthFailed('User inactive or deleted.')
    if (user.group === 'no-profile') {
      throw new AuthFailed('Could not authenticate: Group has no profile. Please contact administrator.')
    }
    if (!user.isStaff && nowUs - user.token.createdUs > this.windowS(user) * 1e6) throw new AuthFailed(AUTH_DETAILS.expired)
    return user
  }

  /**
   * TokenAuthentication.authenticate over the raw header (Node hands it over as Latin-1, which is
   * what DRF encodes it back to). null: no Token header, so the next scheme is tried.
   */
  authenticateHeader (header: string | undefined, nowUs: number): SandboxUser | null {
    const parts = splitPyWhitespace(header ?? '')
    if (parts.length === 0 || parts[0]?.toLowerCase() !== 'token') return null
    if (parts.length === 1) throw new AuthFailed(AUTH_DETAILS.noCredentials)
    if (parts.length > 2) throw new AuthFailed(AUTH_DETAILS.spaces)
    let key: string
    try {
      key = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(parts.slice(1).join(''), 'latin1'))
    } catch {
      throw new AuthFailed(AUTH_DETAILS.invalidChars)
    }
    return this.authenticateKey(key, nowUs)
  }

  /** QueryAuthentication: `?token=` (the last value, as QueryDict.get does). */
  authenticateQuery (token: string | undefined, nowUs: number): SandboxUser | null {
    if (token === undefined || token === '') return null
    if (!QUERY_TOKEN_PATTERN.test(token)) throw new AuthFailed(AUTH_DETAILS.badFormat)
    return this.authenticateKey(token, nowUs)
  }

  /** DRF BasicAuthentication, the one scheme of auth-token that can fail (SessionAuthentication needs a cookie). */
  authenticateBasic (header: string | undefined): SandboxUser | null {
    const parts = splitPyWhitespace(header ?? '')
    if (parts.length === 0 || parts[0]?.toLowerCase() !== 'basic') return null
    if (parts.length === 1) throw new AuthFailed('Invalid basic header. No credentials provided.')
    if (parts.length > 2) throw new AuthFailed('Invalid basic header. Credentials string should not contain spaces.')
    // base64.b64decode ignores characters outside the alphabet but insists on padding.
    const cleaned = parts.slice(1).join('').replace(/[^A-Za-z0-9+/=]/g, '')
    if (cleaned.length % 4 !== 0) throw new AuthFailed('Invalid basic header. Credentials not correctly base64 encoded.')
    const raw = Buffer.from(cleaned, 'base64')
    let decoded: string
    try {
      decoded = new TextDecoder('utf-8', { fatal: true }).decode(raw)
    } catch {
      decoded = raw.toString('latin1')
    }
    const colon = decoded.indexOf(':')
    const username = colon === -1 ? decoded : decoded.slice(0, colon)
    const password = colon === -1 ? '' : decoded.slice(colon + 1)
    // authenticate() (ModelBackend) turns an inactive user away like a wrong password, so DRF's
    // "User inactive or deleted." that follows it is never reached.
    const user = this.checkPassword(username, password)
    if (user === null) throw new AuthFailed('Invalid username/password.')
    return user
  }

  /** django.contrib.auth.authenticate (ModelBackend): inactive users do not authenticate. */
  checkPassword (username: string, password: string): SandboxUser | null {
    const user = this.byUsername.get(username)
    return user !== undefined && user.isActive && user.password === password ? user : null
  }
}
