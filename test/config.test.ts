import { test } from 'tap'
import { readFileSync } from 'node:fs'
import { ConfigSchema, defaultConfig, loadConfig } from '../src/config.js'

test('a bad value fails with a message naming the key', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), /PORT/)
  t.throws(() => loadConfig({ UPSTREAM_RATE: '100/fortnight' }), /UPSTREAM_RATE/)
  t.throws(() => loadConfig({ LIMITS_ON_REDIS_ERROR: 'maybe' }), /LIMITS_ON_REDIS_ERROR/)
  t.throws(() => loadConfig({ ATLAS_BASE_URL: 'https://example.org/api' }), /ATLAS_BASE_URL/)
  t.throws(() => loadConfig({ UPSTREAM_MAX_IDS_PER_CALL: '0' }), /UPSTREAM_MAX_IDS_PER_CALL/)
})

test('values are coerced to their types', async (t) => {
  const config = loadConfig({ PORT: '9090', CACHE_MAX_BYTES: '1024', LIMITS_ON_REDIS_ERROR: 'closed' })
  t.equal(config.PORT, 9090)
  t.equal(config.CACHE_MAX_BYTES, 1024)
  t.equal(config.LIMITS_ON_REDIS_ERROR, 'closed')
})

test('unknown environment variables are ignored, not copied into the config', async (t) => {
  const config = loadConfig({ HOME: '/root', PATH: '/bin' })
  t.notOk('HOME' in config)
})

test('every setting has a default, and the README documents each with that default', async (t) => {
  const defaults = defaultConfig()
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
  for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
    t.ok('default' in schema, `${key} has a default`)
    const value = (defaults as Record<string, unknown>)[key]
    t.same(value, schema.default, `${key} default is the schema default`)
    const row = readme.split('\n').find((line) => line.startsWith(`| \`${key}\``))
    t.ok(row, `README has a row for ${key}`)
    const shown = value === '' ? '(empty)' : String(value)
    t.ok(row?.includes(`\`${shown}\``), `README row for ${key} shows its default ${shown}`)
  }
})
