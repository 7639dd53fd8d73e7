// DRF's IntegerField and FloatField call Python's int() and float(), which read any Unicode decimal digit
// (category Nd: Arabic-Indic ٧٣, fullwidth ７３, Devanagari ७३, …) and skip surrounding whitespace (ASCII's
// six and the non-ASCII spaces; not \x1c-\x1f, which str.strip() removes). The gateway reads them alike and
// sends the upstream the number in ASCII digits, the value the upstream would have read.
import { test } from 'tap'
import { validate, type FieldSpec } from '../../../src/drf/fields.js'
import { FIXTURE_IDS } from '../../helper.js'
import { startDialects } from './dialect-helper.js'

const { A } = FIXTURE_IDS

// Each input with what Python 3.11 answers: int(re_decimal.sub('', s)) for IntegerField (re_decimal =
// r'\.0*\s*$'), repr(float(s)) for FloatField; null where it raises ValueError (DRF's 400).
const INT_TABLE: Array<[string, string | null]> = [
  ['\u0667\u0663', '73'], // Arabic-Indic
  ['\u06f7\u06f3', '73'], // Extended Arabic-Indic
  ['\uff17\uff13', '73'], // fullwidth
  ['\u096d\u0969', '73'], // Devanagari
  ['\ud835\udfd5\ud835\udfd1', '73'], // mathematical bold (outside the BMP)
  ['\u1817\u1813', '73'], // Mongolian
  ['\ua9f7\ua9d3', '73'], // Myanmar Tai Laing and Javanese
  ['7\u0663', '73'], // scripts mixed
  [' \u0667\u0663 ', '73'],
  ['\u3000\u0667\u0663\u2003', '73'],
  ['\u0667\u0663\n', '73'],
  ['\x1c\u0667\u0663\x85', null], // \x1c is str.strip() whitespace, not int()'s
  ['-\u0667\u0663', '-73'],
  ['+\u0667\u0663', '73'],
  ['\u0667_\u0663', '73'],
  ['\u0667__\u0663', null],
  ['_\u0667\u0663', null],
  ['\u0667\u0663.0', '73'],
  ['\u0667\u0663.', '73'],
  ['\u0667\u0663.00 ', '73'],
  ['\u0667\u0663.\u0660', null], // re_decimal's 0 is ASCII only
  ['73.0\x1c', '73'], // re_decimal's \s is str.isspace()
  ['73.0\u3000', '73'],
  ['73.0\u200b', null],
  ['\u0667\u0663\u200b', null],
  ['\ufeff73', null],
  ['73\ufeff', null],
  ['\u00b2', null], // superscript two: a digit, not a decimal one
  ['\u00bd', null],
  ['\u216b', null], // Roman numeral twelve
  ['\u3007', null], // ideographic zero (a letter number)
  ['\ud835\udfce', '0'],
  ['\u07c0', '0'], // NKo zero
  ['\u0660\u0660\u0667\u0663', '73'],
  ['\u0661\u0661\u0666\u0661\u0666\u0660\u0660\u0662\u0661\u0661\u0662\u0662\u0661\u0666\u0660\u0664\u0669\u0660\u0660', '1161600211221604900'],
  ['\u0667\u0663e0', null],
  ['\u0667 \u0663', null],
  ['0x49', null],
  ['\u0660x\u0664\u0669', null]
]
const FLOAT_TABLE: Array<[string, number | null]> = [
  ['\u0667.\u0663', 7.3],
  ['\u0667\u0663e\u0661', 730],
  ['\u0661.\u0665', 1.5],
  ['\u0667,\u0663', null],
  [' \u0667\u0663 ', 73],
  ['\u0667_\u0663.\u0665', 73.5],
  ['\u0667\u0663.\u0660', 73],
  ['-\u0660.\u0665', -0.5],
  ['\u0667e-\u0661', 0.7],
  ['-\uff49\uff4e\uff46', null], // fullwidth "inf": letters are not digits
  ['\u0667\u0663\u200b', null],
  ['\u00b2', null],
  ['\u3000\u0661.\u0665\x1f', null],
  ['.\u0665', 0.5],
  ['\u0665.', 5],
  ['\ud835\udfd5.\ud835\udfd1', 7.3],
  ['\u0667\u0663_', null],
  ['1e\u0663', 1000]
]

const INT: FieldSpec = { name: 'n', kind: 'int' }
const FLOAT: FieldSpec = { name: 'x', kind: 'float' }

test('IntegerField and FloatField read what Python\'s int() and float() read (python3 3.11 table)', async (t) => {
  for (const [input, expected] of INT_TABLE) {
    for (const data of [{ kind: 'querydict' as const, map: new Map([['n', [input]]]) }, { kind: 'json' as const, value: { n: input } }]) {
      const r = validate([INT], data)
      // Before: 22 of these 39 inputs were read otherwise (a non-ASCII digit was "A valid integer is required.").
      t.same(r.ok ? String(r.values.n) : null, expected, `int(${JSON.stringify(input)}) in a ${data.kind}`)
    }
  }
  for (const [input, expected] of FLOAT_TABLE) {
    const r = validate([FLOAT], { kind: 'querydict', map: new Map([['x', [input]]]) })
    t.same(r.ok ? r.values.x : null, expected, `float(${JSON.stringify(input)})`)
  }
})

test('compat: Unicode digits reach the upstream as the ASCII number it would have read', async (t) => {
  const d = await startDialects(t)
  const arabic = (digits: string) => [...digits].map((c) => String.fromCharCode(0x660 + Number(c))).join('')
  // objectgroupslist/ by group: the form the fuzz review sent, and the JSON string.
  for (const payload of [{ form: { objectgroupid: arabic('2') } }, { json: `{"objectgroupid": "${arabic('2')}"}` }, { query: { objectgroupid: '\uff12' } }]) {
    const before = d.behind.received.length
    const res = await d.gateway('objectgroupslist', payload)
    t.equal(res.status, 200, `${JSON.stringify(payload)}: ${res.body.slice(0, 80)}`)
    const sent = d.behind.received.slice(before)
    t.ok(sent.length <= 1, 'at most one upstream call (a cached table needs none)')
    if (sent.length === 1) t.equal(sent[0]?.body, 'objectgroupid=2', 'the upstream is asked for group 2')
    const direct = await d.gateway('objectgroupslist', { form: { objectgroupid: '2' } })
    t.equal(res.body, direct.body, 'the same rows as objectgroupid=2')
  }
  // A write: the object and the group in Arabic-Indic digits, sent on in ASCII.
  const before = d.behind.received.length
  const res = await d.gateway('objectgroups', { form: { objectid: arabic(A), objectgroupid: ` ${arabic('2')} ` } })
  t.ok(res.status === 200 || res.status === 201, `objectgroups/: ${res.status} ${res.body.slice(0, 80)}`)
  const writes = d.behind.received.slice(before).filter((r) => r.endpoint === 'objectgroups')
  t.equal(writes.length, 1, 'one write')
  t.equal(writes[0]?.body, `objectid=${A}&objectgroupid=2`)
})
