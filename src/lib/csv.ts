// RFC 4180 CSV for the audit and usage reports: CRLF line ends, fields quoted when they hold a comma, a
// quote or a line break; objects as JSON, null as an empty field.
function cell (value: unknown): string {
  const text = value === null || value === undefined ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value)
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/** A header row of `columns`, then one row per item. */
export function toCsv<T> (columns: readonly string[], items: readonly T[], valueOf: (item: T, column: string) => unknown): string {
  const rows = items.map((item) => columns.map((c) => cell(valueOf(item, c))).join(','))
  return [columns.map(cell).join(','), ...rows].join('\r\n') + '\r\n'
}
