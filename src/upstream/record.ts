// The upstream's full object record and its `mjd` threshold. objects/ with `mjd` keeps detections
// (`lc`) and non-detections (`lcnondets`) with mjd > value and forced photometry (`fp`) with
// mjd_obs >= value. The gateway caches the full history and applies the threshold itself, for both
// dialects, with these rules. (The upstream centres its non-detection search on the detections newer
// than `mjd`; a locally filtered record can differ from the upstream's in rare edge cases: an exposure
// whose footprint edge falls between the two centres, or an `mjd` with more than six decimals.)

type Row = Record<string, unknown>

/** The arrays of a record that `mjd` filters, the field compared, and whether the bound is inclusive. */
export const MJD_RULES: ReadonlyArray<{ key: string, field: string, isInclusive: boolean }> = [
  { key: 'lc', field: 'mjd', isInclusive: false },
  { key: 'lcnondets', field: 'mjd', isInclusive: false },
  { key: 'fp', field: 'mjd_obs', isInclusive: true }
]

/**
 * The record with the threshold applied, other fields untouched. `numberOf` reads a row's number
 * (plain numbers in v1, exact literals in the upstream dialect); rows without one are dropped.
 */
export function applyMjd<T extends Row> (record: T, mjd: number, numberOf: (row: Row, field: string) => number | undefined): T {
  const out: Row = { ...record }
  for (const rule of MJD_RULES) {
    const rows = record[rule.key]
    if (!Array.isArray(rows)) continue
    out[rule.key] = rows.filter((row: unknown) => {
      const v = row === null || typeof row !== 'object' ? undefined : numberOf(row as Row, rule.field)
      return v !== undefined && (rule.isInclusive ? v >= mjd : v > mjd)
    })
  }
  return out as T
}
