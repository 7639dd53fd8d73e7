// An NDJSON stream looks ahead on cache presence before reading each chunk (routes/v1/objects.ts,
// packMisses). With L1 smaller than the stream, the look-ahead must not fetch every record from Redis
// in full and then again when the chunk is read: it reads headers only (GETRANGE). Redis MONITOR shows
// which commands touched this test's keys (its own key prefix in the shared Redis). The stream is a bulk
// read, so the cold stream leaves its records in Redis only and the warm one reads every one from there.
import { test } from 'tap'
import { buildTestApp, demoAuth, TEST_REDIS_URL } from '../helper.js'
import { redisCommandsDuring } from '../fixtures/redis-monitor.js'

const IDS = 400

test('a warm NDJSON stream reads each record from Redis in full once', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const { app, sandbox } = await buildTestApp(t, {
    // L1 holds a few dozen records; calls of 50 ids make the stream 8 chunks with look-ahead.
    config: { CACHE_MAX_BYTES: 300_000, UPSTREAM_MAX_IDS_PER_CALL: 50, PREFETCH_ENABLED: false },
    sandbox: { objects: IDS }
  })
  const ids = sandbox.ids().slice(0, IDS).map(String)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/v1/objects/query`
  const stream = async (): Promise<string[]> => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...demoAuth(app), 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ ids })
    })
    t.equal(res.status, 200)
    return (await res.text()).trim().split('\n')
  }
  t.equal((await stream()).length, IDS, 'cold: one line per id')
  // Answers do not wait for their records' L2 writes; on a busy machine some are still going out.
  await app.cache.settleWrites()
  const calls = sandbox.calls.get('objects')

  const prefix = `${app.config.REDIS_KEY_PREFIX}{c}:k:`
  let lines: string[] = []
  const commands = await redisCommandsDuring(t, TEST_REDIS_URL, async () => { lines = await stream() })
  const full = new Map<string, number>()
  let peeks = 0
  for (const [name, ...keys] of commands) {
    if (name === 'getrange' && String(keys[0]).startsWith(prefix)) peeks++
    if (name !== 'mget' && name !== 'get') continue
    for (const key of keys) if (key.startsWith(prefix)) full.set(key, (full.get(key) ?? 0) + 1)
  }
  t.equal(lines.length, IDS, 'warm: one line per id')
  t.ok(lines.every((l) => l.startsWith('{"id":"') && l.includes('"object":')), 'every line carries its record')
  t.equal(sandbox.calls.get('objects'), calls, 'the warm stream made no upstream call')
  const counts = [...full.values()]
  t.comment(`records read in full: ${full.size} keys, ${counts.reduce((a, b) => a + b, 0)} reads; header peeks: ${peeks}`)
  t.equal(full.size, IDS, 'every record came from Redis: the cold stream, a bulk read, left L1 alone')
  t.equal(Math.max(...counts), 1, 'none was read in full twice')
})
