import { test } from 'tap'
import fc from 'fast-check'
import { isInstant, parseInstant } from '../../src/lib/datetime.js'

test('dates and datetimes are read as UTC instants', async (t) => {
  t.equal(parseInstant('2026-08-01'), Date.UTC(2026, 7, 1))
  t.equal(parseInstant('1858-11-17'), Date.UTC(1858, 10, 17))
  t.equal(parseInstant('2026-08-01T12:30:00+02:00'), Date.UTC(2026, 7, 1, 10, 30))
  t.equal(parseInstant('2026-08-01 12:30'), Date.UTC(2026, 7, 1, 12, 30), 'no zone is UTC, never local time')
  t.equal(parseInstant('2026-08-01T12:30:05.123456Z'), Date.UTC(2026, 7, 1, 12, 30, 5, 123))
  t.equal(parseInstant('2026-08-01T00:00-0130'), Date.UTC(2026, 7, 1, 1, 30))
  t.equal(parseInstant('2026-08-01T00:00+05'), Date.UTC(2026, 6, 31, 19))
  t.equal(parseInstant('0001-01-01'), new Date('0001-01-01T00:00:00Z').getTime(), 'year 1 is not read as 1901')
  t.equal(parseInstant('2024-02-29'), Date.UTC(2024, 1, 29), 'leap day')
  t.equal(parseInstant('2000-02-29'), Date.UTC(2000, 1, 29), 'leap day of a 400-year')
})

test('impossible dates are refused, never rolled over', async (t) => {
  for (const text of [
    '2025-02-30', '2025-02-29', '1900-02-29', '2025-13-45', '2025-00-10', '2025-04-31', '0000-00-00', '0000-01-01',
    '2025-01-01T25:00', '2025-01-01T24:00', '2025-01-01T12:61', '2025-01-01T12:00:60', '2025-01-01T12:00+24:00',
    '2025-01-01T12:00+01:60', '2025-1-1', '20250101', '2025-01-01T', '2025-01-01T12', '2025-01-01T12:00:00.1234567',
    ' 2025-01-01', '2025-01-01\n', 'yesterday', ''
  ]) {
    t.equal(parseInstant(text), undefined, text)
  }
})

test('property: every real calendar day is accepted and reads back as itself', async (t) => {
  fc.assert(fc.property(fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }), (d) => {
    const iso = d.toISOString()
    const day = iso.slice(0, 10)
    const ms = parseInstant(day)
    return ms === new Date(`${day}T00:00:00Z`).getTime() &&
      isInstant(`${day}T${iso.slice(11, 19)}Z`) && parseInstant(`${day}T${iso.slice(11, 23)}Z`) === d.getTime()
  }), { seed: 20261130, numRuns: 500 })
  t.pass('500 dates')
})

test('since filters compare at the upstream timestamps\' microsecond precision', async (t) => {
  const { filterSince } = await import('../../src/routes/v1/tables.js')
  const { parseInstantMicros } = await import('../../src/lib/datetime.js')
  t.equal(parseInstantMicros('2024-04-14T11:05:06.000400Z'), Date.UTC(2024, 3, 14, 11, 5, 6) * 1000 + 400)
  t.equal(parseInstantMicros('1969-12-31T23:59:59.999999Z'), -1)
  const row = (timestamp: string) => ({ timestamp })
  t.equal(filterSince([row('2024-04-14T11:05:06.000400Z')], 'timestamp', '2024-04-14T11:05:06.000500', true).length, 0, 'inclusive: a row 100 µs before since is out')
  t.equal(filterSince([row('2024-04-14T11:05:06.000500Z')], 'timestamp', '2024-04-14T11:05:06.000500', true).length, 1, 'inclusive: equal is in')
  t.equal(filterSince([row('2024-04-14T11:05:06.000900Z')], 'timestamp', '2024-04-14T11:05:06.000100', false).length, 1, 'strict: a row 800 µs after since is in')
  t.equal(filterSince([row('2024-04-14T11:05:06.0001')], 'timestamp', '2024-04-14T11:05:06.000100Z', false).length, 0, 'strict: a naive (UTC) row equal to since is out')
  t.equal(filterSince([row('2024-05-01')], 'timestamp', '2024-04-30T23:59:59.999999', false).length, 1, 'a date is its midnight UTC')
})
