// Consumer keys: 40 lowercase hex characters (the official Python client accepts exactly that shape as a
// token), generated from 160 random bits, stored only as their SHA-256 and compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export const KEY_PATTERN = /^[0-9a-f]{40}$/
export const HASH_PATTERN = /^[0-9a-f]{64}$/
const KEY_BYTES = 20
const HASH_BYTES = 32

export function generateKey (): string {
  return randomBytes(KEY_BYTES).toString('hex')
}

export function hashKey (key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/** The raw SHA-256 digest of a key (hashKey is its hex form). */
export function keyDigest (key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest()
}

export function isKeyShaped (key: string): boolean {
  return KEY_PATTERN.test(key)
}

/**
 * True when `key` hashes to one of `hashes`. Every hash is compared with timingSafeEqual and the loop
 * never exits early, so the time taken does not depend on which hash (if any) matched or where the
 * first differing byte is.
 */
export function verifyKey (key: string, hashes: readonly string[], digest: Buffer = keyDigest(key)): boolean {
  let isMatch = false
  for (const hash of hashes) {
    const candidate = Buffer.from(hash, 'hex')
    // A malformed stored hash is compared against the digest itself, so the work stays the same.
    const isWellFormed = candidate.length === HASH_BYTES && HASH_PATTERN.test(hash)
    const isEqual = timingSafeEqual(digest, isWellFormed ? candidate : digest)
    isMatch = (isEqual && isWellFormed) || isMatch
  }
  return isMatch
}
