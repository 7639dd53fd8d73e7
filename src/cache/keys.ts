// Cache keys and tags. Every cache key comes from here (house style), so two requests that mean the
// same thing share one entry: the facade version, the route id and the query normalised (parameter names
// sorted, case-insensitive values lowercased, undefined dropped), hashed with SHA-256 when long so that
// huge id lists do not become huge Redis keys. The store adds the namespace prefix (REDIS_KEY_PREFIX).
import { createHash } from 'node:crypto'

/** Bump when the cached representation of any route changes, so old entries are never read. */
export const FACADE_VERSION = 'v1'
/** Normalised queries longer than this are replaced by their hash. */
export const MAX_QUERY_KEY_LENGTH = 200

export type QueryScalar = string | number | boolean
export type QueryValue = QueryScalar | readonly QueryScalar[] | undefined
export type Query = Readonly<Record<string, QueryValue>>

export interface KeyOptions {
  /** Parameter names whose values are case-insensitive (e.g. `mode`, `sherlock_class`): lowercased. */
  caseInsensitive?: readonly string[]
  /** Overrides FACADE_VERSION (the compatibility path uses its own space). */
  version?: string
}

// A UTF-16 code unit of a pair without its other half (JSON's "\ud83d" makes one).
const LONE_SURROGATE = /([\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff])/

/**
 * encodeURIComponent for any string. It throws on a lone surrogate, which a JSON body can carry: that
 * is written `%uXXXX` instead, which no encoded text contains, so two different strings never share a key.
 */
function encodeText (text: string): string {
  try {
    return encodeURIComponent(text)
  } catch {
    // split with a capturing group: the lone surrogates are at the odd indexes.
    return text.split(LONE_SURROGATE).map((part, i) =>
      i % 2 === 1 ? `%u${part.charCodeAt(0).toString(16).toUpperCase()}` : encodeURIComponent(part)).join('')
  }
}

function encodeScalar (value: QueryScalar, lower: boolean): string {
  const text = String(value)
  return encodeText(lower ? text.toLowerCase() : text)
}

/**
 * The canonical query text: `name=value` pairs sorted by name, joined with `&`, names and values
 * URI-encoded (so `&`, `=` and `#` never appear unescaped inside one). Array values keep their order,
 * since for `ids` the order is the order of the answer; they encode as repeated parameters, as in a URL.
 */
export function normaliseQuery (query: Query, opts: KeyOptions = {}): string {
  const lower = new Set(opts.caseInsensitive ?? [])
  const names = Object.keys(query).filter((n) => query[n] !== undefined).sort()
  const parts: string[] = []
  for (const name of names) {
    const value = query[name] as QueryScalar | readonly QueryScalar[]
    const isLower = lower.has(name)
    const encodedName = encodeText(name)
    const values: readonly QueryScalar[] = Array.isArray(value) ? value : [value as QueryScalar]
    for (const v of values) parts.push(`${encodedName}=${encodeScalar(v, isLower)}`)
  }
  return parts.join('&')
}

/** `v1:<route>:<query>`; a long query becomes `#<sha256 base64url>` (`#` never occurs in a normalised query). */
export function buildCacheKey (route: string, query: Query = {}, opts: KeyOptions = {}): string {
  const normalised = normaliseQuery(query, opts)
  const part = normalised.length > MAX_QUERY_KEY_LENGTH
    ? '#' + createHash('sha256').update(normalised).digest('base64url')
    : normalised
  return `${opts.version ?? FACADE_VERSION}:${route}:${part}`
}

/** The per-id entry holding an object's full-history record. */
export function objectKey (id: string): string {
  // The same key buildCacheKey('objects', { id }) gives, without normalising a one-field query per id
  // on the hot path (keys.test.ts checks they agree).
  return `${FACADE_VERSION}:objects:id=${id}`
}
