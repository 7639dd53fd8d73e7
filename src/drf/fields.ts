// DRF serializer fields, as the upstream's serializers declare them (rest_framework/fields.py 3.14):
// the same coercions, the same "absent vs blank vs null" rules and the same error strings.
import { PyFloat, pyStr } from './pystr.js'
import { parseDateTime } from './time.js'

/** A multipart file part: present in request.data, but not a string. */
export class UploadedFile {
  constructor (readonly filename: string) {}
}

/** request.data or request.GET: a QueryDict (form, multipart, query string) or a parsed JSON value. */
export type DataSource =
  | { kind: 'querydict', map: Map<string, Array<string | UploadedFile>> }
  | { kind: 'json', value: unknown }

export type FieldKind = 'char' | 'int' | 'float' | 'bool' | 'choice' | 'datetime'
/** Validated values: char/choice → string, int → bigint, float → number, bool → boolean, datetime → µs. */
export type FieldValue = string | bigint | number | boolean | null

export interface FieldSpec {
  name: string
  kind: FieldKind
  required?: boolean
  /** Used when the field is absent; DRF does not validate defaults. */
  default?: FieldValue
  /** CharField trim_whitespace (default true). */
  trim?: boolean
  choices?: readonly string[]
}

export type ValidationResult =
  | { ok: true, values: Record<string, FieldValue> }
  | { ok: false, errors: Record<string, string[]> }

export const MSG = {
  required: 'This field is required.',
  blank: 'This field may not be blank.',
  null: 'This field may not be null.',
  string: 'Not a valid string.',
  int: 'A valid integer is required.',
  float: 'A valid number is required.',
  bool: 'Must be a valid boolean.',
  tooLong: 'String value too large.',
  nullCharacters: 'Null characters are not allowed.',
  datetime: 'Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].'
} as const

// Python's str.isspace() set, which str.strip() removes (JavaScript's trim() differs at the edges).
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const PY_STRIP_RE = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g')
export function pyStrip (text: string): string {
  return text.replace(PY_STRIP_RE, '')
}

// The whitespace int() and float() skip around a number: ASCII's six (Py_ISSPACE) and the non-ASCII
// characters of str.isspace(), which they turn into spaces first; not \x1c-\x1f, which str.strip() removes.
const NUMBER_WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const NUMBER_STRIP_RE = new RegExp(`^[${NUMBER_WS}]+|[${NUMBER_WS}]+$`, 'g')
// int() and float() read every Unicode decimal digit (category Nd) as its ASCII digit.
const DECIMAL_DIGIT_RE = /\p{Nd}/gu
const DECIMAL_DIGIT_ONE_RE = /^\p{Nd}$/u
const NON_ASCII_RE = /[\u0080-\uffff]/
// Each non-ASCII digit's value, found once (Unicode has about 700): an `objects` form of 2.5 MiB holds
// hundreds of thousands of digits.
const digitValues = new Map<string, string>()

// The digits of a script come in a run of ten, zero first (a Unicode stability policy); runs may adjoin
// (the five sets of mathematical digits), so a digit's value is its distance from its block's start, mod 10.
function asciiDigit (digit: string): string {
  let value = digitValues.get(digit)
  if (value === undefined) {
    const cp = digit.codePointAt(0) as number
    let start = cp
    while (DECIMAL_DIGIT_ONE_RE.test(String.fromCodePoint(start - 1))) start--
    value = String((cp - start) % 10)
    digitValues.set(digit, value)
  }
  return value
}

/** The text int() and float() parse: their surrounding whitespace removed, decimal digits in ASCII. */
function numberText (text: string): string {
  const t = text.replace(NUMBER_STRIP_RE, '')
  return NON_ASCII_RE.test(t) ? t.replace(DECIMAL_DIGIT_RE, asciiDigit) : t
}

const INT_RE = /^[+-]?\d(?:_?\d)*$/
const FLOAT_RE = /^[+-]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*(?:[eE][+-]?\d(?:_?\d)*)?|\d(?:_?\d)*\.(?:[eE][+-]?\d(?:_?\d)*)?|inf|infinity|nan)$/i
// IntegerField's re_decimal, r'\.0*\s*$': a trailing ".0" goes before int(); Python's \s is str.isspace().
const RE_DECIMAL = new RegExp(`\\.0*[${PY_WS}]*$`)
const TRUE_VALUES = new Set<unknown>(['t', 'T', 'y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON', '1', 1, true])
const FALSE_VALUES = new Set<unknown>(['f', 'F', 'n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF', '0', 0, false])
// MAX_STRING_LENGTH of DRF's numeric fields.
const MAX_STRING_LENGTH = 1000

/**
 * Python int(str): surrounding whitespace, a sign, digit-separating underscores and any script's decimal
 * digits are fine.
 */
export function pyInt (text: string): bigint | null {
  const t = numberText(text)
  return INT_RE.test(t) ? BigInt(t.replace(/_/g, '').replace(/^\+/, '')) : null
}

export class FieldError extends Error {}

function toInt (v: unknown): bigint {
  if (typeof v === 'bigint') return v
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
  if (typeof v === 'string' && v.length > MAX_STRING_LENGTH) throw new FieldError(MSG.tooLong)
  // A float is read as str() writes it (1e16 and more in exponent form, which int() then rejects).
  if (typeof v !== 'string' && !(v instanceof PyFloat)) throw new FieldError(MSG.int)
  // IntegerField strips a trailing ".0" (re_decimal) before int(): "4.0" passes, "4.5" does not.
  const n = pyInt(pyStr(v).replace(RE_DECIMAL, ''))
  if (n === null) throw new FieldError(MSG.int)
  return n
}

function toFloat (v: unknown): number {
  if (typeof v === 'number') return v
  if (v instanceof PyFloat) return v.value
  if (typeof v === 'bigint') return Number(v)
  if (typeof v === 'boolean') return v ? 1 : 0
  if (typeof v !== 'string') throw new FieldError(MSG.float)
  if (v.length > MAX_STRING_LENGTH) throw new FieldError(MSG.tooLong)
  const t = numberText(v)
  // Underscores are checked in place (only between two digits), then dropped.
  if (!FLOAT_RE.test(t)) throw new FieldError(MSG.float)
  const lower = t.toLowerCase().replace(/^\+/, '')
  if (lower.endsWith('nan')) return NaN
  if (lower.endsWith('inf') || lower.endsWith('infinity')) return lower.startsWith('-') ? -Infinity : Infinity
  return Number(t.replace(/_/g, ''))
}

function toInternal (spec: FieldSpec, v: unknown): FieldValue {
  switch (spec.kind) {
    case 'char': {
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'bigint' && !(v instanceof PyFloat)) throw new FieldError(MSG.string)
      const text = spec.trim === false ? pyStr(v) : pyStrip(pyStr(v))
      // CharField's ProhibitNullCharactersValidator, run on the converted value.
      if (text.includes('\u0000')) throw new FieldError(MSG.nullCharacters)
      return text
    }
    case 'int': return toInt(v)
    case 'float': return toFloat(v)
    case 'bool': {
      // A set lookup in Python: 1.0 is 1 and True.
      const key = v instanceof PyFloat ? v.value : v
      if (TRUE_VALUES.has(key)) return true
      if (FALSE_VALUES.has(key)) return false
      throw new FieldError(MSG.bool)
    }
    case 'choice': {
      const text = pyStr(v)
      if (spec.choices?.includes(text) === true) return text
      throw new FieldError(`"${text}" is not a valid choice.`)
    }
    case 'datetime': {
      const us = typeof v === 'string' ? parseDateTime(v) : null
      if (us === null) throw new FieldError(MSG.datetime)
      return us
    }
  }
}

const EMPTY = Symbol('empty')

// Field.get_value: QueryDicts (HTML input) treat a missing BooleanField as False and an empty
// value of an optional field as absent; JSON objects are read as they are.
function getValue (spec: FieldSpec, data: DataSource): unknown {
  if (data.kind === 'json') {
    const obj = data.value as Record<string, unknown>
    return Object.hasOwn(obj, spec.name) ? obj[spec.name] : EMPTY
  }
  const values = data.map.get(spec.name)
  if (values === undefined || values.length === 0) return spec.kind === 'bool' ? false : EMPTY
  const value = values[values.length - 1]
  if (value === '' && spec.required !== true) return EMPTY
  return value
}

function runField (spec: FieldSpec, raw: unknown): FieldValue {
  // CharField.run_validation tests blankness before anything else.
  if (spec.kind === 'char' && typeof raw === 'string' && (raw === '' || (spec.trim !== false && pyStrip(raw) === ''))) {
    throw new FieldError(MSG.blank)
  }
  if (raw === EMPTY) {
    if (spec.required === true) throw new FieldError(MSG.required)
    return spec.default ?? null
  }
  if (raw === null) throw new FieldError(MSG.null)
  return toInternal(spec, raw)
}

function pyTypeName (value: unknown): string {
  if (Array.isArray(value)) return 'list'
  if (typeof value === 'string') return 'str'
  if (typeof value === 'boolean') return 'bool'
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))) return 'int'
  return 'float'
}

/** Serializer.is_valid(): every field in declaration order; errors keyed by field. */
export function validate (specs: readonly FieldSpec[], data: DataSource): ValidationResult {
  if (data.kind === 'json') {
    const v = data.value
    // Serializer.errors turns the root "may not be null" into "No data provided".
    if (v === null) return { ok: false, errors: { non_field_errors: ['No data provided'] } }
    if (typeof v !== 'object' || Array.isArray(v) || v instanceof PyFloat) {
      return { ok: false, errors: { non_field_errors: [`Invalid data. Expected a dictionary, but got ${pyTypeName(v)}.`] } }
    }
  }
  const values: Record<string, FieldValue> = {}
  const errors: Record<string, string[]> = {}
  let failed = false
  for (const spec of specs) {
    try {
      values[spec.name] = runField(spec, getValue(spec, data))
    } catch (err) {
      /* c8 ignore next -- field conversions throw nothing else */
      if (!(err instanceof FieldError)) throw err
      errors[spec.name] = [err.message]
      failed = true
    }
  }
  return failed ? { ok: false, errors } : { ok: true, values }
}
