// How long each route's answers stay fresh, then usable while a refresh runs (stale-while-revalidate,
// RFC 5861), then usable only when the upstream fails (stale-if-error). The defaults trade the upstream
// budget (about 100 calls per hour for everyone) against how fast each kind of data changes;
// CACHE_FRESHNESS overrides them per route, validated at boot.

export interface Freshness {
  freshMs: number
  staleWhileRevalidateMs: number
  staleIfErrorMs: number
}

const S = 1000
const MIN = 60 * S
const H = 60 * MIN

const f = (freshMs: number, staleWhileRevalidateMs: number, staleIfErrorMs: number): Freshness =>
  ({ freshMs, staleWhileRevalidateMs, staleIfErrorMs })

export const DEFAULT_FRESHNESS = {
  // Object records change only when new detections arrive (hours apart); a day-old record beats an error.
  objects: f(10 * MIN, H, 24 * H),
  // "No such id" answers: short, so a freshly ingested object shows up soon; never served past that.
  'objects-missing': f(2 * MIN, 0, 0),
  // Positions do not move: a cone answer ages like the object records it lists.
  cone: f(10 * MIN, H, 24 * H),
  // Detection lists are polled by bots; one upstream call per minute per list serves all of them.
  lists: f(60 * S, 5 * MIN, H),
  // Custom lists change by our own writes (which invalidate them) and by other ATLAS users.
  'custom-lists': f(30 * S, 2 * MIN, H),
  'object-custom-lists': f(30 * S, 2 * MIN, H),
  // VRA tables move quickly while eyeballers work; our own VRA writes invalidate them.
  'vra-scores': f(30 * S, 2 * MIN, H),
  'vra-todo': f(30 * S, 2 * MIN, H),
  'vra-ranks': f(30 * S, 2 * MIN, H),
  // External catalogues are static between releases.
  crossmatches: f(H, 6 * H, 24 * H)
} as const satisfies Record<string, Freshness>

export type RouteId = keyof typeof DEFAULT_FRESHNESS
export type FreshnessTable = Readonly<Record<RouteId, Freshness>>

export const ROUTE_IDS = Object.keys(DEFAULT_FRESHNESS) as RouteId[]

const FIELDS = { freshS: 'freshMs', swrS: 'staleWhileRevalidateMs', sieS: 'staleIfErrorMs' } as const
type Field = keyof typeof FIELDS

function isRouteId (name: string): name is RouteId {
  return Object.hasOwn(DEFAULT_FRESHNESS, name)
}

function isField (name: string): name is Field {
  return Object.hasOwn(FIELDS, name)
}

function invalid (detail: string): Error {
  // A boot-time settings error, like env-schema's: it stops the process before it listens, so it is
  // not one of the GW_ errors sent to callers.
  return new Error(`CACHE_FRESHNESS: ${detail}`)
}

/**
 * The freshness table: the defaults, overridden by CACHE_FRESHNESS (JSON such as
 * `{"lists":{"freshS":30,"swrS":600,"sieS":3600}}`; fields in whole seconds, each optional).
 * Throws naming the route and field when the text is not valid.
 */
export function parseFreshness (text: string): FreshnessTable {
  const table: Record<RouteId, Freshness> = { ...DEFAULT_FRESHNESS }
  if (text.trim() === '') return table
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw invalid(`not valid JSON (${(err as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw invalid('must be a JSON object keyed by route id')
  }
  for (const [route, value] of Object.entries(parsed)) {
    if (!isRouteId(route)) throw invalid(`unknown route "${route}" (known: ${ROUTE_IDS.join(', ')})`)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw invalid(`route "${route}" must be an object with freshS, swrS and/or sieS`)
    }
    const next: Freshness = { ...table[route] }
    for (const [field, seconds] of Object.entries(value)) {
      if (!isField(field)) throw invalid(`route "${route}" has unknown field "${field}" (use freshS, swrS, sieS)`)
      if (typeof seconds !== 'number' || !Number.isSafeInteger(seconds) || seconds < 0) {
        throw invalid(`route "${route}" field "${field}" must be a whole number of seconds ≥ 0`)
      }
      next[FIELDS[field]] = seconds * S
    }
    table[route] = next
  }
  return table
}

/**
 * An entry's own lifetime: fresh, then the longer of the two stale windows. The cache keeps entries of
 * routes served stale at least up to the maximum staleness (CACHE_MAX_STALE_S), which also cuts these windows.
 */
export function storeTtlMs (freshness: Freshness): number {
  return freshness.freshMs + Math.max(freshness.staleWhileRevalidateMs, freshness.staleIfErrorMs)
}

/**
 * Cache-Control for a response of the given age: `private` because answers depend on the caller's key
 * (a shared cache must not hand them to someone else); max-age is the fresh time left, and the stale
 * windows are announced as RFC 5861 extensions. They run from when the answer goes stale, so they are
 * cut where `maxStaleS` (CACHE_MAX_STALE_S, the oldest answer the gateway serves) ends.
 */
export function buildCacheControl (freshness: Freshness, ageS: number, maxStaleS = Infinity): string {
  const maxAge = Math.max(0, Math.floor(freshness.freshMs / S) - ageS)
  const staleLeft = Math.max(0, maxStaleS - (ageS + maxAge))
  const swr = Math.min(Math.floor(freshness.staleWhileRevalidateMs / S), staleLeft)
  const sie = Math.min(Math.floor(freshness.staleIfErrorMs / S), staleLeft)
  const parts = [`private, max-age=${maxAge}`]
  if (swr > 0) parts.push(`stale-while-revalidate=${swr}`)
  if (sie > 0) parts.push(`stale-if-error=${sie}`)
  return parts.join(', ')
}
