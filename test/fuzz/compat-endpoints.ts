// The compat path's 15 endpoints as the fuzz suite sees them:
// per field, values DRF accepts, values DRF refuses (the gateway must answer those itself, with no upstream
// call) and, for object ids, integers DRF accepts that can be no ATLAS id (answered locally, issue 11 item 8).
import fc from 'fast-check'
import { DEFAULT_CUSTOM_LISTS } from '../../src/lists.js'
import { KNOWN_IDS, validId } from './model.js'

export type Kind = 'int' | 'float' | 'bool' | 'datetime' | 'char' | 'choice'

export interface CompatField {
  name: string
  kind: Kind
  required?: boolean
  valid: fc.Arbitrary<string>
  /** Values DRF refuses in every encoding. */
  invalid?: fc.Arbitrary<string>
  /** DRF-valid values that name no possible ATLAS object: answered without an upstream call. */
  impossible?: fc.Arbitrary<string>
  /** An impossible value is known locally only when this field is the request's only one. */
  soleFilter?: boolean
  /** The field carries ATLAS ids (one, or a CSV). */
  ids?: 'one' | 'csv'
}

export interface CompatEndpoint {
  name: string
  isWrite: boolean
  fields: readonly CompatField[]
}

const groupIds = Object.values(DEFAULT_CUSTOM_LISTS).map(String)

const intInvalid = fc.constantFrom('abc', '4.5', '1,2', 'NaN', 'Infinity', '0x10', '1e3', '--1', 'true', '1.5e2', 'x'.repeat(1001))
const floatInvalid = fc.constantFrom('abc', '1,5', '0x10', '--1', 'e5', '1.2.3', 'true', '[1]', '1;2')
const boolInvalid = fc.constantFrom('maybe', '2', 'TRUE ', 'yes please', '-1', 'null ')
const datetimeValid = fc.constantFrom('2025-01-01T00:00:00Z', '2025-06-01 12:00', '2025-06-01T12:00:00.123456+02:00', '2024-02-29T23:59:59Z', '1970-01-01T00:00:00Z')
const datetimeInvalid = fc.constantFrom(
  '2025-02-30T00:00:00Z', '2025-13-45T00:00:00Z', '2025-01-01T25:00', '2025-01-01T12:61', '0000-00-00T00:00',
  '2023-02-29T00:00:00Z', 'yesterday', '2025/01/01', '2025-01-01T12:00:00+25:00', '2025-01-01T12:00:00.1234567890123Z'
)
const floatIn = (min: number, max: number) => fc.double({ min, max, noNaN: true, noDefaultInfinity: true }).map((n) => String(Math.round(n * 1e4) / 1e4))
const csvIds = fc.array(validId, { minLength: 1, maxLength: 4 }).map((a) => a.join(','))
/** Integers DRF takes that are no 19-digit ATLAS id. */
const impossibleId = fc.oneof(
  fc.constantFrom('-1', '0', '5', '4.0', '18446744073709551616', '-1161600211221604900', '99999999999999999999'),
  fc.bigInt({ min: 10n ** 17n, max: 10n ** 18n - 1n }).map(String)
)
// CSV tokens that are no ATLAS id: non-numeric ones give the upstream's 500 page on objects/, numeric ones
// a placeholder; VRA tables skip both. Either way the answer is known without asking the upstream.
const NON_NUMERIC_TOKENS = ['abc', 'ATLAS18qqn', '1e18', '1.5', '0x10']
const NUMERIC_TOKENS = ['12345', '-1', '0', '116160021122160490', '99999999999999999999']
const noIdCsv = (tokens: string[]) => fc.array(fc.constantFrom(...tokens), { minLength: 1, maxLength: 3 }).map((a) => a.join(','))
const mixedCsv = fc.tuple(fc.array(validId, { minLength: 1, maxLength: 2 }), fc.constantFrom(...NON_NUMERIC_TOKENS, '', ' '))
  .map(([ids, bad]) => [...ids, bad].join(','))
const objectIdValid = fc.oneof({ weight: 4, arbitrary: validId }, { weight: 1, arbitrary: fc.constantFrom(` ${KNOWN_IDS[0]}`, `${KNOWN_IDS[1]}.0`, `${KNOWN_IDS[2]} `) })

const objectid = (required: boolean): CompatField =>
  ({ name: 'objectid', kind: 'int', required, valid: objectIdValid, invalid: intInvalid, impossible: impossibleId, ids: 'one' })
const groupid = (required: boolean): CompatField =>
  ({ name: 'objectgroupid', kind: 'int', required, valid: fc.constantFrom(...groupIds, '999', '6'), invalid: intInvalid })
const vraObjects: CompatField = { name: 'objects', kind: 'char', valid: csvIds, impossible: noIdCsv([...NON_NUMERIC_TOKENS, ...NUMERIC_TOKENS]), ids: 'csv' }
const since = (name = 'datethreshold'): CompatField => ({ name, kind: 'datetime', valid: datetimeValid, invalid: datetimeInvalid })
const float = (name: string, required = false, min = 0, max = 1): CompatField => ({ name, kind: 'float', required, valid: floatIn(min, max), invalid: floatInvalid })
const smallInt = (name: string): CompatField => ({ name, kind: 'int', valid: fc.constantFrom('0', '1', '3'), invalid: intInvalid })
const bool = (name: string): CompatField => ({ name, kind: 'bool', valid: fc.constantFrom('true', 'False', '1', '0', 'yes', 'off', 't', 'N'), invalid: boolInvalid })
const idThreshold: CompatField = { name: 'idthreshold', kind: 'int', valid: fc.constantFrom('0', '1', '500', KNOWN_IDS[0]), invalid: intInvalid }

export const COMPAT_ENDPOINTS: readonly CompatEndpoint[] = [
  {
    name: 'cone',
    isWrite: false,
    fields: [
      float('ra', true, 0, 360), float('dec', true, -90, 90),
      { ...float('radius', true, 0.1, 300), invalid: fc.oneof(floatInvalid, fc.constantFrom('301', '1000', '300.5')) },
      { name: 'requestType', kind: 'choice', required: true, valid: fc.constantFrom('nearest', 'all', 'count'), invalid: fc.constantFrom('Nearest', 'ALL', 'x', 'count ', '') }
    ]
  },
  {
    name: 'objects',
    isWrite: false,
    fields: [
      { name: 'objects', kind: 'char', required: true, valid: csvIds, invalid: fc.oneof(fc.constantFrom(''), mixedCsv), impossible: noIdCsv(NUMERIC_TOKENS), ids: 'csv' },
      float('mjd', false, 0, 61000)
    ]
  },
  {
    name: 'objectlist',
    isWrite: false,
    fields: [
      {
        name: 'objectlistid',
        kind: 'int',
        required: true,
        valid: fc.constantFrom('0', '2', '4', '13', '-1', '-14'),
        invalid: fc.oneof(intInvalid, fc.constantFrom('14', '15', '100', '-15', '18446744073709551616'))
      },
      // Main lists only: with getcustomlist true any integer is a valid group id.
      { name: 'getcustomlist', kind: 'bool', valid: fc.constantFrom('false', '0', 'False', 'no'), invalid: boolInvalid },
      since()
    ]
  },
  { name: 'vrascoreslist', isWrite: false, fields: [vraObjects, bool('debug'), since(), idThreshold] },
  { name: 'vratodolist', isWrite: false, fields: [vraObjects, since(), idThreshold] },
  { name: 'vraranklist', isWrite: false, fields: [vraObjects, since()] },
  // objectid alone selects the lists of one object; with objectgroupid too, the whole table.
  { name: 'objectgroupslist', isWrite: false, fields: [{ ...objectid(false), soleFilter: true }, groupid(false)] },
  { name: 'externalxmlist', isWrite: false, fields: [{ name: 'externalObjects', kind: 'char', valid: fc.constantFrom('2018cow', '2018cow,AT2019abc', 'x', 'SN 2011fe') }] },
  {
    name: 'vrascores',
    isWrite: true,
    fields: [objectid(true), float('preal'), float('pgal'), float('pfast'), float('rank', false, -10, 10), float('rank_alt1', false, -10, 10), smallInt('is_gal_cand'), bool('debug'), since('insertdate')]
  },
  { name: 'vratodo', isWrite: true, fields: [objectid(true), since('insertdate')] },
  { name: 'objectgroups', isWrite: true, fields: [objectid(true), groupid(true)] },
  { name: 'objectgroupsdelete', isWrite: true, fields: [objectid(true), groupid(true)] },
  { name: 'vrarank', isWrite: true, fields: [objectid(true), float('rank', true, -10, 10), float('rank_alt1', false, -10, 10), smallInt('is_gal_cand'), since('insertdate')] },
  {
    name: 'objectdetectionlist',
    isWrite: true,
    fields: [objectid(true), { name: 'objectlist', kind: 'int', required: true, valid: fc.constantFrom('3', '4', '12', '2'), invalid: intInvalid }, since('insertdate')]
  },
  {
    name: 'auth-token',
    isWrite: false,
    fields: [
      { name: 'username', kind: 'char', required: true, valid: fc.constantFrom('fuzz', 'demo', 'reader', 'admin') },
      { name: 'password', kind: 'char', required: true, valid: fc.oneof(fc.constantFrom('secret', ' ', '{{BAD}}'), fc.string({ maxLength: 20 })) }
    ]
  }
]

/** Field values that break the JSON encoding's types (DRF: "Not a valid string.", "may not be null"…). */
export const JSON_INVALID: Readonly<Record<Kind, fc.Arbitrary<string>>> = {
  int: fc.constantFrom('null', 'true', '4.5', '[]', '{}', '"abc"', '[1]'),
  float: fc.constantFrom('null', '"abc"', '[]', '{}'),
  bool: fc.constantFrom('null', '2', '"maybe"', '[]', '{}'),
  datetime: fc.constantFrom('null', '12345', 'true', '[]', '{}'),
  char: fc.constantFrom('null', 'true', '[]', '{}', '["a"]', '{"a":1}'),
  choice: fc.constantFrom('null', '1', '[]', '{}', 'true')
}

/**
 * A JSON text for a form value: plain decimal numbers bare, everything else a string. Exponents stay
 * strings: Python reads a bare `1e3` as the float 1000.0, which DRF's IntegerField accepts, while the
 * string "1e3" is refused as in a form.
 */
export function jsonValue (kind: Kind, text: string): string {
  if ((kind === 'int' || kind === 'float') && /^-?(0|[1-9]\d*)(\.\d+)?$/.test(text)) return text
  if (kind === 'bool' && (text === 'true' || text === 'false')) return text
  return JSON.stringify(text)
}
