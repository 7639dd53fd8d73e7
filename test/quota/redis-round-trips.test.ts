// Redis commands per cached read, counted with MONITOR on a redis-server this test starts (never the
// shared one, where other tests' commands would be counted too). Request rates and daily units are
// leased from Redis in blocks (quota/lease.ts), so an L1 hit on a warm lease makes no Redis call at
// all: with large limits and with the default ones (600/minute leases 30 requests at a time). A
// consumer whose limits are below twice LIMIT_LEASE_DIVISOR leases one unit at a time and stays exact,
// at two calls per request (the rate and the units).
// Before leases, every hit made those two calls whatever the limits.
import { test } from 'tap'
import { Redis } from 'ioredis'
import { REDIS_SERVER_SKIP, startRedisServer } from '../fixtures/redis-server.js'
import { buildTestApp, FIXTURE_IDS, TEST_REDIS_URL } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import { waitFor } from '../fixtures/wait.js'

const skip = REDIS_SERVER_SKIP
const HITS = 50

test('Redis commands per L1 hit', { skip }, async (t) => {
  const redis = await startRedisServer(t)
  const large = makeConsumer('large', { rate: '1000000/minute', daily_objects: 100000000 })
  const defaults = makeConsumer('defaults')
  const small = makeConsumer('small', { rate: '30/minute', daily_objects: 30 })
  const { app } = await buildTestApp(t, { config: { REDIS_URL: redis.url, CONSUMERS_FILE: consumersFile(t, [large, defaults, small]) } })
  const url = `/v1/objects/${FIXTURE_IDS.A}`
  const read = async (key: string): Promise<string> => {
    const res = await app.inject({ url, headers: bearer(key) })
    t.equal(res.statusCode, 200)
    return String(res.headers['x-cache'])
  }

  const monitor = new Redis(redis.url)
  t.teardown(() => monitor.disconnect())
  const seen: string[] = []
  const feed = await monitor.monitor()
  // Commands a script runs inside Redis show up too, with the source "lua": they are not round trips.
  feed.on('monitor', (_time: string, args: string[], source: string) => {
    if (source !== 'lua') seen.push(args.map((a) => a.slice(0, 40)).join(' ').toLowerCase())
  })
  t.teardown(() => feed.disconnect())
  // MONITOR shows every command the server runs, in order; an ECHO from this test marks where the
  // counting starts and where it ends.
  let marks = 0
  const mark = async (): Promise<string> => {
    const id = `mark-${++marks}`
    await monitor.echo(id)
    await waitFor(`MONITOR to show ${id}`, () => seen.includes(`echo ${id}`))
    return `echo ${id}`
  }
  async function commandsDuring (work: () => Promise<void>): Promise<string[]> {
    const start = await mark()
    await work()
    const end = await mark()
    return seen.slice(seen.indexOf(start) + 1, seen.indexOf(end))
  }

  t.equal(await read(large.key), 'MISS', 'the first read fills the cache')
  // The fill lock is released after the answer (cache/lock.ts): wait for it, so it is not counted below.
  await waitFor('the fill lock release', () => seen.some((c) => c.startsWith('eval') && c.includes('{c}:l:')))
  t.equal(await read(large.key), 'HIT')

  const warm = await commandsDuring(async () => {
    for (let i = 0; i < HITS; i++) t.equal(await read(large.key), 'HIT')
  })
  t.comment(`large limits: ${warm.length} Redis commands for ${HITS} L1 hits${warm.length === 0 ? '' : `: ${warm.slice(0, 5).join(' | ')}`}`)
  t.equal(warm.length, 0, 'no Redis command on an L1 hit whose leases are warm')

  // No limits in its entry: the defaults, 600/minute and 100,000 units a day.
  await read(defaults.key)
  const typical = await commandsDuring(async () => {
    for (let i = 0; i < 20; i++) t.equal(await read(defaults.key), 'HIT')
  })
  t.comment(`default limits: ${typical.length} Redis commands for 20 L1 hits${typical.length === 0 ? '' : `: ${typical.slice(0, 5).join(' | ')}`}`)
  t.equal(typical.length, 0, 'no Redis command on an L1 hit with the default limits once the leases are warm')

  await read(small.key)
  const exact = await commandsDuring(async () => {
    for (let i = 0; i < 5; i++) t.equal(await read(small.key), 'HIT')
  })
  t.comment(`small limits: ${exact.length} Redis commands for 5 L1 hits: ${exact.slice(0, 2).join(' | ')}`)
  t.equal(exact.length, 10, 'small limits stay exact: one rate and one units call per hit')
})

test('unspent leases go back to Redis when the app closes', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const large = makeConsumer('large', { rate: '1000000/minute', daily_objects: 100000000 })
  const { app, config } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [large]) } })
  for (let i = 0; i < 3; i++) await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: bearer(large.key) })
  const redis = new Redis(config.REDIS_URL)
  t.teardown(() => redis.quit())
  const rateKey = `${config.REDIS_KEY_PREFIX}rate:large`
  const unitsKey = `${config.REDIS_KEY_PREFIX}quota:units:large`
  t.equal(await redis.get(rateKey), '1000', 'a lease of 1,000 requests (1,000,000 / LIMIT_LEASE_DIVISOR)')
  t.equal(await redis.hget(unitsKey, 'n'), '1000', 'and of 1,000 units (capped at LIMIT_LEASE_MAX)')
  await app.close()
  t.equal(await redis.get(rateKey), '3', 'closed: only the 3 requests made stay counted')
  t.equal(await redis.hget(unitsKey, 'n'), '3')
})
