// Small pieces for server-rendered SVG: escaping, linear scales, readable axis ticks, and MJD dates.
// The light curve (lightcurve.ts) and the status page's charts (charts.ts) are built from these; why
// hand-written SVG rather than a plotting library is in docs/architecture.md (Pictures and pages).

// Anything outside XML 1.0's Char production, which no document may hold, even as a character reference:
// C0 controls other than tab, LF and CR, U+FFFE, U+FFFF, and (in `u` mode, where a pair is one code
// point) a surrogate on its own. One of them in an upstream name or filter made the whole SVG fail to
// parse (a browser shows its error instead of the picture).
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu

/** Text for an XML text node or attribute value; a character XML forbids becomes U+FFFD. */
export function esc (text: string): string {
  return text.replace(NOT_XML_CHAR, '\uFFFD').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')
}

/** A number for SVG coordinates: two decimals at most, no exponent. */
export function n (v: number): string {
  return String(Math.round(v * 100) / 100)
}

export interface Scale { (v: number): number, domain: [number, number] }

/**
 * The narrowest span an axis is drawn across; a narrower one is drawn as a zero span (a single value).
 * Below it the tick step underflows: for MJDs 0 and 5e-323 the raw step (span / count) was below 1e-323,
 * 10 ** floor(log10(raw)) was 0 and every tick NaN. From 1e-300 up (the mirror of lightcurve.ts's
 * SVG_AXIS_LIMIT) the step and its power of ten stay normal doubles, some 1e7 above the subnormals.
 */
const SMALLEST_SPAN = 1e-300

/** Maps [d0, d1] onto [r0, r1]; a zero-width domain (or one narrower than SMALLEST_SPAN) maps to the middle of the range. */
export function linear (d0: number, d1: number, r0: number, r1: number): Scale {
  const span = d1 - d0
  const f = ((v: number) => Math.abs(span) < SMALLEST_SPAN ? (r0 + r1) / 2 : r0 + (v - d0) * (r1 - r0) / span) as Scale
  f.domain = [d0, d1]
  return f
}

/** About `count` round tick values (1, 2 or 5 × 10^k apart) covering [min, max]. */
export function ticks (min: number, max: number, count: number): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return []
  // min === max included; a span of a few subnormals has no round step (see SMALLEST_SPAN).
  if (max - min < SMALLEST_SPAN) return [min]
  const raw = (max - min) / Math.max(1, count)
  const mag = 10 ** Math.floor(Math.log10(raw))
  // The nearest of 1, 2, 5 and 10 × 10^k on a log scale (the thresholds are their geometric means).
  const r = raw / mag
  const step = (r >= Math.sqrt(50) ? 10 : r >= Math.sqrt(10) ? 5 : r >= Math.sqrt(2) ? 2 : 1) * mag
  const out: number[] = []
  // Counted steps, not `v += step`: on an axis a few ulps wide the step is below half an ulp of the
  // values, so adding it never moved `v` (and the loop filled the heap). Ticks that round to the same
  // double are kept once, and at most count × 10 + 1 are tried, whatever the doubles do.
  const first = Math.ceil(min / step)
  for (let k = 0; k <= Math.max(1, count) * 10; k++) {
    const v = (first + k) * step
    if (v > max + step * 1e-9) break
    if (out.length === 0 || v > (out[out.length - 1] as number)) out.push(v)
  }
  return out
}

/** A tick label: as many decimals as the step needs. */
export function tickLabel (v: number, step: number): string {
  const decimals = step >= 1 || step === 0 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)))
  return v.toFixed(decimals)
}

/** [min, max] padded by `fraction` of the span (or ±`empty` when the span is zero or narrower than SMALLEST_SPAN). */
export function padded (values: readonly number[], fraction: number, empty: number): [number, number] {
  let min = Infinity
  let max = -Infinity
  for (const v of values) { if (v < min) min = v; if (v > max) max = v }
  if (min === Infinity) return [0, 1]
  const pad = max - min < SMALLEST_SPAN ? empty : (max - min) * fraction
  return [min - pad, max + pad]
}

// MJD 40587 is 1970-01-01 (the Unix epoch).
const MJD_UNIX_EPOCH = 40587

/**
 * The UTC calendar date (YYYY-MM-DD) of a Modified Julian Date, or null outside the years 0000–9999:
 * Date ends about 1e8 days from 1970 (toISOString throws beyond), and beyond four digits the ISO form is
 * `+010000-01-01`, not YYYY-MM-DD. One such MJD in a record must not fail its whole light curve.
 */
export function mjdToDate (mjd: number): string | null {
  const time = new Date((mjd - MJD_UNIX_EPOCH) * 86_400_000)
  if (Number.isNaN(time.getTime())) return null
  const iso = time.toISOString()
  return /^\d{4}-/.test(iso) ? iso.slice(0, 10) : null
}
