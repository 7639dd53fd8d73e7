// A light curve as SVG, CSV or JSON. The SVG is what a follow-up astronomer reads: magnitude (axis
// inverted, brighter up) with error bars and 5-sigma upper limits of non-detections, forced-photometry
// flux in µJy in a second panel, each ATLAS filter in its own colour (c cyan, o orange) with a legend,
// MJD with calendar dates below, the object's name and id in the title. Drawn in a 800×400 viewBox, so
// it scales to any size (1600×800 doubles every stroke and letter). Points are read by
// upstream/record.ts (lightCurveOf); this module knows no upstream field name. The SVG draws at most
// SVG_MAX_POINTS points (thinned evenly past that, with a note) and none off the scale (SVG_AXIS_LIMIT);
// CSV and JSON carry every point.
import type { LightCurve, LightCurvePoint, PointKind } from '../upstream/record.js'
import { toCsv } from '../lib/csv.js'
import { esc, linear, mjdToDate, n, padded, tickLabel, ticks, type Scale } from './svg.js'

export const FILTER_COLOURS: Readonly<Record<string, string>> = { c: '#00a5c8', o: '#f28c00' }
const OTHER_COLOUR = '#666666'
// Own properties only: a filter named __proto__ or constructor is an unknown filter, not an object's member.
const colour = (filter: string): string => Object.hasOwn(FILTER_COLOURS, filter) ? FILTER_COLOURS[filter] as string : OTHER_COLOUR

const W = 800
const H = 400
const LEFT = 64
const RIGHT = W - 16
const MAG_TOP = 56
const MAG_BOTTOM = 246
const FLUX_TOP = 262
const FLUX_BOTTOM = 338

function xAxis (x: Scale): string {
  const [d0, d1] = x.domain
  const values = ticks(d0, d1, 7)
  const step = values.length > 1 ? (values[1] as number) - (values[0] as number) : 1
  const parts = values.map((v) =>
    `<line x1="${n(x(v))}" x2="${n(x(v))}" y1="${FLUX_BOTTOM}" y2="${FLUX_BOTTOM + 4}"/>` +
    `<text x="${n(x(v))}" y="${FLUX_BOTTOM + 16}" text-anchor="middle">${tickLabel(v, step)}</text>` +
    `<text class="date" x="${n(x(v))}" y="${FLUX_BOTTOM + 29}" text-anchor="middle">${mjdToDate(v) ?? ''}</text>`)
  return `<g class="axis x" data-ticks="${values.length}">${parts.join('')}` +
    `<text class="label" x="${(LEFT + RIGHT) / 2}" y="${H - 6}" text-anchor="middle">MJD (UTC date)</text></g>`
}

function yAxis (y: Scale, top: number, bottom: number, label: string, cls: string): string {
  const [d0, d1] = y.domain
  const lo = Math.min(d0, d1)
  const hi = Math.max(d0, d1)
  const values = ticks(lo, hi, 5)
  const step = values.length > 1 ? (values[1] as number) - (values[0] as number) : 1
  const parts = values.map((v) =>
    `<line class="grid" x1="${LEFT}" x2="${RIGHT}" y1="${n(y(v))}" y2="${n(y(v))}"/>` +
    `<text x="${LEFT - 5}" y="${n(y(v) + 4)}" text-anchor="end">${tickLabel(v, step)}</text>`)
  const mid = (top + bottom) / 2
  return `<g class="axis ${cls}">${parts.join('')}` +
    `<rect class="frame" x="${LEFT}" y="${top}" width="${RIGHT - LEFT}" height="${bottom - top}"/>` +
    `<text class="label" transform="translate(14 ${mid}) rotate(-90)" text-anchor="middle">${label}</text></g>`
}

function errorBar (x: number, y0: number, y1: number): string {
  return `<line class="err" x1="${n(x)}" x2="${n(x)}" y1="${n(y0)}" y2="${n(y1)}"/>`
}

function point (p: LightCurvePoint, x: Scale, mag: Scale, flux: Scale): string {
  const px = x(p.mjd)
  const fill = colour(p.filter)
  const attrs = `class="pt" data-kind="${p.kind}" data-filter="${esc(p.filter)}" fill="${fill}" stroke="${fill}"`
  const date = mjdToDate(p.mjd)
  const tip = `<title>${esc(`${p.kind.replace('_', '-')} ${p.filter} MJD ${p.mjd}${date === null ? '' : ` (${date})`}` +
    (p.kind === 'forced' ? ` ${p.flux_ujy ?? '?'} ± ${p.flux_err_ujy ?? '?'} µJy` : ` ${p.kind === 'non_detection' ? '> ' : ''}${p.mag ?? '?'}${p.mag_err === null ? '' : ` ± ${p.mag_err}`} mag`) +
    (p.exposure === null ? '' : ` ${p.exposure}`))}</title>`
  if (p.kind === 'detection' && p.mag !== null) {
    const py = mag(p.mag)
    const bar = p.mag_err === null ? '' : errorBar(px, mag(p.mag - p.mag_err), mag(p.mag + p.mag_err))
    return `<g ${attrs}>${tip}${bar}<circle cx="${n(px)}" cy="${n(py)}" r="3.2"/></g>`
  }
  if (p.kind === 'non_detection' && p.mag !== null) {
    // An upper limit on the brightness: fainter than this, so the arrow points down (fainter).
    const py = mag(p.mag)
    return `<g ${attrs} fill-opacity="0.25">${tip}<path d="M${n(px - 4.5)} ${n(py)}h9l-4.5 8z"/>` +
      `<line class="err" x1="${n(px - 4.5)}" x2="${n(px + 4.5)}" y1="${n(py)}" y2="${n(py)}"/></g>`
  }
  if (p.kind === 'forced' && p.flux_ujy !== null) {
    const py = flux(p.flux_ujy)
    const bar = p.flux_err_ujy === null ? '' : errorBar(px, flux(p.flux_ujy - p.flux_err_ujy), flux(p.flux_ujy + p.flux_err_ujy))
    return `<g ${attrs}>${tip}${bar}<rect x="${n(px - 2.5)}" y="${n(py - 2.5)}" width="5" height="5"/></g>`
  }
  return ''
}

function legend (filters: readonly string[]): string {
  const items: string[] = []
  let x = LEFT
  for (const f of filters) {
    items.push(`<g class="item" data-filter="${esc(f)}"><circle cx="${x + 5}" cy="40" r="4" fill="${colour(f)}"/>` +
      `<text x="${x + 13}" y="44">${esc(f)}</text></g>`)
    x += 34
  }
  items.push(`<g class="item"><circle cx="${x + 5}" cy="40" r="3.2" fill="#333"/><text x="${x + 13}" y="44">detection ± 1σ</text></g>`)
  x += 112
  items.push(`<g class="item"><path d="M${x} 37h9l-4.5 8z" fill="#333" fill-opacity="0.25" stroke="#333"/><text x="${x + 14}" y="44">non-detection (5σ limit)</text></g>`)
  x += 160
  items.push(`<g class="item"><rect x="${x}" y="37" width="6" height="6" fill="#333"/><text x="${x + 12}" y="44">forced photometry (µJy)</text></g>`)
  return `<g class="legend">${items.join('')}</g>`
}

/**
 * The most points the SVG draws. A record can hold tens of thousands of forced-photometry rows: drawn
 * whole, 20,000 of them made a 5.7 MB picture that took seconds to render, with ~25 points to a pixel
 * column of a 720-pixel axis. Past this, each kind is thinned evenly and a note says so.
 */
export const SVG_MAX_POINTS = 2000

/**
 * The largest magnitude (in absolute value) of anything the SVG puts on an axis: an MJD, a magnitude ±
 * its error, a flux ± its error. Number.MAX_VALUE is 1.8e308: values of ±1e308 are finite, but the axis
 * span between them (or 18 + an error of 1.5e308) overflowed to Infinity and the scale wrote NaN into
 * the coordinates. Within ±1e300, the padded span, its product by the pixel range and the tick step stay
 * some 1e5 below MAX_VALUE. A point with a value beyond is left out of the axes and the marks (counted,
 * with a note); nothing measured comes near it.
 */
export const SVG_AXIS_LIMIT = 1e300

/** The values `p` puts on the axes (what the scales must cover to draw it). */
function axisValues (p: LightCurvePoint): number[] {
  const out = [p.mjd]
  if (p.kind === 'forced') {
    if (p.flux_ujy !== null) out.push(p.flux_ujy - (p.flux_err_ujy ?? 0), p.flux_ujy + (p.flux_err_ujy ?? 0))
  } else if (p.mag !== null) {
    out.push(p.mag - (p.mag_err ?? 0), p.mag + (p.mag_err ?? 0))
  }
  return out
}

// A sum of two finite values can be Infinity: Math.abs(Infinity) <= limit is false, so that is off the scale too.
const onScale = (p: LightCurvePoint): boolean => axisValues(p).every((v) => Math.abs(v) <= SVG_AXIS_LIMIT)

/** `count` of `list` evenly spaced by position, its first and last among them (all when count ≥ its length). */
function evenly<T> (list: readonly T[], count: number): T[] {
  if (count >= list.length) return [...list]
  if (count <= 1) return list.slice(0, count)
  return Array.from({ length: count }, (_, i) => list[Math.round(i * (list.length - 1) / (count - 1))] as T)
}

/**
 * The points the SVG draws: all of them up to SVG_MAX_POINTS; past that each kind gets an even share of
 * it (a kind with fewer points keeps them all and leaves the rest to the others, so the few detections
 * of a record with thousands of forced points are all drawn), taken evenly in MJD order. Kinds stay in
 * their order.
 */
function drawnPoints (pts: readonly LightCurvePoint[]): readonly LightCurvePoint[] {
  if (pts.length <= SVG_MAX_POINTS) return pts
  const byKind = new Map<PointKind, LightCurvePoint[]>()
  for (const p of pts) {
    const list = byKind.get(p.kind)
    if (list === undefined) byKind.set(p.kind, [p])
    else list.push(p)
  }
  const shares = new Map<PointKind, number>()
  let left = SVG_MAX_POINTS
  const smallestFirst = [...byKind].sort((a, b) => a[1].length - b[1].length)
  smallestFirst.forEach(([kind, list], i) => {
    const share = Math.min(list.length, Math.floor(left / (smallestFirst.length - i)))
    shares.set(kind, share)
    left -= share
  })
  return [...byKind].flatMap(([kind, list]) => evenly(list, shares.get(kind) ?? 0))
}

/** The light curve as an SVG document (UTF-8 text). */
export function lightCurveSvg (lc: LightCurve): string {
  // Legend and counts are those of every point, axes those of every point on the scale; only the marks
  // are thinned.
  const pts = lc.points
  const plotted = pts.filter(onScale)
  const offScale = pts.length - plotted.length
  const drawn = drawnPoints(plotted)
  const mags: number[] = []
  const fluxes: number[] = [0]
  for (const p of plotted) {
    const [, ...values] = axisValues(p)
    if (p.kind === 'forced') fluxes.push(...values)
    else mags.push(...values)
  }
  const [x0, x1] = padded(plotted.map((p) => p.mjd), 0.03, 1)
  const [m0, m1] = padded(mags, 0.08, 0.5)
  const [f0, f1] = padded(fluxes, 0.08, 1)
  const x = linear(x0, x1, LEFT, RIGHT)
  const mag = linear(m0, m1, MAG_TOP, MAG_BOTTOM) // brighter (smaller) magnitudes at the top
  const flux = linear(f0, f1, FLUX_BOTTOM, FLUX_TOP)
  const filters = [...new Set(pts.map((p) => p.filter))].sort()
  const heading = [lc.name, lc.other_name].filter((s) => s !== null).join(' / ')
  const title = `${heading === '' ? 'ATLAS object' : heading} (${lc.id})`
  const counts = { detection: 0, non_detection: 0, forced: 0 }
  for (const p of pts) counts[p.kind]++
  const body = pts.length === 0
    ? `<text x="${W / 2}" y="${(MAG_TOP + MAG_BOTTOM) / 2}" text-anchor="middle">no photometry after this MJD</text>`
    : drawn.map((p) => point(p, x, mag, flux)).join('')
  const off = offScale === 0 ? '' : `; ${offScale} off the scale (a value beyond ±${SVG_AXIS_LIMIT})`
  const note = drawn.length === pts.length
    ? ''
    : `<text class="note" x="${RIGHT}" y="20" text-anchor="end">${drawn.length} of ${pts.length} points drawn${off}; CSV and JSON have all</text>`
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="lc-title" ` +
    `data-detections="${counts.detection}" data-non-detections="${counts.non_detection}" data-forced="${counts.forced}" data-drawn="${drawn.length}" data-off-scale="${offScale}">` +
    `<title id="lc-title">Light curve of ${esc(title)}</title>` +
    '<style>text{font:11px sans-serif;fill:#222}.title{font-size:14px;font-weight:bold}.date{fill:#666;font-size:9.5px}' +
    '.label{font-size:11px;fill:#444}.axis .grid{stroke:#e8e8e8}.frame{fill:none;stroke:#999}.axis line{stroke:#999}.err{stroke-width:1.2}' +
    '.zero{stroke:#999;stroke-dasharray:3 3}.note{fill:#a33;font-size:10px}</style>' +
    `<rect width="${W}" height="${H}" fill="#fff"/>` +
    `<text class="title" x="${LEFT}" y="20">${esc(title)}</text>` + note +
    legend(filters) +
    yAxis(mag, MAG_TOP, MAG_BOTTOM, 'magnitude (AB)', 'y-mag') +
    yAxis(flux, FLUX_TOP, FLUX_BOTTOM, 'flux (µJy)', 'y-flux') +
    `<line class="zero" x1="${LEFT}" x2="${RIGHT}" y1="${n(flux(0))}" y2="${n(flux(0))}"/>` +
    xAxis(x) +
    `<g class="points">${body}</g></svg>\n`
}

const CSV_COLUMNS = ['kind', 'mjd', 'date', 'filter', 'mag', 'mag_err', 'flux_ujy', 'flux_err_ujy', 'exposure'] as const

/**
 * One row per point (RFC 4180, CRLF; lib/csv.ts), with a header. `mag` of a non-detection is its 5-sigma limit;
 * `date` is empty for an MJD with no calendar date (svg.ts mjdToDate).
 */
export function lightCurveCsv (lc: LightCurve): string {
  return toCsv(CSV_COLUMNS, lc.points, (p, column) => column === 'date' ? mjdToDate(p.mjd) : p[column as keyof LightCurvePoint])
}

/** The JSON form: the object's id and names, and the points with the CSV's columns (`date` null where the CSV's is empty). */
export function lightCurveJson (lc: LightCurve): string {
  return JSON.stringify({
    id: lc.id,
    name: lc.name,
    other_name: lc.other_name,
    points: lc.points.map((p) => ({ ...p, date: mjdToDate(p.mjd) }))
  })
}
