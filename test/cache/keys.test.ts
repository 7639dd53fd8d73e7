import { test } from 'tap'
import fc from 'fast-check'
import { MAX_QUERY_KEY_LENGTH, buildCacheKey, normaliseQuery, objectKey, type Query, type QueryScalar } from '../../src/cache/keys.js'

const name = fc.constantFrom('ids', 'since', 'mode', 'ra', 'dec', 'radius', 'a&b', 'x=y', 'ü')
const scalar: fc.Arbitrary<QueryScalar> = fc.oneof(
  fc.constantFrom('1', 'a', 'A', 'a,b', '&', '=', '#', ':', ''),
  fc.string({ maxLength: 12 }),
  // Any UTF-16 code units, lone surrogates included (a JSON body can carry them).
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 6 }),
  fc.constantFrom('\ud83d', '\ude00', '\ud83d\ude00', '\ufffd', '%uD83D', '%25uD83D'),
  fc.integer({ min: -5, max: 5 }),
  fc.boolean()
)
const value = fc.oneof(scalar, fc.array(scalar, { minLength: 1, maxLength: 4 }), fc.constant(undefined))
// Long queries (hundreds of ids) exercise the hashed form.
const longIds = fc.array(fc.bigInt({ min: 10n ** 18n, max: 10n ** 19n - 1n }).map(String), { minLength: 15, maxLength: 40 })
const query: fc.Arbitrary<Query> = fc.oneof(
  fc.dictionary(name, value, { maxKeys: 5 }),
  longIds.map((ids) => ({ ids, mjd_min: '60000' }))
)

/** What a query means, independently of the key format: its defined values as strings, by name. */
function meaning (q: Query, lower: readonly string[] = []): string {
  const defined = Object.entries(q).filter(([, v]) => v !== undefined)
  defined.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify(defined.map(([n, v]) => {
    const values = (Array.isArray(v) ? v : [v]).map(String)
    return [n, lower.includes(n) ? values.map((s) => s.toLowerCase()) : values]
  }))
}

function shuffled (q: Query, seed: number): Query {
  const entries = Object.entries(q)
  for (let i = entries.length - 1; i > 0; i--) {
    const j = (seed + i * 7) % (i + 1)
    const a = entries[i]
    const b = entries[j]
    if (a !== undefined && b !== undefined) { entries[i] = b; entries[j] = a }
  }
  return Object.fromEntries(entries)
}

test('equal queries in any parameter order give equal keys', async (t) => {
  fc.assert(fc.property(query, fc.nat(), (q, seed) => buildCacheKey('lists', q) === buildCacheKey('lists', shuffled(q, seed))))
  t.equal(buildCacheKey('cone', { ra: 1, dec: 2 }), buildCacheKey('cone', { dec: '2', ra: '1' }))
})

test('keys are equal exactly when the queries mean the same', async (t) => {
  fc.assert(fc.property(query, query, (a, b) =>
    (buildCacheKey('lists', a) === buildCacheKey('lists', b)) === (meaning(a) === meaning(b))))
  t.not(buildCacheKey('lists', { ids: 'a,b' }), buildCacheKey('lists', { ids: ['a', 'b'] }))
  t.not(buildCacheKey('lists', { ids: ['b', 'a'] }), buildCacheKey('lists', { ids: ['a', 'b'] }), 'id order is kept')
})

test('a lone surrogate gets a key of its own, never an error', async (t) => {
  const key = (externalObjects: string) => buildCacheKey('crossmatches', { externalObjects })
  const texts = ['\ud83d', '\ude00', '\ude00\ud83d', '\ud83d\ude00', '\ufffd', '%uD83D', 'a\ud83db']
  t.equal(new Set(texts.map(key)).size, texts.length, 'all different')
  t.equal(key('\ud83d'), 'v1:crossmatches:externalObjects=%uD83D')
  t.equal(buildCacheKey('x', { '\udc00': 1 }), 'v1:x:%uDC00=1', 'names too')
})

test('case-insensitive parameters are lowercased, the others are not', async (t) => {
  const opts = { caseInsensitive: ['mode'] }
  // 'ẖ' (U+1E96) upper-cases to 'H' and a combining macron, which lower-cases to 'ẖ', not back to 'ẖ':
  // case-insensitive means "equal once lower-cased", which is not "equal to its upper case" for every text.
  fc.assert(fc.property(query, (q) => {
    const names = Object.keys(q)
    const upper = Object.fromEntries(Object.entries(q).map(([n, v]) => [n, typeof v === 'string' ? v.toUpperCase() : v]))
    const same = (buildCacheKey('cone', upper, { caseInsensitive: names }) === buildCacheKey('cone', q, { caseInsensitive: names })) ===
      (meaning(upper, names) === meaning(q, names))
    const agrees = (buildCacheKey('cone', upper) === buildCacheKey('cone', q)) === (meaning(upper) === meaning(q))
    return same && agrees
  }), { examples: [[{ ids: '\u1e96' }], [{ mode: 'Cone' }]] })
  t.equal(buildCacheKey('cone', { mode: 'ALL' }, opts), buildCacheKey('cone', { mode: 'all' }, opts))
  t.not(buildCacheKey('cone', { name: 'ALL' }, opts), buildCacheKey('cone', { name: 'all' }, opts))
})

test('routes and versions separate key spaces', async (t) => {
  fc.assert(fc.property(query, (q) => buildCacheKey('vra-todo', q) !== buildCacheKey('vra-ranks', q) &&
    buildCacheKey('lists', q) !== buildCacheKey('lists', q, { version: 'compat' })))
  t.match(buildCacheKey('lists', { since: '2026-01-01' }), /^v1:lists:since=2026-01-01$/)
})

test('long queries are hashed with SHA-256; every key stays short', async (t) => {
  fc.assert(fc.property(query, (q) => {
    const key = buildCacheKey('objects', q)
    const isLong = normaliseQuery(q).length > MAX_QUERY_KEY_LENGTH
    return key.length <= 'v1:objects:'.length + MAX_QUERY_KEY_LENGTH && isLong === /:#[A-Za-z0-9_-]{43}$/.test(key)
  }))
  t.equal(objectKey('1000240741164042800'), 'v1:objects:id=1000240741164042800')
})

test('objectKey is the key buildCacheKey gives for one id', async (t) => {
  for (const id of ['1161600211221604900', '1000000000000000000']) t.equal(objectKey(id), buildCacheKey('objects', { id }))
})
