// A JSON body nested thousands of levels deep once overflowed the stack of the JSON decoders (a 500).
// The upstream's decoder (Python's json) gives up on deep nesting with a RecursionError; compat and the
// sandbox answer it as DRF answers a body it cannot parse: 400 {"detail":"JSON parse error - ..."}.
import { test } from 'tap'
import { startDialects } from './dialect-helper.js'

const ARRAY_ERROR = '{"detail":"JSON parse error - maximum recursion depth exceeded while decoding a JSON array from a unicode string"}'
const OBJECT_ERROR = '{"detail":"JSON parse error - maximum recursion depth exceeded while decoding a JSON object from a unicode string"}'

test('a nesting bomb is a DRF 400 parse error, the same bytes as the upstream dialect, never a 500', async (t) => {
  const d = await startDialects(t)
  d.behind.resetCalls()
  const bombs: Array<[string, string, string]> = [
    ['5,000 arrays, closed', '['.repeat(5000) + ']'.repeat(5000), ARRAY_ERROR],
    ['5,000 arrays, never closed', '['.repeat(5000), ARRAY_ERROR],
    ['5,000 objects, closed', '{"a":'.repeat(5000) + '1' + '}'.repeat(5000), OBJECT_ERROR],
    ['100,000 arrays inside a field', `{"ra": ${'['.repeat(100_000)}1${']'.repeat(100_000)}, "dec": 1}`, ARRAY_ERROR],
    ['arrays, then objects deepest', `${'['.repeat(10)}${'{"x":'.repeat(5000)}`, OBJECT_ERROR],
    ['brackets inside strings do not count', `{"ra": "${'['.repeat(5000)}", "a": ${'['.repeat(5000)}`, ARRAY_ERROR]
  ]
  for (const [what, body, expected] of bombs) {
    for (const endpoint of ['cone', 'objects', 'vrascores']) {
      const ours = await d.gateway(endpoint, { json: body })
      const theirs = await d.upstream(endpoint, { json: body })
      t.equal(ours.status, 400, `${endpoint} ${what}: 400`)
      t.equal(ours.body, theirs.body, `${endpoint} ${what}: the sandbox's bytes`)
      t.equal(theirs.status, 400, `${endpoint} ${what}: the sandbox answers 400 too`)
    }
    t.equal((await d.gateway('cone', { json: body })).body, expected, `${what}: the decoder's own words`)
  }
  t.equal(d.behind.totalCalls(), 0, 'nothing reached the upstream')
})

test('the decoder still reads what comes before the depth limit as Python would', async (t) => {
  const d = await startDialects(t)
  // A syntax error met before the nesting gets too deep is reported as that error.
  const early = await d.gateway('cone', { json: `{"ra" 1, "x": ${'['.repeat(5000)}` })
  t.equal(early.status, 400)
  t.equal(early.body, '{"detail":"JSON parse error - Expecting \':\' delimiter: line 1 column 7 (char 6)"}')
  // Moderate nesting is data: a list where a number belongs is a field error, as upstream.
  const shallow = `{"ra": ${'['.repeat(200)}${']'.repeat(200)}, "dec": 1, "radius": 1, "requestType": "count"}`
  const ours = await d.gateway('cone', { json: shallow })
  const theirs = await d.upstream('cone', { json: shallow })
  t.equal(ours.status, 400)
  t.equal(ours.body, '{"ra":["A valid number is required."]}')
  t.equal(ours.body, theirs.body)
})
