// The sandbox upstream in its own process: as the upstream of the gateway scenarios (on the load
// generator's core, like a remote server) or as the system under test of B3 (on the server core).
import { startSandbox, type SandboxOptions } from '../src/sandbox/index.js'
import { announce, onClose, onCommand, settingsFrom } from './child-ipc.js'

interface SandboxSettings {
  options: SandboxOptions
  /** How many object ids to report (the miss and NDJSON scenarios need distinct ones). */
  idCount: number
}

const THROTTLE_RESET_MS = 200

const settings = settingsFrom<SandboxSettings>('BENCH_SANDBOX')
const sandbox = await startSandbox({ ...settings.options, host: '127.0.0.1', port: 0, logger: false })
const ids = sandbox.ids().slice(0, settings.idCount).map(String)
const writer = sandbox.users.write
// The sandbox's throttle keeps every request time of the window and copies that list on each request
// (src/sandbox/throttle.ts: filter + unshift), so with a rate high enough for a benchmark its cost per
// request grows with the requests already served (B3: 0.5 → 1.1 ms of CPU over 3 runs). Clearing it
// often keeps the upstream's cost flat; the limit is far above any bench rate anyway.
const throttleReset = setInterval(() => { sandbox.resetThrottle() }, THROTTLE_RESET_MS)
throttleReset.unref()
onClose(() => sandbox.close())
announce({
  baseUrl: sandbox.baseUrl,
  origin: sandbox.origin,
  tokens: sandbox.tokens,
  username: writer?.username ?? '',
  password: writer?.password ?? '',
  ids
})
// Upstream calls received so far, so a scenario can report upstream calls per consumer request.
onCommand('calls', async () => ({ objects: sandbox.calls.get('objects') ?? 0, total: sandbox.totalCalls() }))
