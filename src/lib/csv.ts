// RFC 4180 CSV for the light curve and the audit and usage reports: CRLF line ends, fields quoted when
// they hold a comma, a quote or a line break; objects as JSON, null as an empty field. Text a
// spreadsheet would run as a formula (starting with = + - @, a tab or a carriage return: OWASP's CSV
// injection list) gets a leading ' and quotes, so it shows as text; upstream strings (exposure names,
// filters) and consumer-chosen ones reach these files. Numbers are written as they are.
const FORMULA_START = /^[=+\-@\t\r]/

/** One CSV field. */
export function csvCell (value: unknown): string {
  if (value === null || value === undefined) return ''
  if (typeof value === 'number' || typeof value === 'bigint') return String(value)
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value)
  if (FORMULA_START.test(text)) return `"'${text.replace(/"/g, '""')}"`
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** A header row of `columns`, then one row per item. */
export function toCsv<T> (columns: readonly string[], items: readonly T[], valueOf: (item: T, column: string) => unknown): string {
  const rows = items.map((item) => columns.map((c) => csvCell(valueOf(item, c))).join(','))
  return [columns.map(csvCell).join(','), ...rows].join('\r\n') + '\r\n'
}
