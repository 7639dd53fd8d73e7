// Byte-level helpers over compact JSON text, so the hot paths never parse whole upstream bodies:
// splitting the upstream `objects/` array into one text per record, and turning the upstream dialect
// (ids as bare integers) into the v1 dialect (ids as strings) in one pass.
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
const MAX_SAFE = 9007199254740991n

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

/**
 * Rewrites every integer literal beyond 2^53 as a JSON string of the same digits (the v1 rule), leaving
 * everything else byte for byte. Numbers inside strings are untouched.
 */
export function quoteBigInts (text: string): string {
  let out = ''
  let last = 0
  const n = text.length
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      i = skipString(text, i) - 1
      continue
    }
    if (c !== MINUS && (c < ZERO || c > NINE)) continue
    // A number literal starts here: find its end and whether it is a plain integer.
    let j = c === MINUS ? i + 1 : i
    while (j < n) {
      const d = text.charCodeAt(j)
      if (d < ZERO || d > NINE) break
      j++
    }
    const next = text.charCodeAt(j)
    const isInteger = next !== 0x2e && next !== 0x65 && next !== 0x45 // not . e E
    const digits = j - (c === MINUS ? i + 1 : i)
    if (isInteger && digits > MAX_SAFE_DIGITS) {
      const literal = text.slice(i, j)
      const big = BigInt(literal)
      if (big > MAX_SAFE || big < -MAX_SAFE) {
        out += text.slice(last, i) + '"' + literal + '"'
        last = j
      }
    }
    // Skip the rest of the literal (fraction, exponent) so its digits are not read as a new number.
    while (j < n) {
      const d = text.charCodeAt(j)
      if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isWhitespace(d)) break
      j++
    }
    i = j - 1
  }
  return last === 0 ? text : out + text.slice(last)
}
