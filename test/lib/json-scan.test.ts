import { test } from 'tap'
import fc from 'fast-check'
import { quoteBigInts, splitArray } from '../../src/lib/json-scan.js'
import { parseLossless, stringifyUpstream, stringifyV1 } from '../../src/lib/json.js'

const bigId = fc.bigInt({ min: 1000000000000000000n, max: 1999999999999999999n })
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), fc.boolean(), fc.constant(null), bigId,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 4 })
  )
})).value

test('quoteBigInts(upstream text) equals the v1 serialisation of the parsed value', async (t) => {
  fc.assert(fc.property(jsonValue, (value) => {
    const upstream = stringifyUpstream(value)
    return quoteBigInts(upstream) === stringifyV1(parseLossless(upstream))
  }), { numRuns: 500 })
  t.pass('property holds')
})

test('quoteBigInts leaves digits inside strings alone', async (t) => {
  const text = '{"a":"x:1161600211221604900,","id":1161600211221604900,"f":1.5e300,"n":-1161600211221604900}'
  t.equal(quoteBigInts(text), '{"a":"x:1161600211221604900,","id":"1161600211221604900","f":1.5e300,"n":"-1161600211221604900"}')
  t.equal(quoteBigInts('[9007199254740991,9007199254740993]'), '[9007199254740991,"9007199254740993"]')
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
