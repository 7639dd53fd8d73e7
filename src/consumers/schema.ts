// The consumers file (CONSUMERS_FILE): a top-level `consumers:` list, one entry per consumer. Optional
// fields have the defaults below; unknown fields are errors, so a typo (`scope:`) fails boot instead of
// silently granting defaults.
import { Type, type Static } from '@sinclair/typebox'
import { SCOPES, type Scope } from './scopes.js'
import { parseInstant } from '../lib/datetime.js'

export const DEFAULT_SCOPES: readonly Scope[] = ['read']
export const DEFAULT_RATE = '600/minute'
export const DEFAULT_DAILY_OBJECTS = 100000
export const DEFAULT_MAX_BATCH = 10000
// Half of the default global upstream budget (UPSTREAM_RATE 100/hour): no single consumer can spend it all.
export const DEFAULT_UPSTREAM_SHARE = 50

export const RATE_PATTERN = '^[1-9]\\d*/(second|minute|hour|day)$'
const WINDOW_MS: Readonly<Record<string, number>> = { second: 1000, minute: 60000, hour: 3600000, day: 86400000 }

// A webhook's secret is never written in the file: it names a file or an environment variable holding
// `whsec_<base64>` (Standard Webhooks); src/push/webhooks.ts reads it.
export const WebhookSchema = Type.Object({
  url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2000, description: 'https, or http to a host on PUSH_WEBHOOK_ALLOWED_HOSTS' }),
  sources: Type.Array(Type.String({ pattern: '^(lists|vra)/[a-z0-9_-]{1,64}$' }), { minItems: 1, description: 'event sources, e.g. lists/good, vra/scores' }),
  events: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z]+\\.[a-z]+$' }), { minItems: 1, description: 'event types (member.added, …); all when absent' })),
  secret: Type.Union([
    Type.Object({ file: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
    Type.Object({ env: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }) }, { additionalProperties: false })
  ])
}, { additionalProperties: false })
export type Webhook = Static<typeof WebhookSchema>
// A date, or a datetime in UTC (`Z`, `+00:00` or no offset): access is granted for a stated time.
export const EXPIRES_PATTERN = '^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,3})?)?(Z|\\+00:?00)?)?$'
const DAY_MS = 86400000

const HashSchema = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 (hex) of a 40-hex consumer key' })

export const ConsumerEntrySchema = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', description: 'stable id; shown in metrics and logs' }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  key_sha256: Type.Union([HashSchema, Type.Array(HashSchema)], { description: 'one hash, or several while a key rotates' }),
  scopes: Type.Optional(Type.Array(Type.Union(SCOPES.map((s) => Type.Literal(s))))),
  lists: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }))),
  rate: Type.Optional(Type.String({ pattern: RATE_PATTERN })),
  daily_objects: Type.Optional(Type.Integer({ minimum: 0 })),
  max_batch: Type.Optional(Type.Integer({ minimum: 1 })),
  upstream_share: Type.Optional(Type.Integer({ minimum: 0 })),
  disabled: Type.Optional(Type.Boolean()),
  allow_bypass: Type.Optional(Type.Boolean()),
  webhooks: Type.Optional(Type.Array(WebhookSchema, { maxItems: 20 })),
  expires: Type.Optional(Type.String({
    pattern: EXPIRES_PATTERN,
    description: 'end of access, UTC: a date (the key works through that day) or a datetime (Z or no offset)'
  }))
}, { additionalProperties: false })
export type ConsumerEntry = Static<typeof ConsumerEntrySchema>

export const ConsumersFileSchema = Type.Object({
  consumers: Type.Array(ConsumerEntrySchema)
})

export interface RateSpec {
  /** As written, e.g. `600/minute`. */
  readonly text: string
  readonly max: number
  readonly windowMs: number
}

/** A consumer as the gateway uses it. Key hashes are deliberately not part of it (see ConsumerRecord). */
export interface Consumer {
  readonly id: string
  readonly name: string
  readonly scopes: readonly Scope[]
  readonly lists: readonly string[]
  readonly rate: RateSpec
  readonly daily_objects: number
  readonly max_batch: number
  readonly upstream_share: number
  readonly disabled: boolean
  /** Whether this consumer's `Cache-Control: no-cache` forces a revalidation upstream. */
  readonly allow_bypass: boolean
  /** Where events are posted (src/push/webhooks.ts). */
  readonly webhooks: readonly Webhook[]
  /** The `expires` value as written (a date or a UTC datetime); undefined when access does not expire. */
  readonly expires?: string
  /** The first instant (epoch ms) the key is refused; compared per request, so no restart is needed. */
  readonly expiresAt?: number
}

export interface ConsumerRecord {
  readonly consumer: Consumer
  readonly hashes: readonly string[]
}

/** `600/minute` → { max: 600, windowMs: 60000 }; throws on anything else. */
export function parseRate (text: string): RateSpec {
  const [count, unit] = text.split('/')
  const windowMs = WINDOW_MS[unit ?? '']
  const max = Number(count)
  if (!new RegExp(RATE_PATTERN).test(text) || windowMs === undefined || !Number.isSafeInteger(max)) {
    throw new Error(`invalid rate "${text}" (expected e.g. 600/minute)`)
  }
  return { text, max, windowMs }
}

/**
 * The first instant (epoch ms) an `expires` value refuses the key: a date grants that whole UTC day
 * (2026-12-31 → 2027-01-01T00:00Z); a datetime is the instant itself. Throws on an impossible date.
 */
export function parseExpires (text: string): number {
  // Calendar-strict (2026-02-30 is refused), as every date the gateway reads.
  const ms = new RegExp(EXPIRES_PATTERN).test(text) ? parseInstant(text) : undefined
  if (ms === undefined) {
    throw new Error(`invalid expires "${text}" (expected a date such as 2026-12-31 or a UTC datetime such as 2026-12-31T12:00:00Z)`)
  }
  return text.length === 10 ? ms + DAY_MS : ms
}

export function toRecord (entry: ConsumerEntry): ConsumerRecord {
  const hashes = typeof entry.key_sha256 === 'string' ? [entry.key_sha256] : [...entry.key_sha256]
  const consumer: Consumer = {
    id: entry.id,
    name: entry.name ?? entry.id,
    scopes: [...new Set(entry.scopes ?? DEFAULT_SCOPES)],
    lists: [...new Set(entry.lists ?? [])],
    rate: parseRate(entry.rate ?? DEFAULT_RATE),
    daily_objects: entry.daily_objects ?? DEFAULT_DAILY_OBJECTS,
    max_batch: entry.max_batch ?? DEFAULT_MAX_BATCH,
    upstream_share: entry.upstream_share ?? DEFAULT_UPSTREAM_SHARE,
    disabled: entry.disabled ?? false,
    allow_bypass: entry.allow_bypass ?? false,
    webhooks: entry.webhooks ?? [],
    ...(entry.expires === undefined ? {} : { expires: entry.expires, expiresAt: parseExpires(entry.expires) })
  }
  return { consumer, hashes }
}
