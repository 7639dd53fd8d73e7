// Lossless JSON for ATLAS bodies. ATLAS ids are 19-digit integers above 2^53 that the upstream sends as
// JSON numbers; JSON.parse would round them (float64 steps by 128 at 1e18). Every upstream body goes
// through parseLossless: safe numbers stay numbers, integers beyond 2^53 become bigint.
import { parse } from 'lossless-json'

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
const INTEGER = /^-?\d+$/
// A marker that JSON.stringify cannot produce from ordinary text: a NUL escape plus a fixed tag.
const BIG_MARK = '\u0000bigint:'
const BIG_MARK_RE = /"\\u0000bigint:(-?\d+)"/g

function parseNumber (text: string): number | bigint {
  if (INTEGER.test(text)) {
    const n = Number(text)
    if (Number.isSafeInteger(n)) return n
    const big = BigInt(text)
    return big > MAX_SAFE || big < -MAX_SAFE ? big : n
  }
  return Number(text)
}

/** Parses JSON text; integers beyond 2^53 come back as bigint, every other number as a number. */
export function parseLossless (text: string): unknown {
  return parse(text, null, parseNumber)
}

function bigintToString (_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

function bigintToMark (_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? BIG_MARK + value.toString() : value
}

/** The v1 dialect: every bigint (every ATLAS id) is emitted as a JSON string of its digits. */
export function stringifyV1 (value: unknown): string {
  return JSON.stringify(value, bigintToString)
}

/** The upstream dialect: every bigint is emitted as a bare JSON integer, digit for digit. */
export function stringifyUpstream (value: unknown): string {
  const text = JSON.stringify(value, bigintToMark)
  return text.includes('bigint:') ? text.replace(BIG_MARK_RE, '$1') : text
}

/** How deep a request body may nest: no v1 body needs more than 3 levels. */
export const MAX_REQUEST_DEPTH = 32

/**
 * Thrown for a request body that is not acceptable JSON; `message` says why, for the consumer. `pointer`
 * (a JSON pointer into the body, '' for the whole body) names the value at fault when there is one.
 */
export class RequestJsonError extends Error {
  constructor (message: string, readonly pointer = '') {
    super(message)
  }
}

/** The nesting depth of JSON text, stopping early once `limit` is passed; strings are skipped. */
export function jsonDepthExceeds (text: string, limit: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true
    } else if (c === 0x7d || c === 0x5d) {
      depth--
    }
  }
  return false
}

function refuseProtoKeys (key: string, value: unknown): unknown {
  if (key === '__proto__' || key === 'constructor') throw new RequestJsonError(`The body has a forbidden key "${key}".`)
  return value
}

// An integer written in digits, with or without a zero fraction (`5`, `5.0`): the query's integer form.
const DIGITS_INTEGER = /^-?\d+(?:\.0+)?$/
// A JSON number's parts: integer digits, fraction digits, exponent.
const NUMBER_PARTS = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/
const TEXT_SHOWN = 40

/**
 * A number whose double is not what was written, in a way a field's type decides on: `reason` says
 * how. Held in the parsed body until its place, and so its field, is known (settleNumbers).
 */
class InexactNumber {
  constructor (readonly text: string, readonly value: number, readonly reason: 'underflow' | 'integer') {}
}

/** Whether the JSON number `text`, read exactly (not as a double), is the integer `n`. */
function isExactly (text: string, n: number): boolean {
  const [, int = '', frac = '', exp = '0'] = NUMBER_PARTS.exec(text) ?? []
  // Without leading zeros: a finite value then has at most 309 digits before its point, so the BigInt
  // below stays small whatever the body holds.
  const digits = (int + frac).replace(/^0+/, '')
  const exponent = Number(exp) - frac.length
  if (exponent >= 0) return BigInt(digits) * 10n ** BigInt(exponent) === BigInt(Math.abs(n))
  // A nonzero digit after the point: not an integer at all.
  if (!/^0*$/.test(digits.slice(exponent))) return false
  return BigInt(digits.slice(0, exponent) || '0') === BigInt(Math.abs(n))
}

function requestNumber (text: string): number | string | InexactNumber {
  const n = Number(text)
  if (!Number.isFinite(n)) throw new RequestJsonError(`The number ${text.slice(0, TEXT_SHOWN)} is out of range.`)
  // An integer beyond 2^53 (every ATLAS id) keeps its exact digits, as a string: a number field then
  // fails validation by name instead of receiving a rounded value. `…993.0` is the same integer.
  if (DIGITS_INTEGER.test(text)) return Number.isSafeInteger(n) ? n : text
  // A nonzero number a double reads as 0 (1e-400): not what was sent, in any field.
  if (n === 0) return /[1-9]/.test(text.split(/[eE]/, 1)[0] ?? '') ? new InexactNumber(text, n, 'underflow') : n
  // A fraction a double reads as an integer (4.9999999999999999 as 5), or an integer in exponent form a
  // double cannot hold (9.007199254740993e15): an integer field must not take it, a number field may.
  if (Number.isInteger(n) && !isExactly(text, n)) return new InexactNumber(text, n, 'integer')
  return n
}

/** Where a value sits in a body: property names and array indexes from the root. */
export type BodyPath = ReadonlyArray<string | number>

function pointerOf (path: BodyPath): string {
  return path.map((p) => '/' + String(p).replaceAll('~', '~0').replaceAll('/', '~1')).join('')
}

/**
 * Replaces each InexactNumber in `value` by its double, or refuses it: always when a nonzero number
 * read as 0, and when it is not the integer written where `isIntegerAt` says an integer is wanted.
 */
function settleNumbers (value: unknown, path: Array<string | number>, isIntegerAt: (path: BodyPath) => boolean): unknown {
  if (value instanceof InexactNumber) {
    const shown = value.text.slice(0, TEXT_SHOWN)
    if (value.reason === 'underflow') throw new RequestJsonError(`is too small for a double: ${shown} would be read as 0`, pointerOf(path))
    if (isIntegerAt(path)) throw new RequestJsonError(`must be an integer, written exactly: ${shown} would be read as ${value.value}`, pointerOf(path))
    // An integer beyond 2^53 a double rounds (9.007199254740993e15 as …992): refused in any field, as its
    // digit form is (requestNumber keeps that as text, which a number field refuses by name).
    if (!Number.isSafeInteger(value.value)) throw new RequestJsonError(`is an integer beyond 2^53 that a double cannot hold: ${shown} would be read as ${value.value}`, pointerOf(path))
    return value.value
  }
  if (value === null || typeof value !== 'object') return value
  const holder = value as Record<string | number, unknown>
  for (const key of Array.isArray(value) ? value.keys() : Object.keys(value)) {
    path.push(key)
    holder[key] = settleNumbers(holder[key], path, isIntegerAt)
    path.pop()
  }
  return value
}

/**
 * A consumer's JSON body, read without losing digits: integers beyond 2^53 arrive as strings of their
 * exact digits (never rounded); numbers that overflow to Infinity or underflow to 0, bodies nested
 * deeper than MAX_REQUEST_DEPTH and anything that is not JSON are refused with a RequestJsonError, and so
 * is a number that is not the integer written where `isIntegerAt` (the route's schema) wants an integer.
 */
export function parseRequestJson (text: string, isIntegerAt: (path: BodyPath) => boolean): unknown {
  if (jsonDepthExceeds(text, MAX_REQUEST_DEPTH)) throw new RequestJsonError(`The body nests deeper than ${MAX_REQUEST_DEPTH} levels.`)
  let inexact = 0
  const readNumber = (t: string): number | string | InexactNumber => {
    const n = requestNumber(t)
    if (n instanceof InexactNumber) inexact++
    return n
  }
  let value: unknown
  try {
    value = parse(text, refuseProtoKeys, readNumber)
  } catch (err) {
    if (err instanceof RequestJsonError) throw err
    throw new RequestJsonError(`The body is not valid JSON: ${(err as Error).message}`)
  }
  // Rare (a hand-written or decimal-library number): the body is walked only when one was read.
  return inexact === 0 ? value : settleNumbers(value, [], isIntegerAt)
}
