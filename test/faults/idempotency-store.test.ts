// The idempotency store contract, run on the memory store and on the Redis store: a claim only on an
// empty key, changes only by the marker's owner, leases that lapse, outcomes kept for their TTL.
import { test, type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  createMemoryIdempotencyStore, createRedisIdempotencyStore, type DoneEntry, type IdempotencyStore, type RunningEntry
} from '../../src/service/idempotency-store.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'

// Read here rather than from ../helper.js, which loads the whole app: this suite needs only the stores.
const TEST_REDIS_URL = process.env.REDIS_URL ?? ''

const marker = (owner: string, fingerprint = 'fp-1'): RunningEntry => ({ state: 'running', owner, fingerprint })
const outcome = (status: number): DoneEntry => ({ state: 'done', fingerprint: 'fp-1', status, headers: { 'content-type': 'application/json' }, body: `{"s":${status}}` })
// Long enough that no claim lapses during a step of the test; short ones are said where they are meant.
const LEASE_MS = 10_000
const SHORT_MS = 50

/** A store of each kind for one test; a Redis one writes under a prefix of its own, deleted at the end. */
const stores: Array<[string, (t: Test) => Promise<{ store: IdempotencyStore, key: (k: string) => string }>]> = [
  ['memory', async () => ({ store: createMemoryIdempotencyStore(), key: (k) => k })]
]
if (TEST_REDIS_URL !== '') {
  stores.push(['Redis', async (t) => {
    const prefix = testKeyPrefix('idempotency')
    deleteKeysOnTeardown(t, TEST_REDIS_URL, prefix)
    // In any REDIS_URL form (one server, Sentinel, Cluster), as the app makes it.
    const redis = await connectTestRedis(t, TEST_REDIS_URL)
    return { store: createRedisIdempotencyStore(redis), key: (k) => prefix + k }
  }])
}

for (const [name, make] of stores) {
  test(`${name} store: one claim per key; only its owner completes, renews or releases it`, async (t) => {
    const { store, key } = await make(t)
    const k = key('a')
    const mine = marker('me')
    const theirs = marker('them')
    t.equal(await store.claim(k, mine, LEASE_MS), undefined, 'claimed')
    t.same(await store.claim(k, theirs, LEASE_MS), mine, 'a second claim gets the holder')
    t.equal(await store.complete(k, theirs, outcome(201), LEASE_MS), false, 'another owner cannot complete it')
    t.equal(await store.renew(k, theirs, LEASE_MS), false, 'nor renew it')
    await store.release(k, theirs)
    t.same(await store.get(k), mine, 'nor release it')
    t.equal(await store.renew(k, mine, LEASE_MS), true)
    t.equal(await store.complete(k, mine, outcome(201), LEASE_MS), true)
    t.same(await store.get(k), outcome(201))
    t.same(await store.claim(k, theirs, LEASE_MS), outcome(201), 'a claim on a kept outcome gets the outcome')
    t.equal(await store.complete(k, mine, outcome(404), LEASE_MS), false, 'an outcome is never overwritten')

    const released = key('b')
    t.equal(await store.claim(released, mine, LEASE_MS), undefined)
    await store.release(released, mine)
    t.equal(await store.get(released), undefined, 'a released key is free')
    t.equal(await store.claim(released, theirs, LEASE_MS), undefined)
  })

  test(`${name} store: a marker that is not renewed lapses, and so does an outcome after its TTL`, async (t) => {
    const { store, key } = await make(t)
    const k = key('lease')
    t.equal(await store.claim(k, marker('crashed'), SHORT_MS), undefined)
    await sleep(SHORT_MS * 3)
    t.equal(await store.claim(k, marker('next'), LEASE_MS), undefined, 'the key is free again')
    t.equal(await store.complete(k, marker('crashed'), outcome(201), LEASE_MS), false, 'the lapsed owner cannot complete it')
    t.equal(await store.complete(k, marker('next'), outcome(201), SHORT_MS), true)
    await sleep(SHORT_MS * 3)
    t.equal(await store.get(k), undefined, 'the outcome went with its TTL')
  })

  test(`${name} store: an outcome kept late fills the key its lapsed marker left empty, but not a key claimed since`, async (t) => {
    const { store, key } = await make(t)
    const k = key('late')
    t.equal(await store.claim(k, marker('first'), SHORT_MS), undefined)
    await sleep(SHORT_MS * 3)
    t.equal(await store.complete(k, marker('first'), outcome(201), LEASE_MS), true, 'nobody claimed it since: the outcome is kept')
    t.same(await store.get(k), outcome(201))
    t.equal(await store.renew(key('empty'), marker('first'), LEASE_MS), false, 'a renewal does not fill an empty key')
    t.equal(await store.get(key('empty')), undefined)
    const taken = key('taken')
    t.equal(await store.claim(taken, marker('first'), SHORT_MS), undefined)
    await sleep(SHORT_MS * 3)
    t.equal(await store.claim(taken, marker('retry'), LEASE_MS), undefined, 'a retry claimed the key after the lapse')
    t.equal(await store.complete(taken, marker('first'), outcome(201), LEASE_MS), false, 'the late outcome does not replace it')
    t.same(await store.get(taken), marker('retry'))
  })
}

test('memory store: bounded, the oldest entry goes first', async (t) => {
  const store = createMemoryIdempotencyStore({ maxEntries: 2 })
  for (const k of ['1', '2', '3']) await store.claim(k, marker(k), LEASE_MS)
  t.equal(await store.get('1'), undefined)
  t.same(await store.get('3'), marker('3'))
})
