// The status page's charts as inline SVG: columns or a line over time, and horizontal bars against a
// limit. Built from render/svg.ts like the light curve.
import { esc, linear, n, tickLabel, ticks } from './svg.js'

export interface TimePoint { t: number, v: number | null }

export interface TimeChart {
  /** The chart's accessible name (aria-label), also its class for tests and styles. */
  name: string
  points: TimePoint[]
  /** Start and end of the time axis (ms since the epoch). */
  from: number
  to: number
  kind: 'columns' | 'line'
  unit: string
  colour?: string
  /** A horizontal reference line (a capacity), labelled. */
  limit?: { value: number, label: string }
  /** Fixed y range (a ratio: 0..1); otherwise 0..max. */
  yMax?: number
  /** Formats a y value (default: the tick label). */
  format?: (v: number) => string
}

const W = 520
const H = 190
const L = 48
const R = W - 12
const T = 14
const B = H - 28

function clock (ms: number, spanMs: number): string {
  const iso = new Date(ms).toISOString()
  return spanMs > 36 * 3600_000 ? iso.slice(5, 10) : iso.slice(11, 16)
}

/** Columns (one per point) or a line with gaps where a point is null, over [from, to], in UTC. */
export function timeChart (c: TimeChart): string {
  const values = c.points.map((p) => p.v).filter((v): v is number => v !== null)
  // At least 0..5, so that counts get whole-number ticks.
  const top = c.yMax ?? Math.max(5, c.limit?.value ?? 0, ...values) * 1.1
  const x = linear(c.from, c.to, L, R)
  const y = linear(0, top, B, T)
  const yTicks = ticks(0, top, 4)
  const yStep = yTicks.length > 1 ? (yTicks[1] as number) - (yTicks[0] as number) : 1
  const fmt = c.format ?? ((v: number) => tickLabel(v, yStep))
  const span = c.to - c.from
  const xTicks = Array.from({ length: 5 }, (_, i) => c.from + span * i / 4)
  const colour = c.colour ?? '#3a6fc4'
  const axes = yTicks.map((v) => `<line x1="${L}" x2="${R}" y1="${n(y(v))}" y2="${n(y(v))}" stroke="#eceff3"/>` +
    `<text x="${L - 5}" y="${n(y(v) + 4)}" text-anchor="end">${esc(fmt(v))}</text>`).join('') +
    xTicks.map((t) => `<text x="${n(x(t))}" y="${B + 16}" text-anchor="middle">${clock(t, span)}</text>`).join('') +
    `<line x1="${L}" x2="${R}" y1="${B}" y2="${B}" stroke="#999"/><line x1="${L}" x2="${L}" y1="${T}" y2="${B}" stroke="#999"/>`
  let marks = ''
  if (c.kind === 'columns') {
    const width = Math.max(1, (R - L) / Math.max(1, c.points.length) - 1)
    marks = c.points.filter((p) => p.v !== null).map((p) =>
      `<rect class="mark" x="${n(x(p.t) - width)}" y="${n(y(p.v as number))}" width="${n(width)}" height="${n(B - y(p.v as number))}" fill="${colour}"><title>${esc(`${new Date(p.t).toISOString()} ${fmt(p.v as number)} ${c.unit}`)}</title></rect>`).join('')
  } else {
    let d = ''
    let pen = false
    for (const p of c.points) {
      if (p.v === null) { pen = false; continue }
      d += `${pen ? 'L' : 'M'}${n(x(p.t))} ${n(y(p.v))}`
      pen = true
    }
    marks = `<path class="mark" d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>` +
      c.points.filter((p) => p.v !== null).map((p) => `<circle cx="${n(x(p.t))}" cy="${n(y(p.v as number))}" r="2" fill="${colour}"/>`).join('')
  }
  const limit = c.limit === undefined
    ? ''
    : `<line class="limit" x1="${L}" x2="${R}" y1="${n(y(c.limit.value))}" y2="${n(y(c.limit.value))}" stroke="#c0341d" stroke-dasharray="5 3"/>` +
      `<text x="${R - 2}" y="${n(y(c.limit.value) - 4)}" text-anchor="end" fill="#c0341d">${esc(c.limit.label)}</text>`
  const empty = values.length === 0 ? `<text x="${(L + R) / 2}" y="${(T + B) / 2}" text-anchor="middle" fill="#889">no samples yet</text>` : ''
  return `<svg class="chart ${esc(c.name)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(c.name)}">` +
    `<style>text{font:11px sans-serif;fill:#333}</style>${axes}${marks}${limit}${empty}` +
    `<text x="${L}" y="${H - 2}" fill="#667">UTC · ${esc(c.unit)}</text></svg>`
}

export interface Bar {
  label: string
  value: number | null
  limit?: number
  /** Shown after the value (keep it short), and in full in the tooltip. */
  note?: string
  /** The tooltip (e.g. a consumer's name). */
  title?: string
}

const LABEL_MAX = 22
const shorten = (s: string): string => s.length > LABEL_MAX ? s.slice(0, LABEL_MAX - 1) + '…' : s

/** Horizontal bars, one per item; against its limit when it has one (red from 90 %). */
export function barChart (name: string, bars: readonly Bar[]): string {
  const rowH = 24
  const labelW = 150
  const barW = W - labelW - 140
  const max = Math.max(1, ...bars.map((b) => b.limit ?? b.value ?? 0))
  const rows = bars.map((b, i) => {
    const yTop = 6 + i * rowH
    const full = b.limit ?? max
    const share = b.value === null ? 0 : Math.min(1, b.value / Math.max(1, full))
    const colour = b.limit !== undefined && share >= 0.9 ? '#c0341d' : '#3a6fc4'
    const text = b.value === null ? 'unknown' : `${b.value}${b.limit === undefined ? '' : ` / ${b.limit}`}${b.note === undefined ? '' : ` ${b.note}`}`
    const tip = `${b.label}${b.title === undefined ? '' : ` (${b.title})`}: ${text}`
    return `<g class="bar"><title>${esc(tip)}</title><text x="${labelW - 6}" y="${yTop + 15}" text-anchor="end">${esc(shorten(b.label))}</text>` +
      `<rect x="${labelW}" y="${yTop + 3}" width="${barW}" height="${rowH - 8}" fill="#eef1f5"/>` +
      `<rect class="mark" x="${labelW}" y="${yTop + 3}" width="${n(barW * share)}" height="${rowH - 8}" fill="${colour}"/>` +
      `<text x="${labelW + barW + 6}" y="${yTop + 15}">${esc(text)}</text></g>`
  }).join('')
  const h = Math.max(rowH, bars.length * rowH) + 12
  const empty = bars.length === 0 ? `<text x="${W / 2}" y="${h / 2 + 4}" text-anchor="middle" fill="#889">none</text>` : ''
  return `<svg class="chart ${esc(name)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${h}" role="img" aria-label="${esc(name)}">` +
    `<style>text{font:11px sans-serif;fill:#333}</style>${rows}${empty}</svg>`
}
