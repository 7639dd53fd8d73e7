// Filtering upstream JSON without changing a byte of what is kept: numbers stay as the upstream wrote
// them (lossless-json keeps each literal), so a filtered compat reply equals what the upstream would
// send, and a v1 record with mjd_min keeps every literal its whole rendering has.
import { isLosslessNumber, parse, stringify } from 'lossless-json'
import { applyMjd } from './record.js'

export type TextRow = Record<string, unknown>

export function parseText (text: string): unknown {
  return parse(text)
}

export function stringifyText (value: unknown): string {
  return stringify(value) ?? 'null'
}

/** A number field of a row parsed by parseText, or undefined when absent or not a number. */
export function numberOf (row: TextRow, field: string): number | undefined {
  const v = row[field]
  if (isLosslessNumber(v)) return v.valueOf() as number
  return typeof v === 'number' ? v : undefined
}

/** The exact digits of an integer field (ids), or undefined. */
export function digitsOf (row: TextRow, field: string): string | undefined {
  const v = row[field]
  return isLosslessNumber(v) ? v.toString() : undefined
}

/** Keeps the rows for which `keep` holds; returns the text of the kept rows, byte-exact. */
export function filterRows (text: string, keep: (row: TextRow) => boolean): string {
  const rows = parseText(text)
  if (!Array.isArray(rows)) return text
  return stringifyText((rows as TextRow[]).filter(keep))
}

/**
 * The rows whose `field` holds each of `ids` in turn, as one query per id would return them: grouped
 * in the order of `ids`, table order within a group, and a repeated id repeats its rows. Byte-exact.
 */
export function rowsInIdOrder (text: string, field: string, ids: readonly string[], keep: (row: TextRow) => boolean): string {
  const rows = parseText(text)
  if (!Array.isArray(rows)) return text
  const wanted = new Set(ids)
  const byId = new Map<string, TextRow[]>()
  for (const row of rows as TextRow[]) {
    const id = digitsOf(row, field)
    if (id === undefined || !wanted.has(id) || !keep(row)) continue
    const group = byId.get(id)
    if (group === undefined) byId.set(id, [row])
    else group.push(row)
  }
  return stringifyText(ids.flatMap((id) => byId.get(id) ?? []))
}

/** The upstream's `mjd` threshold on one record (upstream/record.ts), byte-exact for what is kept. */
export function filterRecordText (recordText: string, mjd: number): string {
  return stringifyText(applyMjd(parseText(recordText) as TextRow, mjd, numberOf))
}
