import { test } from 'tap'
import fc from 'fast-check'
import { createHash } from 'node:crypto'
import { generateKey, hashKey, isKeyShaped, verifyKey, KEY_PATTERN } from '../../src/consumers/keys.js'

test('keys are 40 lowercase hex characters and differ every time', async (t) => {
  const keys = new Set(Array.from({ length: 50 }, () => generateKey()))
  t.equal(keys.size, 50)
  for (const key of keys) t.match(key, KEY_PATTERN)
})

test('hashKey is the SHA-256 hex of the key', async (t) => {
  const key = generateKey()
  t.equal(hashKey(key), createHash('sha256').update(key).digest('hex'))
  t.match(hashKey(key), /^[0-9a-f]{64}$/)
})

test('isKeyShaped accepts only 40 lowercase hex', async (t) => {
  t.ok(isKeyShaped('a'.repeat(40)))
  t.notOk(isKeyShaped('A'.repeat(40)))
  t.notOk(isKeyShaped('a'.repeat(39)))
  t.notOk(isKeyShaped('a'.repeat(41)))
  t.notOk(isKeyShaped(`${'a'.repeat(39)}g`))
})

test('verifyKey: true exactly when the key hashes to one of the hashes', async (t) => {
  const key = generateKey()
  const other = generateKey()
  t.ok(verifyKey(key, [hashKey(key)]))
  t.ok(verifyKey(key, [hashKey(other), hashKey(key)]), 'any position of a rotation list')
  t.ok(verifyKey(key, [hashKey(key), hashKey(other)]))
  t.notOk(verifyKey(key, [hashKey(other)]))
  t.notOk(verifyKey(key, []), 'no hashes: no match')
  t.notOk(verifyKey(key, [key]), 'the key itself is not its hash')
  t.notOk(verifyKey(key, ['zz', hashKey(key).slice(0, 62)]), 'malformed hashes never match and never throw')
  t.ok(verifyKey(key, ['zz', hashKey(key)]), 'a malformed hash does not hide a later match')
})

test('verifyKey agrees with hash equality for arbitrary keys (property)', async (t) => {
  fc.assert(fc.property(fc.string(), fc.string(), (a, b) => {
    return verifyKey(a, [hashKey(b)]) === (a === b) && verifyKey(a, [hashKey(a)])
  }), { numRuns: 300 })
  t.pass('property held')
})
