// The upstream's cone search, answered from one wide search per position. `cone/` sorts the hits
// within `radius` by separation and answers `all` (the list), `nearest` (the first hit, or `{}`) or
// `count` (`{"count": n}`). One `all` search at the largest radius the upstream allows therefore holds
// every smaller radius and every mode at that position: the hits with separation <= radius, in the
// same order. The gateway asks the upstream that one question per position and answers the rest here,
// in the upstream's own bytes (number literals kept as sent).
import { isLosslessNumber, parse, stringify } from 'lossless-json'
import { MAX_CONE_RADIUS_ARCSEC, fields, replyFields, type ConeMode, type Fields } from './endpoints.js'

/** The upstream's answer to a radius above its limit (status 400). */
export const CONE_RADIUS_ERROR = `{"error":"Max radius is ${MAX_CONE_RADIUS_ARCSEC} arcsec."}`

/** The one search that answers every radius and mode at a position. */
export function wideConeFields (ra: number, dec: number): Fields {
  return fields.cone({ ra, dec, radius: MAX_CONE_RADIUS_ARCSEC, mode: 'all' })
}

function separationOf (row: unknown): number | undefined {
  if (row === null || typeof row !== 'object') return undefined
  const v = (row as Record<string, unknown>)[replyFields.coneHit.separation]
  if (isLosslessNumber(v)) return Number(v.toString())
  return typeof v === 'number' ? v : undefined
}

/**
 * What the upstream answers for (`radius` ≤ the limit, `mode`), from the wide search's reply text; kept
 * rows are byte-identical to the upstream's. Undefined when the wide reply is not a list.
 */
export function coneFromWide (wideText: string, radius: number, mode: ConeMode): string | undefined {
  const rows: unknown = parse(wideText)
  if (!Array.isArray(rows)) return undefined
  const within = rows.filter((row) => {
    const s = separationOf(row)
    return s !== undefined && s <= radius
  })
  if (mode === 'count') return `{"${replyFields.coneCount}":${within.length}}`
  if (mode === 'all') return stringify(within) ?? '[]'
  return within.length === 0 ? '{}' : stringify(within[0]) ?? '{}'
}
