// `npm run sandbox`: the sandbox ATLAS upstream on its own, configured by SANDBOX_* variables (design
// §6). Prints the API base URL and the users' 40-hex tokens, then serves until SIGINT or SIGTERM.
import { startSandbox } from '../sandbox/index.js'
import type { SandboxOptions } from '../sandbox/index.js'

const DEFAULT_PORT = 8081

function numberFrom (env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name]
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got "${text}"`)
  return value
}

function textFrom (env: NodeJS.ProcessEnv, name: string): string | undefined {
  const text = env[name]
  return text === undefined || text === '' ? undefined : text
}

function sandboxOptionsFromEnv (env: NodeJS.ProcessEnv): SandboxOptions {
  return {
    host: textFrom(env, 'SANDBOX_HOST'),
    /* c8 ignore next -- tests always choose a port */
    port: numberFrom(env, 'SANDBOX_PORT') ?? DEFAULT_PORT,
    objects: numberFrom(env, 'SANDBOX_OBJECTS'),
    seed: numberFrom(env, 'SANDBOX_SEED'),
    latencyMs: numberFrom(env, 'SANDBOX_LATENCY_MS'),
    jitterMs: numberFrom(env, 'SANDBOX_JITTER_MS'),
    errorRate: numberFrom(env, 'SANDBOX_ERROR_RATE'),
    tokenTtlS: numberFrom(env, 'SANDBOX_TOKEN_TTL_S'),
    throttleRate: textFrom(env, 'SANDBOX_THROTTLE_RATE'),
    staffThrottleRate: textFrom(env, 'SANDBOX_STAFF_THROTTLE_RATE'),
    anonThrottleRate: textFrom(env, 'SANDBOX_ANON_THROTTLE_RATE')
  }
}

async function main (): Promise<void> {
  const sandbox = await startSandbox(sandboxOptionsFromEnv(process.env))
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
