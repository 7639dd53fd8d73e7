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
