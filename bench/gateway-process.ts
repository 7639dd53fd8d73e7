// The gateway under test, alone in its process: buildApp(config) from the real app, listening on a
// loopback port. Settings come from the harness as env-like strings, validated by loadConfig exactly
// as src/server.ts does (so a bad value fails the same way). On request it records a CPU profile of
// the measured runs only (the V8 profiler that node --cpu-prof uses, minus boot and warm-up).
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { announce, onClose, onCommand, settingsFrom } from './child-ipc.js'

// µs between samples: finer than the 1 ms default, for requests that take a fraction of a millisecond.
const SAMPLING_INTERVAL_US = 250

const env = settingsFrom<Record<string, string>>('BENCH_GATEWAY_ENV')
const app = await buildApp(loadConfig(env))
await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : 0
const session = new Session()

onCommand('profile-start', async () => {
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US })
  await session.post('Profiler.start')
  return {}
})
onCommand('profile-stop', async (message) => {
  const { profile } = await session.post('Profiler.stop')
  const file = String(message.file)
  writeFileSync(file, JSON.stringify(profile))
  session.disconnect()
  return { file }
})
onClose(async () => { await app.close() })
announce({ port, origin: `http://127.0.0.1:${port}` })
