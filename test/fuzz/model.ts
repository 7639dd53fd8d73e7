// The fuzz suite's request model and its shared value pools. A generated request names its secrets by
// placeholder ({{KEY}}, {{READ}}, …) so that counterexamples print without a key in them; the client
// substitutes them at send time.
import fc from 'fast-check'
import { FIXTURE_IDS } from '../helper.js'

/** What a request must get beyond the global invariants (status < 500, no secrets, no hang). */
export interface Expectation {
  /** Invalid input (why): the answer must be a 4xx and no upstream call may happen. */
  refused?: string
  /** The only acceptable statuses (why, statuses). */
  statuses?: { why: string, codes: number[] }
  /** Whatever the status, no upstream call may happen (why). */
  noUpstream?: string
  /** Ids sent as JSON numbers: whatever reaches the upstream carries these digits exactly. */
  exactIds?: string[]
}

export interface FuzzRequest {
  /** Family of the request: route and what was varied; violations are grouped by it. */
  family: string
  method: string
  /** The request-target exactly as sent (may be malformed). */
  target: string
  headers: Array<[string, string]>
  body?: string
  /** Not valid HTTP/1.1 (the parser refuses it): no route, so no dialect-specific error shape applies. */
  isMalformedHttp?: boolean
  /** Body repeated to reach a size without storing it (oversized bodies). */
  bodyRepeat?: { chunk: string, times: number, prefix: string, suffix: string }
  expect: Expectation
}

export const { A, B, C, D, E, F, U } = FIXTURE_IDS
export const KNOWN_IDS = [A, B, C, D, E, F] as const

/** 19-digit ids; most are not exact as float64, so a rounded copy differs in its last digits. */
export const randomId = fc.bigInt({ min: 10n ** 18n, max: 10n ** 19n - 1n }).map(String)
export const validId = fc.oneof({ weight: 3, arbitrary: fc.constantFrom<string>(...KNOWN_IDS, U) }, { weight: 2, arbitrary: randomId })

/** Strings that are not an ATLAS id (v1 wants `^\d{19}$`). */
export const badId = fc.oneof(
  fc.constantFrom(
    '', '0', '-1', '123', '1e18', '1.5', '0x10', 'Infinity', 'NaN', 'null', 'ATLAS18qqn', 'true',
    '18446744073709551616', '99999999999999999999', '-1161600211221604900', '+1161600211221604900',
    ' 1161600211221604900', '1161600211221604900 ', '1161600211221604900\u0000', '1161600211221604900\n',
    '116160021122160490０', '１１６１６００２１１２２１６０４９００', '1161600211221604900.0', '1_161600211221604900'
  ),
  fc.bigInt({ min: 10n ** 17n, max: 10n ** 18n - 1n }).map(String),
  fc.bigInt({ min: 10n ** 19n, max: 10n ** 21n }).map(String)
)

/** JSON number literals that overflow a float64: no reader may turn them into a finite number. */
export const hostileNumberLiteral = fc.constantFrom('1e400', '-1e400', '1.7976931348623157e309', '-1.7976931348623157e309', '0.1e99999', '9'.repeat(400))

/** JSON integers outside every small-int range (and outside float64's exact integers). */
export const hugeIntLiteral = fc.constantFrom('18446744073709551616', '-9223372036854775809', '9007199254740993', '123456789012345678901234567890')

/** Query-string numbers that are not plain finite decimals. */
export const badNumberText = fc.constantFrom(
  'Infinity', '-Infinity', 'NaN', '0x10', '0b11', '0o7', '1e400', '', ' ', '1,2', '1_0', '--1', '+', '.', 'e5',
  'true', 'null', '[]', '1 2', '١٢', '５', '1\u0000', '%00', '12abc'
)

export const validDate = fc.constantFrom(
  '2025-01-01', '2024-02-29', '2025-06-30', '2025-01-01T00:00:00Z', '2025-06-01T12:34:56Z', '2025-06-01T12:34',
  '2025-06-01T12:34:56.123456+02:00', '2025-06-01 08:00:00-05:00', '1858-11-17', '2026-01-01T00:00:00.5Z'
)

/** Calendar-impossible or out-of-range dates and datetimes (issue 11). */
export const impossibleDate = fc.constantFrom(
  '2025-02-30', '2025-02-29', '2023-02-29', '2100-02-29', '2025-04-31', '2025-13-45', '2025-00-10', '2025-01-00',
  '0000-00-00', '0000-01-01', '2025-01-01T25:00', '2025-01-01T12:61', '2025-01-01T12:00:61Z', '2025-01-01T99:99:99Z',
  '2025-01-01T12:00:00+25:00', '2025-01-01T12:00:00+05:99', '9999-99-99', '2025-06-31T00:00:00Z'
)

/** Dates that break the format itself. */
export const malformedDate = fc.constantFrom(
  '2025-1-1', '25-01-01', '2025/01/01', 'yesterday', '2025-01-01T', '2025-01-01T12', '2025-01-01T12:00:00.1234567Z',
  '2025-01-01Z', '20250101', '+2025-01-01', '2025-01-01T12:00:00ZZ', '2025-01-01\u000012:00', '１２３４-01-01'
)

/** Odd text for names and free strings: control bytes, bidi marks, astral planes, lone surrogates. */
export const oddText = fc.oneof(
  fc.constantFrom(
    'a\u0000b', '\u0000', 'SN\u202e2018cow', '2018cow\u200b', '💥', '\ud83d', 'ＡＴＬＡＳ', '../../etc/passwd', '%00',
    '<script>alert(1)</script>', "'; DROP TABLE x; --", '\r\nX-Injected: 1', 'a'.repeat(5000), 'Ω≈ç√∫', '\u0085', '\t'
  ),
  fc.string({ unit: 'binary', maxLength: 12 })
)

export const KEY = '{{KEY}}'
export const KEY_PCT = '{{KEY:pct}}'
export const KEY_UPPER = '{{KEY:upper}}'
export const READ_KEY = '{{READ}}'
export const LIST_KEY = '{{LIST}}'
export const BAD_KEY = '{{BAD}}'
/** A header value meaning: send no such header at all (the client adds Host otherwise). */
export const OMIT = '{{OMIT}}'

/** How a v1 request authenticates. */
export type V1Auth = 'bearer' | 'x-api-key' | 'none' | 'bad' | 'malformed'
export const v1AuthArb: fc.Arbitrary<V1Auth> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom<V1Auth>('bearer', 'x-api-key') },
  { weight: 1, arbitrary: fc.constantFrom<V1Auth>('none', 'bad', 'malformed') }
)

export function v1AuthHeaders (auth: V1Auth, key = KEY): Array<[string, string]> {
  switch (auth) {
    case 'bearer': return [['authorization', `Bearer ${key}`]]
    case 'x-api-key': return [['x-api-key', key]]
    case 'bad': return [['authorization', `Bearer ${BAD_KEY}`]]
    case 'malformed': return [['authorization', `Bearer ${KEY} extra`]]
    case 'none': return []
  }
}

export const jsonHeaders: Array<[string, string]> = [['content-type', 'application/json'], ['accept', 'application/json']]

/** `{"k":raw,…}` from raw JSON texts, so numbers keep every digit. */
export function jsonObject (pairs: ReadonlyArray<readonly [string, string]>): string {
  return `{${pairs.map(([k, raw]) => `${JSON.stringify(k)}:${raw}`).join(',')}}`
}

const UNRESERVED = /[A-Za-z0-9\-._~]/

/** Percent-encodes every byte of the UTF-8 form except unreserved characters (lone surrogates become U+FFFD). */
export function q (s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += byte < 0x80 && UNRESERVED.test(c) ? c : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

/** Every byte percent-encoded, unreserved ones included (`ra` → `%72%61`). */
export function qAll (s: string): string {
  return [...Buffer.from(s, 'utf8')].map((b) => '%' + b.toString(16).toUpperCase().padStart(2, '0')).join('')
}

export function query (pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.length === 0 ? '' : '?' + pairs.map(([k, v]) => `${q(k)}=${q(v)}`).join('&')
}

/** A nesting bomb: `depth` arrays (or objects) around a value. */
export function nested (depth: number, kind: 'array' | 'object', inner = '1'): string {
  return kind === 'array' ? '['.repeat(depth) + inner + ']'.repeat(depth) : '{"a":'.repeat(depth) + inner + '}'.repeat(depth)
}

export const nestingDepth = fc.constantFrom(64, 1000, 5000, 20000, 100000)
