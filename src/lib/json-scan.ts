// Byte-level helpers over compact JSON, so the hot paths never parse whole upstream bodies: splitting
// the upstream `objects/` array into one text per record, and turning the upstream dialect (ids as
// bare integers) into the v1 dialect (ids as strings) in one pass over the bytes.
const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const COMMA = 0x2c
const MINUS = 0x2d
const ZERO = 0x30
const NINE = 0x39
// Integers with more digits than this may exceed 2^53 (9007199254740991 has 16 digits).
const MAX_SAFE_DIGITS = 15

function isWhitespace (c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
}

/** Index just past the string that starts at `start` (which holds the opening quote). */
function skipString (text: string, start: number): number {
  let i = start + 1
  for (;;) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) return i + 1
    if (c === BACKSLASH) i += 2
    else if (Number.isNaN(c)) throw new SyntaxError('unterminated string in JSON')
    else i++
  }
}

/**
 * Splits a JSON array text into the texts of its elements, untouched. Throws when `text` is not an
 * array. Elements keep their exact bytes, so 19-digit integers stay digit-exact.
 */
export function splitArray (text: string): string[] {
  let i = 0
  while (isWhitespace(text.charCodeAt(i))) i++
  if (text.charCodeAt(i) !== OPEN_BRACKET) throw new SyntaxError('expected a JSON array')
  i++
  const out: string[] = []
  let depth = 0
  let start = -1
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      if (start < 0) start = i
      i = skipString(text, i) - 1
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (start < 0) start = i
      depth++
    } else if (c === CLOSE_BRACE || (c === CLOSE_BRACKET && depth > 0)) {
      depth--
    } else if (c === CLOSE_BRACKET) {
      if (start >= 0) out.push(text.slice(start, i).trimEnd())
      return out
    } else if (c === COMMA && depth === 0) {
      out.push(text.slice(start, i).trimEnd())
      start = -1
    } else if (start < 0 && !isWhitespace(c)) {
      start = i
    }
  }
  throw new SyntaxError('unterminated JSON array')
}

// 2^53 - 1: a 16-digit integer above it is beyond 2^53 (any longer one is, any shorter one is not).
const MAX_SAFE_DIGITS_TEXT = Buffer.from('9007199254740991', 'latin1')

/** Whether the digits buf[start, end) (no sign, no leading zeros) are an integer beyond 2^53 - 1. */
function isBeyondSafe (buf: Uint8Array, start: number, end: number): boolean {
  const digits = end - start
  if (digits !== MAX_SAFE_DIGITS + 1) return digits > MAX_SAFE_DIGITS + 1
  for (let k = 0; k < digits; k++) {
    const a = buf[start + k] as number
    const b = MAX_SAFE_DIGITS_TEXT[k] as number
    if (a !== b) return a > b
  }
  return false
}

/**
 * Rewrites every integer literal beyond 2^53 as a JSON string of the same digits (the v1 rule), leaving
 * every other byte as it is. Numbers inside strings are untouched. Works on the UTF-8 bytes (the bytes
 * of a multi-byte character are all above 0x7f, so none is taken for a quote or a digit): no decoding
 * to a string and encoding back, and the output is the input's pieces copied around the quotes.
 * Returns `bytes` itself when there is nothing to quote.
 */
export function quoteBigInts (bytes: Buffer): Buffer {
  return quoteSpans(bytes, bigIntSpans(bytes))
}

/**
 * The start and end offsets (in pairs) of every integer literal beyond 2^53 in the JSON text `bytes`,
 * outside strings: what quoteBigInts quotes. Stored with a cached record, so that rendering it later
 * is quoteSpans alone.
 */
export function bigIntSpans (bytes: Buffer): number[] {
  const n = bytes.length
  const marks: number[] = []
  let i = 0
  while (i < n) {
    const c = bytes[i] as number
    if (c === QUOTE) {
      i++
      for (;;) {
        if (i >= n) throw new SyntaxError('unterminated string in JSON')
        const d = bytes[i] as number
        if (d === QUOTE) break
        i += d === BACKSLASH ? 2 : 1
      }
      i++
      continue
    }
    if (c !== MINUS && (c < ZERO || c > NINE)) {
      i++
      continue
    }
    // A number literal starts here: find the end of its integer part and whether it is a plain integer.
    const digitsAt = c === MINUS ? i + 1 : i
    let j = digitsAt
    while (j < n) {
      const d = bytes[j] as number
      if (d < ZERO || d > NINE) break
      j++
    }
    const next = bytes[j]
    const isInteger = next !== 0x2e && next !== 0x65 && next !== 0x45 // not . e E
    if (isInteger && isBeyondSafe(bytes, digitsAt, j)) marks.push(i, j)
    // Skip the rest of the literal (fraction, exponent) so its digits are not read as a new number.
    while (j < n) {
      const d = bytes[j] as number
      if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isWhitespace(d)) break
      j++
    }
    i = j
  }
  return marks
}

/**
 * `bytes` with a quote before and after each span (start and end offsets in pairs, ascending, as
 * bigIntSpans finds them): the pieces copied around the quotes. `bytes` itself when there are none.
 */
export function quoteSpans (bytes: Buffer, marks: readonly number[]): Buffer {
  if (marks.length === 0) return bytes
  const n = bytes.length
  const out = Buffer.allocUnsafe(n + marks.length)
  let at = 0
  let last = 0
  for (let k = 0; k < marks.length; k += 2) {
    const from = marks[k] as number
    const to = marks[k + 1] as number
    if (from < last || to < from || to > n) throw new RangeError(`spans out of order or beyond the body at ${from}-${to}`)
    at += bytes.copy(out, at, last, from)
    out[at++] = QUOTE
    at += bytes.copy(out, at, from, to)
    out[at++] = QUOTE
    last = to
  }
  bytes.copy(out, at, last)
  return out
}
