import { test } from 'tap'
import { readFileSync } from 'node:fs'
import { ConfigSchema, defaultConfig, loadConfig } from '../src/config.js'
import { parseCustomLists } from '../src/lists.js'

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

test('values that would break at runtime fail at boot, naming the setting; secrets lose the newline a secret file adds', async (t) => {
  t.throws(() => loadConfig({ UPSTREAM_RATE: '0/hour' }), /UPSTREAM_RATE/, 'a rate of zero')
  // Past 2^63 the Redis budget's reply wrapped to -9223372036854778000 tokens left: the budget read as spent.
  t.throws(() => loadConfig({ UPSTREAM_RATE: '99999999999999999999999/second' }), /^UPSTREAM_RATE: .*at most 1000000000/)
  t.throws(() => loadConfig({ UPSTREAM_RATE: '9007199254740993/hour' }), /^UPSTREAM_RATE: .*at most 1000000000/)
  t.throws(() => loadConfig({ AUTH_TOKEN_RATE: '99999999999999999999999/minute' }), /^AUTH_TOKEN_RATE: .*at most 1000000000/)
  t.equal(loadConfig({ UPSTREAM_RATE: '1000000000/second' }).UPSTREAM_RATE, '1000000000/second')
  t.throws(() => loadConfig({ HOST: '' }), /HOST/, 'an empty HOST would listen on every interface')
  t.throws(() => loadConfig({ SHUTDOWN_TIMEOUT_MS: '2147483648' }), /SHUTDOWN_TIMEOUT_MS/, 'a delay Node would cut to 1 ms')
  t.throws(() => loadConfig({ HEALTH_CHECK_INTERVAL_MS: '2147483648' }), /HEALTH_CHECK_INTERVAL_MS/)
  t.throws(() => loadConfig({ UPSTREAM_PATHS: 'nope' }), /UPSTREAM_PATHS/)
  t.throws(() => loadConfig({ CUSTOM_LISTS: '{bad' }), /CUSTOM_LISTS/)
  t.throws(() => loadConfig({ CUSTOM_LISTS: '{"good":14}' }), /CUSTOM_LISTS: "good" is the name of a detection list/, 'it would hide the detection list')
  t.throws(() => loadConfig({ CUSTOM_LISTS: '{"mookodi":2,"mk2":2}' }), /CUSTOM_LISTS: "mk2" and "mookodi" name the same object group 2/)
  // The compatibility path names a group without a name group-<id>: a list named so would let a key
  // granted it write that other group.
  t.throws(() => loadConfig({ CUSTOM_LISTS: '{"group-5":14}' }), /CUSTOM_LISTS: "group-5" is reserved/)
  // A name given twice kept the last id without a word; __proto__ set the object's prototype and vanished.
  t.throws(() => loadConfig({ CUSTOM_LISTS: '{"mookodi":2,"mookodi":3}' }), /CUSTOM_LISTS/)
  t.same(Object.entries(parseCustomLists('{"__proto__":5,"cv":40}')), [['__proto__', 5], ['cv', 40]])
  t.throws(() => loadConfig({ REDIS_URL: 'redis://:x@[bad' }), /REDIS_URL/)
  // The pattern only sees http(s)://…/: the boot then stopped on "cannot start: Invalid URL", unnamed.
  t.throws(() => loadConfig({ ATLAS_BASE_URL: 'http:// /' }), /^ATLAS_BASE_URL is not a valid URL/)
  t.throws(() => loadConfig({ ATLAS_BASE_URL: 'https://example.org:99999/api/' }), /^ATLAS_BASE_URL is not a valid URL/)
  t.throws(() => loadConfig({ ATLAS_BASE_URL: 'https://exa mple.org/api/' }), /^ATLAS_BASE_URL is not a valid URL/)
  t.equal(loadConfig({ ATLAS_BASE_URL: 'https://example.org:8443/api/' }).ATLAS_BASE_URL, 'https://example.org:8443/api/')
  const config = loadConfig({ ATLAS_TOKEN: `${'a'.repeat(40)}\n`, METRICS_TOKEN: 'metrics-secret\n', ATLAS_USERNAME: 'bot\n', ATLAS_PASSWORD: 'pw\r\n' })
  t.equal(config.ATLAS_TOKEN, 'a'.repeat(40))
  t.equal(config.METRICS_TOKEN, 'metrics-secret')
  t.equal(config.ATLAS_USERNAME, 'bot')
  t.equal(config.ATLAS_PASSWORD, 'pw')
})

test('a background headroom not below UPSTREAM_RATE\'s capacity fails at boot, naming both settings', async (t) => {
  // At or above the capacity "more than the headroom left" never holds: no refresh, prefetch or push
  // poll ever ran, and every answer after the first was STALE (budget-low) up to CACHE_MAX_STALE_S.
  const refused = /UPSTREAM_BACKGROUND_HEADROOM.*UPSTREAM_RATE/
  t.throws(() => loadConfig({ UPSTREAM_RATE: '3600/second', UPSTREAM_BACKGROUND_HEADROOM: '100%' }), refused, 'the whole bucket as a share')
  t.throws(() => loadConfig({ UPSTREAM_RATE: '3600/second', UPSTREAM_BACKGROUND_HEADROOM: '3600' }), refused, 'the whole bucket as a count')
  t.throws(() => loadConfig({ UPSTREAM_RATE: '100/hour', UPSTREAM_BACKGROUND_HEADROOM: '1000' }), refused, 'more than the bucket')
  t.throws(() => loadConfig({ UPSTREAM_RATE: '1/hour' }), refused, 'the default 20% of one token rounds up to the token')
  t.equal(loadConfig({ UPSTREAM_RATE: '100/hour', UPSTREAM_BACKGROUND_HEADROOM: '99' }).UPSTREAM_BACKGROUND_HEADROOM, '99', 'one token above it')
  t.equal(loadConfig({ UPSTREAM_RATE: '1/hour', UPSTREAM_BACKGROUND_HEADROOM: '0' }).UPSTREAM_RATE, '1/hour', 'no headroom')
})

test('shutdown settings whose sum Node cannot wait for fail at boot, naming them', async (t) => {
  // close-with-grace waits drain + the longer of SHUTDOWN_TIMEOUT_MS and PUSH_WEBHOOK_TIMEOUT_MS + 5 s
  // before it gives up: beyond 2^31-1 ms Node ran that timer after 1 ms, and SIGTERM exited 1 at once.
  const refused = /SHUTDOWN_DRAIN_MS.*SHUTDOWN_TIMEOUT_MS.*PUSH_WEBHOOK_TIMEOUT_MS/
  t.throws(() => loadConfig({ SHUTDOWN_TIMEOUT_MS: '2147483000' }), refused)
  t.throws(() => loadConfig({ SHUTDOWN_DRAIN_MS: '2147483000' }), refused)
  t.throws(() => loadConfig({ PUSH_WEBHOOK_TIMEOUT_MS: '2147483000' }), refused)
  t.throws(() => loadConfig({ SHUTDOWN_DRAIN_MS: '1073741823', SHUTDOWN_TIMEOUT_MS: '1073741823' }), refused)
  const longest = loadConfig({ SHUTDOWN_DRAIN_MS: '1000000000', SHUTDOWN_TIMEOUT_MS: String(2 ** 31 - 1 - 1000000000 - 5000) })
  t.equal(longest.SHUTDOWN_DRAIN_MS, 1000000000, 'a sum of 2^31-1 ms is kept')
})

test('a minimum set above its maximum fails at boot, naming both settings', async (t) => {
  t.throws(() => loadConfig({ UPSTREAM_BATCH_WINDOW_MS: '2000', UPSTREAM_BATCH_WINDOW_MAX_MS: '100' }), /UPSTREAM_BATCH_WINDOW_MS.*UPSTREAM_BATCH_WINDOW_MAX_MS/)
  t.throws(() => loadConfig({ UPSTREAM_BATCH_WINDOW_MS: '300' }), /UPSTREAM_BATCH_WINDOW_MS.*UPSTREAM_BATCH_WINDOW_MAX_MS/, 'above the default maximum')
  t.throws(() => loadConfig({ UPSTREAM_LOGIN_BACKOFF_MS: '600000', UPSTREAM_LOGIN_BACKOFF_MAX_MS: '1000' }), /UPSTREAM_LOGIN_BACKOFF_MS.*UPSTREAM_LOGIN_BACKOFF_MAX_MS/)
  t.throws(() => loadConfig({ PUSH_POLL_INTERVAL_MS: '900000', PUSH_POLL_MAX_INTERVAL_MS: '1000' }), /PUSH_POLL_INTERVAL_MS.*PUSH_POLL_MAX_INTERVAL_MS/)
  t.throws(() => loadConfig({ BULK_MAX_STREAMS: '1', BULK_MAX_STREAMS_PER_CONSUMER: '5' }), /BULK_MAX_STREAMS_PER_CONSUMER.*BULK_MAX_STREAMS/)
  // Equal is a working setting: one window, one wait, one interval; a replica of one bulk stream.
  const equal = loadConfig({
    UPSTREAM_BATCH_WINDOW_MS: '300',
    UPSTREAM_BATCH_WINDOW_MAX_MS: '300',
    UPSTREAM_LOGIN_BACKOFF_MS: '60000',
    UPSTREAM_LOGIN_BACKOFF_MAX_MS: '60000',
    PUSH_POLL_INTERVAL_MS: '60000',
    PUSH_POLL_MAX_INTERVAL_MS: '60000',
    BULK_MAX_STREAMS: '1',
    BULK_MAX_STREAMS_PER_CONSUMER: '1'
  })
  t.equal(equal.BULK_MAX_STREAMS, 1)
})

test('a number not written in plain decimal digits, or a blank HOST, fails at boot naming the setting', async (t) => {
  // A blank PORT became 0 (a random port, silently); hexadecimal and exponents were read as numbers; a
  // blank HOST passed and failed at listen with getaddrinfo ENOTFOUND, naming nothing.
  for (const value of [' ', '0x50', '1e3', '80.0', ' 80 ', '+80', '']) {
    t.throws(() => loadConfig({ PORT: value }), /PORT/, `PORT=${JSON.stringify(value)}`)
  }
  t.throws(() => loadConfig({ CACHE_MAX_BYTES: '0x10' }), /CACHE_MAX_BYTES/)
  t.throws(() => loadConfig({ SHUTDOWN_DRAIN_MS: '\t' }), /SHUTDOWN_DRAIN_MS/)
  t.throws(() => loadConfig({ HOST: ' ' }), /HOST/)
  t.throws(() => loadConfig({ HOST: '\n' }), /HOST/)
  t.equal(loadConfig({ PORT: '0080' }).PORT, 80, 'leading zeros are still decimal')
  t.equal(loadConfig({ PORT: '0' }).PORT, 0)
})
