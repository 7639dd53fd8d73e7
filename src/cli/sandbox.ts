// `npm run sandbox`: the sandbox ATLAS upstream on its own, configured by SANDBOX_* variables (README,
// The sandbox upstream). Prints the API base URL and the users' 40-hex tokens, then serves until SIGINT or SIGTERM.
import { sandboxOptionsFromEnv, startSandbox } from '../sandbox/index.js'

const DEFAULT_PORT = 8081

async function main (): Promise<void> {
  const options = sandboxOptionsFromEnv(process.env)
  const sandbox = await startSandbox({ ...options, port: options.port ?? DEFAULT_PORT })
  const writer = sandbox.users.write
  // Plain stdout lines: this is a CLI's output for a person, not a log record.
  process.stdout.write([
    `ATLAS sandbox upstream: ${sandbox.baseUrl}`,
    `  read-only token: ${sandbox.tokens.read}`,
    `  write token:     ${sandbox.tokens.write}`,
    `  staff token:     ${sandbox.tokens.staff}`,
    /* c8 ignore next -- the write user always exists */
    writer === undefined ? '' : `  auth-token login (write user): ${writer.username} / ${writer.password}`,
    ''
  ].join('\n'))
  let stopping = false
  const stop = (): void => {
    /* c8 ignore next -- a second signal while closing */
    if (stopping) return
    stopping = true
    sandbox.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((err: unknown) => {
  /* c8 ignore next -- everything thrown here is an Error */
  process.stderr.write(`sandbox failed to start: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
