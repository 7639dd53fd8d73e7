// A JSON decoder that fails exactly like CPython's `json` module (the C scanner), because DRF puts
// Python's message into the 400 body: {"detail":"JSON parse error - Expecting value: line 1 column 1 (char 0)"}.
// It is the fallback for bodies that parseLossless rejects; it also accepts what Python accepts and
// lossless-json does not (duplicate keys: the last one wins).

import { PyFloat } from './pystr.js'

export class PythonJsonError extends Error {}

/**
 * Containers CPython's decoder opens before it gives up. The C scanner enters the interpreter's
 * recursion guard once per array or object, and that limit (1000 by default) also counts the Django and
 * DRF frames beneath the parser, so the real depth is somewhat under 1000 and depends on the stack.
 * 900 stays below it: whatever this decoder reads, the upstream's reads too.
 */
export const MAX_JSON_DEPTH = 900

const WS = new Set([' ', '\t', '\n', '\r'])
const NUMBER_RE = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

class StopIteration {
  constructor (readonly idx: number) {}
}

function fail (msg: string, s: string, pos: number): never {
  // Python counts code points where JavaScript counts UTF-16 units: count over code points.
  const before = Array.from(s.slice(0, pos))
  const lastNl = before.lastIndexOf('\n')
  const lineno = before.filter((c) => c === '\n').length + 1
  throw new PythonJsonError(`${msg}: line ${lineno} column ${before.length - lastNl} (char ${before.length})`)
}

function skipWs (s: string, idx: number): number {
  let i = idx
  while (i < s.length && WS.has(s.charAt(i))) i++
  return i
}

const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

function scanString (s: string, start: number): [string, number] {
  const begin = start - 1
  let out = ''
  let end = start
  for (;;) {
    let next = end
    let c = ''
    for (; next < s.length; next++) {
      c = s.charAt(next)
      if (c === '"' || c === '\\') break
      if (c.charCodeAt(0) <= 0x1f) fail('Invalid control character at', s, next)
    }
    if (next >= s.length) fail('Unterminated string starting at', s, begin)
    out += s.slice(end, next)
    next++
    if (c === '"') return [out, next]
    if (next === s.length) fail('Unterminated string starting at', s, begin)
    const e = s.charAt(next)
    if (e !== 'u') {
      const mapped = ESCAPES[e]
      if (mapped === undefined) fail('Invalid \\escape', s, next - 1)
      out += mapped
      end = next + 1
      continue
    }
    const hex = s.slice(next + 1, next + 5)
    if (next + 5 >= s.length) fail('Invalid \\uXXXX escape', s, next)
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('Invalid \\uXXXX escape', s, next)
    out += String.fromCharCode(parseInt(hex, 16))
    end = next + 5
  }
}

/**
 * Python's RecursionError text. DRF's JSON parser turns only ValueError into its 400 "JSON parse error",
 * so the upstream itself most likely lets RecursionError become a 500 page; here it is the parse error
 * it really is (a 400 in DRF's words), so a nesting bomb is never a 5xx.
 */
function tooDeep (kind: 'array' | 'object'): never {
  throw new PythonJsonError(`maximum recursion depth exceeded while decoding a JSON ${kind} from a unicode string`)
}

function constant (name: string): never {
  // DRF's strict_constant (rest_framework/utils/json.py) rejects NaN and Infinity.
  throw new PythonJsonError(`Out of range float values are not JSON compliant: '${name}'`)
}

/** One value at idx; `depth` is the number of arrays and objects already open around it. */
function scanOnce (s: string, idx: number, depth: number): [unknown, number] {
  if (idx >= s.length) throw new StopIteration(idx)
  const c = s.charAt(idx)
  if (c === '"') return scanString(s, idx + 1)
  if (c === '{') return depth < MAX_JSON_DEPTH ? parseObject(s, idx + 1, depth + 1) : tooDeep('object')
  if (c === '[') return depth < MAX_JSON_DEPTH ? parseArray(s, idx + 1, depth + 1) : tooDeep('array')
  if (s.startsWith('null', idx)) return [null, idx + 4]
  if (s.startsWith('true', idx)) return [true, idx + 4]
  if (s.startsWith('false', idx)) return [false, idx + 5]
  if (s.startsWith('NaN', idx)) constant('NaN')
  if (s.startsWith('Infinity', idx)) constant('Infinity')
  if (s.startsWith('-Infinity', idx)) constant('-Infinity')
  NUMBER_RE.lastIndex = idx
  const m = NUMBER_RE.exec(s)
  if (m === null) throw new StopIteration(idx)
  const text = m[0]
  const end = idx + text.length
  if (m[1] !== undefined || m[2] !== undefined) return [new PyFloat(Number(text)), end]
  const big = BigInt(text)
  return [big > MAX_SAFE || big < -MAX_SAFE ? big : Number(text), end]
}

function parseObject (s: string, start: number, depth: number): [Record<string, unknown>, number] {
  const obj: Record<string, unknown> = {}
  let idx = skipWs(s, start)
  if (idx < s.length && s.charAt(idx) === '}') return [obj, idx + 1]
  for (;;) {
    if (idx >= s.length || s.charAt(idx) !== '"') fail('Expecting property name enclosed in double quotes', s, idx)
    const [key, afterKey] = scanString(s, idx + 1)
    idx = skipWs(s, afterKey)
    if (idx >= s.length || s.charAt(idx) !== ':') fail("Expecting ':' delimiter", s, idx)
    idx = skipWs(s, idx + 1)
    const [value, afterValue] = scanOnce(s, idx, depth)
    // defineProperty, so that a "__proto__" key is data and not a prototype change.
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
    idx = skipWs(s, afterValue)
    if (idx < s.length && s.charAt(idx) === '}') return [obj, idx + 1]
    if (idx >= s.length || s.charAt(idx) !== ',') fail("Expecting ',' delimiter", s, idx)
    idx = skipWs(s, idx + 1)
  }
}

function parseArray (s: string, start: number, depth: number): [unknown[], number] {
  const out: unknown[] = []
  let idx = skipWs(s, start)
  if (idx < s.length && s.charAt(idx) === ']') return [out, idx + 1]
  for (;;) {
    const [value, afterValue] = scanOnce(s, idx, depth)
    out.push(value)
    idx = skipWs(s, afterValue)
    if (idx < s.length && s.charAt(idx) === ']') return [out, idx + 1]
    if (idx >= s.length || s.charAt(idx) !== ',') fail("Expecting ',' delimiter", s, idx)
    idx = skipWs(s, idx + 1)
  }
}

/** json.loads with Python's messages; throws PythonJsonError (the text after "JSON parse error - "). */
export function pythonJsonLoads (s: string): unknown {
  if (s.startsWith('\uFEFF')) fail('Unexpected UTF-8 BOM (decode using utf-8-sig)', s, 0)
  try {
    const [value, end] = scanOnce(s, skipWs(s, 0), 0)
    const after = skipWs(s, end)
    if (after !== s.length) fail('Extra data', s, after)
    return value
  } catch (err) {
    if (err instanceof StopIteration) fail('Expecting value', s, err.idx)
    throw err
  }
}

/**
 * Whether the text opens more than `max` arrays and objects at once (brackets inside strings are
 * text). A loop, not a parse, so that a nesting bomb is found before any recursive parser meets it.
 */
export function isNestedDeeper (text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) {
      inString = true
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) {
      depth--
    }
  }
  return false
}
