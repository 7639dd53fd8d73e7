// An NDJSON stream looks ahead on cache presence before reading each chunk (routes/v1/objects.ts,
// packMisses). With L1 smaller than the stream, the look-ahead must not fetch every record from Redis
// in full and then again when the chunk is read: it reads headers only (GETRANGE). Redis MONITOR shows
// which commands touched this test's keys (its own key prefix in the shared Redis).
import { test } from 'tap'
import { Redis } from 'ioredis'
import { buildTestApp, demoAuth, TEST_REDIS_URL } from '../helper.js'

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
  const calls = sandbox.calls.get('objects')

  const prefix = `${app.config.REDIS_KEY_PREFIX}{c}:k:`
  const full = new Map<string, number>()
  let peeks = 0
  const base = new Redis(TEST_REDIS_URL)
  const monitor = await base.monitor()
  t.teardown(() => {
    monitor.disconnect()
    base.disconnect()
  })
  const marker = `end-of-stream-${process.pid}-${Date.now()}`
  let sawMarker: () => void = () => {}
  const markerSeen = new Promise<void>((resolve) => { sawMarker = resolve })
  monitor.on('monitor', (_time: string, args: string[]) => {
    const [command, ...keys] = args
    const name = String(command).toLowerCase()
    if (name === 'echo' && keys[0] === marker) sawMarker()
    if (name === 'getrange' && String(keys[0]).startsWith(prefix)) peeks++
    if (name !== 'mget' && name !== 'get') return
    for (const key of keys) if (key.startsWith(prefix)) full.set(key, (full.get(key) ?? 0) + 1)
  })
  const lines = await stream()
  // MONITOR reports commands in the order Redis ran them: once it shows a command sent after the
  // stream ended, it has shown every command of the stream.
  const other = new Redis(TEST_REDIS_URL)
  t.teardown(() => other.disconnect())
  await other.echo(marker)
  await markerSeen
  t.equal(lines.length, IDS, 'warm: one line per id')
  t.ok(lines.every((l) => l.startsWith('{"id":"') && l.includes('"object":')), 'every line carries its record')
  t.equal(sandbox.calls.get('objects'), calls, 'the warm stream made no upstream call')
  const counts = [...full.values()]
  t.comment(`records read in full: ${full.size} keys, ${counts.reduce((a, b) => a + b, 0)} reads; header peeks: ${peeks}`)
  t.ok(full.size >= IDS - 50, 'the records L1 could not hold came from Redis')
  t.equal(Math.max(...counts), 1, 'none was read in full twice')
})
