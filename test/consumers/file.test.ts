import { test } from 'tap'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { parseConsumers, readConsumersFile } from '../../src/consumers/file.js'
import { generateKey, hashKey } from '../../src/consumers/keys.js'
import { DEFAULT_DAILY_OBJECTS, DEFAULT_MAX_BATCH, DEFAULT_RATE, DEFAULT_UPSTREAM_SHARE } from '../../src/consumers/schema.js'

const h1 = hashKey(generateKey())
const h2 = hashKey(generateKey())

test('a YAML file with defaults filled in', async (t) => {
  const [record, second] = parseConsumers(`
# comment
consumers:
  - id: mookodi-bot
    name: Mookodi
    key_sha256: ${h1}
    scopes: [read, write:custom-lists]
    lists: [mookodi]
    rate: 10/second
  - id: broker
    key_sha256: [${h2}]
    daily_objects: 5
    max_batch: 3
    upstream_share: 0
    disabled: true
    allow_bypass: true
`, 'x.yaml')
  t.ok(record)
  t.strictSame(record?.hashes, [h1], 'a single hash becomes a list')
  t.strictSame(record?.consumer, {
    id: 'mookodi-bot',
    name: 'Mookodi',
    scopes: ['read', 'write:custom-lists'],
    lists: ['mookodi'],
    rate: { text: '10/second', max: 10, windowMs: 1000 },
    daily_objects: DEFAULT_DAILY_OBJECTS,
    max_batch: DEFAULT_MAX_BATCH,
    upstream_share: DEFAULT_UPSTREAM_SHARE,
    disabled: false,
    allow_bypass: false,
    webhooks: []
  })
  t.equal(second?.consumer.name, 'broker', 'name defaults to the id')
  t.strictSame(second?.consumer.scopes, ['read'], 'scopes default to read')
  t.strictSame(second?.consumer.lists, [])
  t.equal(second?.consumer.rate.text, DEFAULT_RATE)
  t.equal(second?.consumer.daily_objects, 5)
  t.equal(second?.consumer.max_batch, 3)
  t.equal(second?.consumer.upstream_share, 0)
  t.equal(second?.consumer.disabled, true)
  t.equal(second?.consumer.allow_bypass, true)
})

test('a JSON file and an empty list are accepted', async (t) => {
  t.equal(parseConsumers(JSON.stringify({ consumers: [{ id: 'a', key_sha256: h1 }] }), 'x.json').length, 1)
  t.strictSame(parseConsumers('consumers: []', 'x.yaml'), [])
})

test('errors name the entry (index and id) and the field', async (t) => {
  const cases: Array<[string, RegExp]> = [
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n  - id: b\n    key_sha256: ${h2}\n    scopes: [read, root]`,
      /x\.yaml: consumers\[1\] \(id "b"\): field "scopes\[1\]": must be a list of: read, write:vra/],
    ['consumers:\n  - id: a\n    key_sha256: nothex', /consumers\[0\] \(id "a"\): field "key_sha256": must be a SHA-256/],
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n    scope: [read]`, /consumers\[0\] \(id "a"\): field "scope"/],
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n    rate: 10/fortnight`, /consumers\[0\] \(id "a"\): field "rate": must look like 600\/minute/],
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n    max_batch: 0`, /consumers\[0\] \(id "a"\): field "max_batch"/],
    [`consumers:\n  - name: no id\n    key_sha256: ${h1}`, /consumers\[0\]: field "id"/],
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n  - id: a\n    key_sha256: ${h2}`, /consumers\[1\] \(id "a"\): field "id": duplicates consumers\[0\]/],
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n  - id: b\n    key_sha256: [${h2}, ${h1}]`, /consumers\[1\] \(id "b"\): field "key_sha256": a hash also used by consumers\[0\]/],
    // A hash repeated within one consumer: it named that consumer as its own other user ("a hash also used
    // by consumers[0]" for consumers[0]).
    [`consumers:\n  - id: a\n    key_sha256: ${h1}\n  - id: b\n    key_sha256: [${h2}, ${'c'.repeat(64)}, ${h2}]`,
      /^x\.yaml: consumers\[1\] \(id "b"\): field "key_sha256\[2\]": the same hash as key_sha256\[0\], listed twice in this consumer$/],
    ['users: []', /expected a top-level "consumers:" list/],
    ['consumers: [unclosed', /not valid YAML or JSON/]
  ]
  for (const [text, message] of cases) t.throws(() => parseConsumers(text, 'x.yaml'), message)
})

test('readConsumersFile reads from disk and names a missing file', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'c.yaml')
  writeFileSync(path, `consumers:\n  - id: a\n    key_sha256: ${h1}\n`)
  t.equal((await readConsumersFile(path))[0]?.consumer.id, 'a')
  await t.rejects(readConsumersFile(join(dir, 'missing.yaml')), /missing\.yaml: cannot read the consumers file: ENOENT/)
})
