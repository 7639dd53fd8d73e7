// Python's str() and repr() of the values a JSON body can hold, as json.loads builds them. DRF reads a
// JSON value through str() in CharField and ChoiceField (and IntegerField, after re_decimal), so a
// float must stay a float (12.0 is "12.0", 1e16 is "1e+16") and a list is "['all']", not "all".

/** A JSON number written as a float (a dot or an exponent): Python's float, whatever its value. */
export class PyFloat {
  constructor (readonly value: number) {}
}

/** repr(float): the shortest digits that read back, in exponent form below 1e-4 and from 1e16. */
export function pyFloatRepr (n: number): string {
  if (Number.isNaN(n)) return 'nan'
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf'
  if (n === 0) return Object.is(n, -0) ? '-0.0' : '0.0'
  // toExponential() without digits gives the shortest round-tripping ones, as repr does.
  const [mantissa = '', exp = '0'] = n.toExponential().split('e')
  const sign = mantissa.startsWith('-') ? '-' : ''
  const digits = mantissa.replace(/^-/, '').replace('.', '')
  const e = Number(exp)
  if (e < -4 || e >= 16) {
    const abs = Math.abs(e)
    return `${sign}${digits.charAt(0)}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${abs < 10 ? `0${abs}` : abs}`
  }
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`
  const whole = digits.padEnd(e + 1, '0')
  const fraction = digits.slice(e + 1)
  return `${sign}${whole.slice(0, e + 1)}.${fraction === '' ? '0' : fraction}`
}

// Characters repr() escapes: Unicode's non-printable classes (other, separators), except the space.
const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u
const NAMED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

function reprString (s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'"
  let out = quote
  for (const c of s) {
    const code = c.codePointAt(0) ?? 0
    if (c === quote) out += `\\${c}`
    else if (NAMED[c] !== undefined) out += NAMED[c]
    else if (c !== ' ' && NON_PRINTABLE.test(c)) {
      const hex = code.toString(16)
      out += code < 0x100 ? `\\x${hex.padStart(2, '0')}` : code < 0x10000 ? `\\u${hex.padStart(4, '0')}` : `\\U${hex.padStart(8, '0')}`
    } else out += c
  }
  return out + quote
}

/** repr() of a JSON value: strings quoted, the rest as str() writes them. */
export function pyRepr (v: unknown): string {
  return typeof v === 'string' ? reprString(v) : pyStr(v)
}

/** str() of a JSON value as json.loads returns it (dict, list, str, int, float, bool, None). */
export function pyStr (v: unknown): string {
  if (typeof v === 'string') return v
  if (v === null || v === undefined) return 'None'
  if (typeof v === 'boolean') return v ? 'True' : 'False'
  if (typeof v === 'number') return Number.isInteger(v) ? String(v === 0 ? 0 : v) : pyFloatRepr(v)
  if (typeof v === 'bigint') return v.toString()
  if (v instanceof PyFloat) return pyFloatRepr(v.value)
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`
  return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${reprString(k)}: ${pyRepr(x)}`).join(', ')}}`
}
