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

/** Thrown for a request body that is not acceptable JSON; `message` says why, for the consumer. */
export class RequestJsonError extends Error {}

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

function requestNumber (text: string): number | string {
  const n = Number(text)
  if (!Number.isFinite(n)) throw new RequestJsonError(`The number ${text.slice(0, 40)} is out of range.`)
  // An integer beyond 2^53 (every ATLAS id) keeps its exact digits, as a string: a number field then
  // fails validation by name instead of receiving a rounded value.
  if (INTEGER.test(text) && !Number.isSafeInteger(n)) return text
  return n
}

/**
 * A consumer's JSON body, read without losing digits: integers beyond 2^53 arrive as strings of their
 * exact digits (never rounded), numbers that overflow to Infinity and bodies nested deeper than
 * MAX_REQUEST_DEPTH are refused with a RequestJsonError, and so is anything that is not JSON.
 */
export function parseRequestJson (text: string): unknown {
  if (jsonDepthExceeds(text, MAX_REQUEST_DEPTH)) throw new RequestJsonError(`The body nests deeper than ${MAX_REQUEST_DEPTH} levels.`)
  try {
    return parse(text, refuseProtoKeys, requestNumber)
  } catch (err) {
    if (err instanceof RequestJsonError) throw err
    throw new RequestJsonError(`The body is not valid JSON: ${(err as Error).message}`)
  }
}
