// buildTestApp: the real app against the sandbox upstream on 127.0.0.1:0 (and real Redis when
// REDIS_URL is set), closed on teardown. Tests override settings through `config`.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../src/app.js'
import { loadConfig, type Config } from '../src/config.js'
import { startSandbox, type Sandbox, type SandboxOptions } from '../src/sandbox/index.js'
import { deleteKeysOnTeardown, testKeyPrefix } from './fixtures/redis-keys.js'

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
  /**
   * More secrets (consumer keys) the log guard must never find in this app's logs. Read when the test
   * ends, so a Set may still grow during the test. Keys from makeConsumer are guarded already.
   */
  secrets?: Iterable<string>
}

/** Secrets every test app's log guard looks for, whichever test app logs them (see guardSecret). */
const guardedSecrets = new Set<string>()

/** Makes every test app of this process fail its test if `secret` reaches its logs. */
export function guardSecret (secret: string): void {
  guardedSecrets.add(secret)
}

// The guard ignores shorter values, which could match ordinary log text.
const MIN_GUARDED_LENGTH = 8
// The one intended disclosure of a key: the demo consumer's key is logged once at boot.
const DEMO_KEY_LINE = 'demo consumer key: '

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

// Test apps share two cores with a whole parallel suite: a healthy Redis can answer a big write slower
// than the production default of 500 ms, and one timeout makes every Redis user skip Redis for a second.
// Tests of Redis faults set their own (short) timeout.
const TEST_REDIS_TIMEOUT_MS = 3000

// Without Redis the audit and usage go to files: each test config gets its own, in a directory of this
// process that goes when it exits.
const STATE_DIR = mkdtempSync(join(tmpdir(), 'agw-test-state-'))
process.on('exit', () => { rmSync(STATE_DIR, { recursive: true, force: true }) })

export function testConfig (overrides: Partial<Config> = {}): Config {
  const tag = Math.random().toString(36).slice(2)
  return {
    ...loadConfig({ LOG_LEVEL: 'info', UPSTREAM_RATE: '100000/hour', REDIS_COMMAND_TIMEOUT_MS: String(TEST_REDIS_TIMEOUT_MS) }),
    AUDIT_FILE: join(STATE_DIR, `audit-${tag}.jsonl`),
    USAGE_FILE: join(STATE_DIR, `usage-${tag}.json`),
    // Usage is flushed when the app closes (or when a test calls app.usage.flush()), not on a timer in
    // the middle of a test that counts Redis commands; test/usage/ sets a short interval of its own.
    USAGE_FLUSH_MS: 3600000,
    ...overrides
  }
}

export async function startTestSandbox (t: Test, opts: SandboxOptions = {}): Promise<Sandbox> {
  const sandbox = await startSandbox({ port: 0, throttleRate: '100000/hour', ...opts })
  t.teardown(() => sandbox.close())
  return sandbox
}

/** The secrets found in `text`, each with a label that does not repeat it. */
function findLeaks (text: string, secrets: ReadonlyMap<string, string>): string[] {
  const found = new Set<string>()
  for (const [secret, label] of secrets) {
    if (secret.length >= MIN_GUARDED_LENGTH && text.includes(secret)) found.add(label)
  }
  return [...found]
}

export async function buildTestApp (t: Test, opts: TestAppOptions = {}): Promise<TestApp> {
  const chunks: string[] = []
  const secrets = new Map<string, string>()
  // Filled in below; the guard reads them when the test ends.
  const built: { app?: FastifyInstance, sandbox?: Sandbox } = {}
  // Every test app guards the whole suite: no upstream token or password and no consumer key may reach a
  // log line. Registered first so that it runs last, when the app (and the sandbox started here) are
  // closed: a failing guard skips the teardowns that have not run yet.
  t.teardown(() => {
    const demoKey = built.app?.consumers.demoKey
    let text = chunks.join('')
    if (demoKey !== undefined) {
      text = text.replace(DEMO_KEY_LINE + demoKey, DEMO_KEY_LINE)
      secrets.set(demoKey, 'the demo consumer key')
    }
    for (const token of Object.values(built.sandbox?.tokens ?? {})) secrets.set(token, 'an upstream token')
    for (const key of guardedSecrets) secrets.set(key, 'a consumer key')
    for (const key of opts.secrets ?? []) secrets.set(key, 'a consumer key')
    const leaks = findLeaks(text, secrets)
    if (leaks.length > 0) throw new Error(`secret in the logs: ${leaks.join(', ')}`)
  })
  const sandbox = opts.upstream ?? await startTestSandbox(t, opts.sandbox)
  built.sandbox = sandbox
  const writer = sandbox.users.write
  const useRedis = opts.useRedis ?? TEST_REDIS_URL !== ''
  const config = testConfig({
    ATLAS_BASE_URL: sandbox.baseUrl,
    ATLAS_TOKEN: sandbox.tokens.write,
    ATLAS_USERNAME: writer?.username ?? '',
    ATLAS_PASSWORD: writer?.password ?? '',
    REDIS_URL: useRedis ? TEST_REDIS_URL : '',
    // Every test app gets its own key space in the shared Redis.
    REDIS_KEY_PREFIX: testKeyPrefix(),
    ...opts.config
  })
  // Registered before the app's close, so it runs after it: the key space goes when the test ends.
  deleteKeysOnTeardown(t, config.REDIS_URL, config.REDIS_KEY_PREFIX)
  // The tokens as they were at boot (a test may rotate them); the guard adds the later ones.
  for (const token of [...Object.values(sandbox.tokens), config.ATLAS_TOKEN]) secrets.set(token, 'an upstream token')
  for (const user of Object.values(sandbox.users)) secrets.set(user.password, 'an upstream password')
  secrets.set(config.ATLAS_PASSWORD, 'ATLAS_PASSWORD')
  const logStream = new PassThrough()
  logStream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')))
  const app = await buildApp(config, { logStream, ...opts.deps })
  built.app = app
  t.teardown(() => app.close())
  await opts.register?.(app)
  await app.ready()
  return { app, sandbox, config, logs: () => chunks.join('') }
}

/** `count` replicas of the gateway on one upstream (and REDIS_URL), each listening on a loopback port. */
export async function listeningReplicas (t: Test, count: number, opts: TestAppOptions = {}): Promise<{ apps: FastifyInstance[], bases: string[] }> {
  const apps = await Promise.all(Array.from({ length: count }, async () => (await buildTestApp(t, opts)).app))
  const bases = await Promise.all(apps.map(async (app) => app.listen({ port: 0, host: '127.0.0.1' })))
  return { apps, bases }
}
