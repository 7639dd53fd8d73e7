// `npm run sandbox` (src/cli/sandbox.ts) as a child process: SANDBOX_* settings in, base URL and
// 40-hex tokens out, a clean exit on SIGTERM, a message and exit code 1 on a bad setting.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { rawRequest } from '../fixtures/raw-http.js'

const CLI = fileURLToPath(new URL('../../src/cli/sandbox.ts', import.meta.url))

function startCli (env: Record<string, string>): { child: ChildProcess, output: () => string, errors: () => string } {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { err += c.toString() })
  return { child, output: () => out, errors: () => err }
}

test('the CLI prints the API base URL and the tokens, serves, and stops on SIGTERM', async (t) => {
  const cli = startCli({ SANDBOX_PORT: '0', SANDBOX_OBJECTS: '50', SANDBOX_SEED: '3', SANDBOX_THROTTLE_RATE: '50/min', SANDBOX_LATENCY_MS: '0' })
  t.teardown(() => { if (cli.child.exitCode === null) cli.child.kill('SIGKILL') })
  while (!cli.output().includes('staff token')) {
    if (cli.child.exitCode !== null) break
    await once(cli.child.stdout ?? cli.child, 'data')
  }
  const text = cli.output()
  const base = /ATLAS sandbox upstream: (http:\/\/\S+\/api\/)/.exec(text)?.[1] ?? ''
  const write = /write token: +([0-9a-f]{40})/.exec(text)?.[1] ?? ''
  t.match(base, /^http:\/\/127\.0\.0\.1:\d+\/api\/$/)
  t.match(text, /read-only token: +[0-9a-f]{40}/)
  t.match(text, /staff token: +[0-9a-f]{40}/)
  const res = await rawRequest({ method: 'GET', url: `${base}vraranklist/`, headers: { Authorization: `Token ${write}` } })
  t.equal(res.status, 200)
  cli.child.kill('SIGTERM')
  const [code] = await once(cli.child, 'exit') as [number | null]
  t.equal(code, 0)
})

test('the CLI refuses a bad setting with a message', async (t) => {
  const cli = startCli({ SANDBOX_PORT: '0', SANDBOX_SEED: 'abc' })
  const [code] = await once(cli.child, 'exit') as [number | null]
  t.equal(code, 1)
  t.match(cli.errors(), /SANDBOX_SEED must be a number/)
})
