import { test } from 'tap'
import fc from 'fast-check'
import { bigIntSpans, quoteBigInts, quoteSpans, splitArray } from '../../src/lib/json-scan.js'
import { parseLossless, stringifyUpstream, stringifyV1 } from '../../src/lib/json.js'

const bigId = fc.bigInt({ min: 1000000000000000000n, max: 1999999999999999999n })
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.string({ unit: 'grapheme' }), fc.boolean(), fc.constant(null), bigId,
    fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 4 })
  )
})).value

const quote = (text: string): string => quoteBigInts(Buffer.from(text, 'utf8')).toString('utf8')

test('quoteBigInts(upstream bytes) equals the v1 serialisation of the parsed value', async (t) => {
  fc.assert(fc.property(jsonValue, (value) => {
    const upstream = stringifyUpstream(value)
    return quote(upstream) === stringifyV1(parseLossless(upstream))
  }), { numRuns: 1000 })
  t.pass('property holds')
})

test('quoteBigInts leaves digits inside strings alone', async (t) => {
  const text = '{"a":"x:1161600211221604900,","id":1161600211221604900,"f":1.5e300,"n":-1161600211221604900}'
  t.equal(quote(text), '{"a":"x:1161600211221604900,","id":"1161600211221604900","f":1.5e300,"n":"-1161600211221604900"}')
  t.equal(quote('[9007199254740991,9007199254740992,-9007199254740991,-9007199254740992,1161600211221604900.5]'),
    '[9007199254740991,"9007199254740992",-9007199254740991,"-9007199254740992",1161600211221604900.5]', 'the bound 2^53, either sign; a fraction is not an integer')
  t.equal(quote('{"é\\"":"µ 1161600211221604900","id":1161600211221604900}'), '{"é\\"":"µ 1161600211221604900","id":"1161600211221604900"}', 'multi-byte characters and escaped quotes')
  const plain = Buffer.from('{"a":[1,2.5,"x"]}')
  t.equal(quoteBigInts(plain), plain, 'nothing to quote: the same Buffer')
  t.throws(() => quoteBigInts(Buffer.from('{"a":"open')), SyntaxError)
})

test('quoteSpans with the offsets bigIntSpans found renders what a scan renders; bad offsets are refused', async (t) => {
  fc.assert(fc.property(jsonValue, (value) => {
    const bytes = Buffer.from(stringifyUpstream(value), 'utf8')
    const spans = bigIntSpans(bytes)
    return spans.length % 2 === 0 && quoteSpans(bytes, spans).equals(quoteBigInts(bytes))
  }), { numRuns: 500 })
  // Any ascending spans over any bytes, against quotes spliced in piece by piece: spans at the start,
  // at the end, empty and touching one another included (the pieces move inside the one output buffer).
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat({ max: 64 }), { maxLength: 12 }), (raw, cuts) => {
    const body = Buffer.from(raw)
    const marks = cuts.map((c) => Math.min(c, body.length)).sort((a, b) => a - b)
    if (marks.length % 2 === 1) marks.pop()
    const pieces: Buffer[] = []
    let last = 0
    for (let k = 0; k < marks.length; k += 2) {
      pieces.push(body.subarray(last, marks[k]), Buffer.from('"'), body.subarray(marks[k], marks[k + 1]), Buffer.from('"'))
      last = marks[k + 1] as number
    }
    pieces.push(body.subarray(last))
    return quoteSpans(body, marks).equals(Buffer.concat(pieces)) && body.equals(Buffer.from(raw))
  }), { numRuns: 1000 })
  const bytes = Buffer.from('[1161600211221604900,1]')
  t.throws(() => quoteSpans(bytes, [0, 99]), RangeError, 'beyond the body')
  t.throws(() => quoteSpans(bytes, [5, 9, 1, 3]), RangeError, 'out of order')
})

test('splitArray returns each element text untouched', async (t) => {
  fc.assert(fc.property(fc.array(jsonValue, { maxLength: 6 }), (values) => {
    const texts = values.map((v) => stringifyUpstream(v))
    const parts = splitArray('[' + texts.join(',') + ']')
    return parts.length === texts.length && parts.every((p, i) => p === texts[i])
  }), { numRuns: 300 })
  t.same(splitArray(' [ 1 , "a,]" , {"b":[1,2]} ] '), ['1', '"a,]"', '{"b":[1,2]}'])
  t.same(splitArray('[]'), [])
  t.throws(() => splitArray('{"info":"x"}'), SyntaxError)
  t.throws(() => splitArray('[1,2'), SyntaxError)
})

// stringifyUpstream's bare integers: a negative bigint was left as the marker string it is written
// through ("\u0000bigint:-…"), which the upstream would have read as text.
test('stringifyUpstream writes every bigint as a bare integer of its digits, either sign', async (t) => {
  t.equal(stringifyUpstream({ id: 1161600211221604900n, n: -1161600211221604900n }), '{"id":1161600211221604900,"n":-1161600211221604900}')
  fc.assert(fc.property(fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }), (b) => {
    const text = stringifyUpstream({ v: b })
    return text === `{"v":${b}}` && String((parseLossless(text) as { v: unknown }).v) === String(b)
  }), { numRuns: 500 })
  t.pass('property holds')
})
