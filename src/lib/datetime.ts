// Calendar-strict ISO 8601 dates and datetimes, as consumers send them in `since`. JavaScript's Date
// rolls impossible values over (2025-02-30 becomes 2 March) and reads a datetime without a zone as
// local time; this parser does neither. Accepted:
//   YYYY-MM-DD                                   (00:00:00 UTC that day)
//   YYYY-MM-DD[T| ]hh:mm[:ss[.f{1,6}]][zone]     zone: Z, ±hh, ±hhmm or ±hh:mm; none means UTC
// Years 0001–9999; hours 00–23 (24:00 is refused: write 00:00 of the next day); no leap seconds;
// offsets below ±24:00.

const PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/

export const DATETIME_RULE = 'a calendar date YYYY-MM-DD or a datetime YYYY-MM-DDThh:mm[:ss[.ffffff]] with an optional ' +
  'zone Z or ±hh:mm (UTC when none); hours 00–23'

function isLeap (year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
}

const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

/** Milliseconds since the epoch, or undefined when `text` is not a real date or datetime. */
export function parseInstant (text: string): number | undefined {
  return parseInstantMicros(text, false)
}

/**
 * Microseconds since the epoch (the precision the upstream's timestamps carry), or undefined when
 * `text` is not a real date or datetime.
 */
export function parseInstantMicros (text: string, isMicros = true): number | undefined {
  const m = PATTERN.exec(text)
  if (m === null) return undefined
  const [, y, mo, d, h = '00', mi = '00', s = '00', frac = '', zone = 'Z'] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = Number(s)
  if (year < 1 || month < 1 || month > 12 || day < 1) return undefined
  const days = month === 2 && isLeap(year) ? 29 : MONTH_DAYS[month - 1] as number
  if (day > days || hour > 23 || minute > 59 || second > 59) return undefined
  let offsetMinutes = 0
  if (zone !== 'Z') {
    const digits = zone.slice(1).replace(':', '')
    const oh = Number(digits.slice(0, 2))
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0
    if (oh > 23 || om > 59) return undefined
    offsetMinutes = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, Math.floor(Number(frac.padEnd(3, '0').slice(0, 3)))))
  date.setUTCFullYear(year)
  const ms = date.getTime() - offsetMinutes * 60_000
  return isMicros ? ms * 1000 + Number(frac.padEnd(6, '0').slice(3)) : ms
}

/** Whether `text` is a date or datetime that parseInstant accepts. */
export function isInstant (text: string): boolean {
  return parseInstant(text) !== undefined
}
