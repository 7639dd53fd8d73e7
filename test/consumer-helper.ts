// Test-side helpers for consumers and limits: consumer files with known keys, and an app builder that
// lets a test register its own scoped routes before the app is ready (buildTestApp readies at once).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { stringify } from 'yaml'
import type { AppDeps } from '../src/app.js'
import type { Config } from '../src/config.js'
import { generateKey, hashKey } from '../src/consumers/keys.js'
import type { ConsumerEntry } from '../src/consumers/schema.js'
import type { Sandbox } from '../src/sandbox/index.js'
import { buildTestApp, guardSecret, type TestApp } from './helper.js'

export interface TestConsumer {
  key: string
  entry: ConsumerEntry
}

/** A consumer entry with a fresh key; `key_sha256` is derived from it. Every test app's log guard fails on the key. */
export function makeConsumer (id: string, fields: Partial<Omit<ConsumerEntry, 'id'>> = {}): TestConsumer {
  const key = generateKey()
  guardSecret(key)
  return { key, entry: { id, key_sha256: [hashKey(key)], ...fields } }
}

export function writeConsumers (path: string, consumers: ReadonlyArray<TestConsumer | ConsumerEntry>): string {
  const entries = consumers.map((c) => 'entry' in c ? c.entry : c)
  writeFileSync(path, stringify({ consumers: entries }))
  return path
}

/** Writes a consumers file into a fresh test directory and returns its path. */
export function consumersFile (t: Test, consumers: ReadonlyArray<TestConsumer | ConsumerEntry>): string {
  return writeConsumers(join(t.testdir(), 'consumers.yaml'), consumers)
}

export function uniquePrefix (tag: string): string {
  return `agw-test:${tag}:${process.pid}:${Math.random().toString(36).slice(2)}:`
}

export interface AuthAppOptions {
  config?: Partial<Config>
  upstream?: Sandbox
  deps?: AppDeps
  /** Registers test routes before the app is readied. */
  register?: (app: FastifyInstance) => void | Promise<void>
}

/** buildTestApp with Redis (when REDIS_URL is set) under a key prefix of its own. */
export async function buildAuthTestApp (t: Test, opts: AuthAppOptions = {}): Promise<TestApp> {
  return buildTestApp(t, { ...opts, config: { REDIS_KEY_PREFIX: uniquePrefix('auth'), ...opts.config } })
}

/** Scoped routes used by the auth and limit tests. */
export function registerTestRoutes (app: FastifyInstance): void {
  const listParam = (request: { params: unknown }): string => (request.params as { name: string }).name
  app.get('/t/read', { config: { scope: 'read' } }, async () => ({ ok: true }))
  app.post('/t/vra', { config: { scope: 'write:vra' } }, async () => ({ ok: true }))
  app.post('/t/detection', { config: { scope: 'write:detection-list' } }, async () => ({ ok: true }))
  app.put('/t/lists/:name', { config: { scope: 'write:custom-lists', list: listParam } }, async () => ({ ok: true }))
  app.post('/t/batch', {
    config: { scope: 'read', units: (request) => (request.body as { ids: string[] }).ids.length },
    schema: { body: { type: 'object', required: ['ids'], properties: { ids: { type: 'array', items: { type: 'string' } } } } }
  }, async () => ({ ok: true }))
  app.get('/t/public', { config: { public: true } }, async () => ({ ok: true }))
  app.get('/compat/read/', { config: { scope: 'read', dialect: 'compat' } }, async () => ({ ok: true }))
  app.post('/compat/vra/', { config: { scope: 'write:vra', dialect: 'compat' } }, async () => ({ ok: true }))
  app.post('/compat/batch/', {
    config: { scope: 'read', dialect: 'compat', units: (request) => Number((request.query as { n?: string }).n ?? '1') }
  }, async () => ({ ok: true }))
}

export const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` })
