import { test } from 'tap'
import { createHash } from 'node:crypto'
import { computeEtag } from '../../../src/cache/entry.js'
import { bigIntSpans } from '../../../src/lib/json-scan.js'
import { createRecordRenderer, RECORD_RENDERING, renderedEtag } from '../../../src/routes/v1/render.js'

// A record's v1 ETag is derived from its stored ETag and RECORD_RENDERING (render.ts), not hashed from
// the rendered bytes; that is only right while one version always renders the same bytes. This pins
// the rendering of a sample with every case the rendering treats (ids of either sign, the 2^53 bound,
// digits inside strings, escaped quotes, multi-byte text, fractions and exponents). If this test fails
// because the rendering changed on purpose, bump RECORD_RENDERING and record the new hash here.
const SAMPLE = '{"object":{"id":1161600211221604900,"ra":244.00092,"note":"seen 1161600211221604900 \\"twice\\", µ"},' +
  '"lc":[{"id":1161600211221604900,"mjd":60000.5,"mag":-9007199254740993,"flux":1.5e300,"n":9007199254740992,"m":9007199254740991}],' +
  '"tns":[-1161600211221604900,[]]}'
const PINNED = { version: 'v1r1', sha256: '66b8cb8fb58f8835cf7b85198da160c40beaad2e8a75c1c35d7e2c94d1e786e8' }

test('the whole-record rendering is pinned to RECORD_RENDERING', async (t) => {
  const bytes = Buffer.from(SAMPLE, 'utf8')
  const render = createRecordRenderer()
  const rendered = render({ bytes, etag: computeEtag(bytes) })
  const hash = createHash('sha256').update(rendered.bytes).digest('hex')
  t.equal(RECORD_RENDERING, PINNED.version, 'the version this hash was recorded for')
  t.equal(hash, PINNED.sha256, `the rendering changed (sha256 ${hash}): bump RECORD_RENDERING and record the new hash`)
})

test('a record\'s v1 ETag: its stored ETag and the rendering version; with or without stored offsets the same bytes', async (t) => {
  const bytes = Buffer.from(SAMPLE, 'utf8')
  const stored = computeEtag(bytes)
  const render = createRecordRenderer()
  const scanned = render({ bytes, etag: stored })
  const fromOffsets = render({ bytes, etag: stored, bigInts: bigIntSpans(bytes) })
  t.equal(scanned.etag, renderedEtag(stored))
  t.equal(scanned.etag, `${stored.slice(0, -1)}.${RECORD_RENDERING}"`)
  t.match(scanned.etag, /^"[A-Za-z0-9_-]{27}\.v1r\d+"$/, 'a strong ETag no stored-bytes ETag can equal')
  t.ok(fromOffsets.bytes.equals(scanned.bytes))
  t.equal(fromOffsets.etag, scanned.etag)
  const other = Buffer.from(SAMPLE.replace('244.00092', '244.00093'), 'utf8')
  t.not(render({ bytes: other, etag: computeEtag(other) }).etag, scanned.etag, 'other bytes, another ETag')
})

test('mjd_min filters the photometry and leaves every other byte as the whole-record rendering has it', async (t) => {
  // Literals a parse and re-stringify would change: an exponent, a negative zero, a trailing zero.
  const text = '{"object":{"id":1161600211221604900,"big":1e+16,"negz":-0.0,"exact":12.50,"ra":244.00092},' +
    '"lc":[{"id":1161600211221604900,"mjd":60000.5,"mag":18.10},{"id":1161600211221604901,"mjd":60002.5,"mag":-0.0}],' +
    '"lcnondets":[{"mjd":60001.0,"mag5sig":19.50}],"fp":[{"mjd_obs":60001.0,"uJy":1e+16}]}'
  const bytes = Buffer.from(text, 'utf8')
  const render = createRecordRenderer()
  const whole = render({ bytes, etag: computeEtag(bytes) }).bytes.toString('utf8')
  t.equal(render({ bytes, etag: computeEtag(bytes) }, 0).bytes.toString('utf8'), whole, 'mjd_min=0 keeps every row: the same bytes')
  const filtered = JSON.parse(render({ bytes, etag: computeEtag(bytes) }, 60001).bytes.toString('utf8'))
  t.same(filtered.lc.map((r: { id: string }) => r.id), ['1161600211221604901'], 'lc: mjd > 60001')
  t.same(filtered.lcnondets, [], 'lcnondets: mjd > 60001')
  t.equal(filtered.fp.length, 1, 'fp: mjd_obs >= 60001')
  t.match(render({ bytes, etag: computeEtag(bytes) }, 60001).bytes.toString('utf8'), '"big":1e+16,"negz":-0.0,"exact":12.50', 'the literals as the upstream wrote them')
})
