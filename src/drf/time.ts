// Time in the sandbox: instants are integer microseconds since the Unix epoch (what a Django
// DateTimeField holds), formatted the way DRF renders them.

/** MJD of 1970-01-01T00:00:00Z. */
const MJD_UNIX_EPOCH = 40587

/** The synthetic data's "today": 2026-01-01T00:00:00Z (MJD 61041). Fixed so that data is reproducible. */
export const DATA_EPOCH_MJD = 61041

/** The instant of an MJD, to the whole second (stored data carries no fractions of a second). */
export function mjdToUs (mjd: number): number {
  return Math.round((mjd - MJD_UNIX_EPOCH) * 86400) * 1e6
}

/** Wall-clock now in whole microseconds, from the high-resolution clock (so ages are never exactly 0). */
export function nowUs (): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000)
}

function pad (n: number, width = 2): string {
  return String(n).padStart(width, '0')
}

/** DRF DateTimeField output: ISO-8601 in UTC, `Z`, microseconds only when non-zero. */
export function formatDateTime (us: number, zone: 'Z' | '' = 'Z'): string {
  const ms = Math.floor(us / 1000)
  const d = new Date(ms)
  const micro = ((us % 1e6) + 1e6) % 1e6
  const base = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
  return base + (micro === 0 ? '' : `.${pad(micro, 6)}`) + zone
}

// Django's datetime_re (django/utils/dateparse.py), which DRF's ISO-8601 input format uses.
const DATETIME_RE = /^(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6})\d{0,6})?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/
// Date-only values are accepted since Django 4.0 (datetime.fromisoformat); the deployment likely runs 4.1.
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/

function daysInMonth (year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate()
}

/** Parses a DRF DateTimeField input; null when DRF would answer "Datetime has wrong format". */
export function parseDateTime (value: string): number | null {
  const date = DATE_RE.exec(value)
  const m = date ?? DATETIME_RE.exec(value)
  if (m === null) return null
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const [hour, minute, second] = date === null ? [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)] : [0, 0, 0]
  const micro = date === null && m[7] !== undefined ? Number(m[7].padEnd(6, '0')) : 0
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || year < 1) return null
  if (hour > 23 || minute > 59 || second > 59) return null
  let offsetMin = 0
  const tz = date === null ? m[8] : undefined
  if (tz !== undefined && tz !== 'Z') {
    const sign = tz.startsWith('-') ? -1 : 1
    const digits = tz.slice(1).replace(':', '')
    const oh = Number(digits.slice(0, 2))
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0
    if (oh > 23 || om > 59) return null
    offsetMin = sign * (oh * 60 + om)
  }
  // A value without a zone is read as UTC (TIME_ZONE = 'UTC').
  // setUTCFullYear, because Date.UTC maps years 0-99 to 1900-1999.
  const d = new Date(Date.UTC(2000, month - 1, day, hour, minute, second))
  d.setUTCFullYear(year)
  return (d.getTime() - offsetMin * 60000) * 1000 + micro
}
