// The MONITOR fixture (test/fixtures/redis-monitor.ts) against a real Redis: arguments come back as sent,
// whatever Redis escaped on the way (quotes, backslashes, line breaks, bytes outside ASCII).
import { test } from 'tap'
import { Redis } from 'ioredis'
import { TEST_REDIS_URL } from '../helper.js'
import { redisCommandsDuring } from '../fixtures/redis-monitor.js'

test('redisCommandsDuring sees a command with its arguments as sent', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const client = new Redis(TEST_REDIS_URL)
  t.teardown(() => client.disconnect())
  const key = `agw-test:monitor:${process.pid}:${Date.now()}`
  const value = 'a "quoted" \\ back\nslash\r\t\x07\b\x01\x7f é'
  const commands = await redisCommandsDuring(t, TEST_REDIS_URL, async () => {
    await client.set(key, value, 'PX', 10_000)
  })
  const set = commands.find(([name, k]) => name === 'set' && k === key)
  t.ok(set !== undefined, 'the SET was seen')
  // é leaves as two UTF-8 bytes, which MONITOR shows as \xc3\xa9: one character each here.
  t.same(set, ['set', key, value.replace('é', '\xc3\xa9'), 'PX', '10000'])
})
