// buildTestApp: the real app against the sandbox upstream on 127.0.0.1:0 (and real Redis when
// REDIS_URL is set), closed on teardown. Tests override settings through `config`.
import { PassThrough } from 'node:stream'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../src/app.js'
import { loadConfig, type Config } from '../src/config.js'
import { startSandbox, type Sandbox, type SandboxOptions } from '../src/sandbox/index.js'

export interface TestApp {
  app: FastifyInstance
  sandbox: Sandbox
  config: Config
  /** Every log line written so far, as raw text. */
  logs: () => string
}

export interface TestAppOptions {
  config?: Partial<Config>
  sandbox?: SandboxOptions
  /** Use this sandbox instead of starting one (not closed by the helper). */
  upstream?: Sandbox
  deps?: AppDeps
  /** Use Redis from the REDIS_URL environment variable (default true when it is set). */
  useRedis?: boolean
  /** Registers test routes before the app is readied. */
  register?: (app: FastifyInstance) => void | Promise<void>
}

/** Fixture objects every sandbox holds (upstream-golden.json `fixtures`). */
export const FIXTURE_IDS = {
  A: '1161600211221604900',
  B: '1161601191221611900',
  C: '1033249000275412900',
  D: '1123049421122328000',
  E: '1004244331411607400',
  F: '1132527610430108700',
  /** Never exists. */
  U: '1132507360113744501'
} as const

/** Authorization for the in-memory demo consumer (all scopes), present when CONSUMERS_FILE is unset. */
export function demoAuth (app: FastifyInstance): Record<string, string> {
  const key = app.consumers.demoKey
  if (key === undefined) throw new Error('the app has a CONSUMERS_FILE: no demo consumer')
  return { authorization: `Bearer ${key}` }
}

/** Reads a sandbox reply directly (the upstream dialect), for digit-exact comparisons. */
export async function sandboxPost (sandbox: Sandbox, endpoint: string, fields: Record<string, string>, token = sandbox.tokens.write): Promise<{ status: number, text: string }> {
  const res = await fetch(sandbox.baseUrl + endpoint + '/', {
    method: 'POST',
    headers: { authorization: `Token ${token}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(fields).toString()
  })
  return { status: res.status, text: await res.text() }
}

/** For apps whose test never calls the upstream: nothing listens on the discard port. */
export const UNUSED_UPSTREAM = 'http://127.0.0.1:9/api/'

export const TEST_REDIS_URL = process.env.REDIS_URL ?? ''

export function testConfig (overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({ LOG_LEVEL: 'info', UPSTREAM_RATE: '100000/hour' }), ...overrides }
}

export async function startTestSandbox (t: Test, opts: SandboxOptions = {}): Promise<Sandbox> {
  const sandbox = await startSandbox({ port: 0, throttleRate: '100000/hour', ...opts })
  t.teardown(() => sandbox.close())
  return sandbox
}

export async function buildTestApp (t: Test, opts: TestAppOptions = {}): Promise<TestApp> {
  const sandbox = opts.upstream ?? await startTestSandbox(t, opts.sandbox)
  const writer = sandbox.users.write
  const useRedis = opts.useRedis ?? TEST_REDIS_URL !== ''
  const config = testConfig({
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    ATLAS_USERNAME: writer?.username ?? '',
    ATLAS_PASSWORD: writer?.password ?? '',
    REDIS_URL: useRedis ? TEST_REDIS_URL : '',
    // Every test app gets its own key space in the shared Redis.
    REDIS_KEY_PREFIX: `agw-test:${process.pid}:${Math.random().toString(36).slice(2)}:`,
    ...opts.config
  })
  const chunks: string[] = []
  const logStream = new PassThrough()
  // Every test app guards the whole suite: no upstream token or password may ever reach a log line.
  const leaks = new Set<string>()
  logStream.on('data', (c: Buffer) => {
    const line = c.toString('utf8')
    chunks.push(line)
    for (const secret of [...Object.values(sandbox.tokens), config.ATLAS_TOKEN, config.ATLAS_PASSWORD]) {
      if (secret.length >= 8 && line.includes(secret)) leaks.add(secret === config.ATLAS_PASSWORD ? 'ATLAS_PASSWORD' : 'an upstream token')
    }
  })
  t.teardown(() => {
    if (leaks.size > 0) throw new Error(`secret in the logs: ${[...leaks].join(', ')}`)
  })
  const app = await buildApp(config, { logStream, ...opts.deps })
  t.teardown(() => app.close())
  await opts.register?.(app)
  await app.ready()
  return { app, sandbox, config, logs: () => chunks.join('') }
}
