// CI runs the production install check (scripts/install-check.sh): what the Dockerfile does, without
// Docker. It builds, installs production dependencies only in a temporary directory, boots
// dist/server.js with embedded defaults, calls it, and stops it with SIGTERM.
import { test } from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
// npm ci and tsc take most of it; far above what the check needs on a CI machine.
const CHECK_TIMEOUT_MS = 170_000

test('production install check passes', { timeout: CHECK_TIMEOUT_MS + 5000 }, async (t) => {
  // Without tap's NODE_OPTIONS (coverage loaders): the processes under test run as in the image.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'))
  const child = spawn('bash', ['scripts/install-check.sh'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  t.equal(code, 0, 'the check exits 0')
  if (code !== 0) t.comment(out)
  for (const step of ['npm ci --omit=dev', 'every package imported by dist/ is a runtime dependency', '/healthz 200', '/metrics 200', 'exit code 0', 'ok']) {
    t.match(out, `install-check: ${step}`, step)
  }
})
