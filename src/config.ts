// Every setting of the gateway, one TypeBox schema with a default on every optional key. Only
// src/server.ts passes process.env in; everything else receives the typed Config.
import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'
import { parseRedisUrl } from './lib/redis-url.js'
import { parseCustomLists } from './lists.js'
import { resolvePaths } from './upstream/endpoints.js'
import { headroomTokens, parseRate } from './upstream/budget.js'

const Rate = (def: string, description: string) =>
  Type.String({ pattern: '^[1-9]\\d*/(second|minute|hour|day)$', default: def, description })
const Int = (def: number, minimum: number, description: string, maximum?: number) =>
  Type.Integer({ default: def, minimum, ...(maximum === undefined ? {} : { maximum }), description })
const Enum = <T extends string>(values: readonly T[], def: T, description: string) =>
  Type.Unsafe<T>({ type: 'string', enum: values, default: def, description })
const OptionalString = (description: string) => Type.String({ default: '', description })

export const ConfigSchema = Type.Object({
  PORT: Int(8080, 0, 'TCP port the gateway listens on', 65535),
  // Loopback by default: with no settings the demo consumer has every scope and /metrics is open.
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'address the gateway listens on; 0.0.0.0 to serve other machines (the image sets it)' }),
  LOG_LEVEL: Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info', 'pino log level'),
  ATLAS_BASE_URL: Type.String({ default: '', pattern: '^$|^https?://.+/$', description: 'upstream API base ending in /api/; empty starts the embedded sandbox' }),
  ATLAS_TOKEN: OptionalString('the upstream token (40 hex)'),
  ATLAS_TOKEN_FILE: OptionalString('file holding the upstream token (re-read on Invalid token.)'),
  ATLAS_USERNAME: OptionalString('username for unattended token refresh through auth-token/'),
  ATLAS_USERNAME_FILE: OptionalString('file holding ATLAS_USERNAME'),
  ATLAS_PASSWORD: OptionalString('password for unattended token refresh'),
  ATLAS_PASSWORD_FILE: OptionalString('file holding ATLAS_PASSWORD'),
  REDIS_URL: OptionalString('Redis for cache L2, limits, budget and token; empty means memory. One server (redis://, rediss://), Sentinel (redis+sentinel://host:port,…/mastername) or Cluster (redis+cluster://host:port,…); rediss+… for TLS (README "Settings")'),
  // Braces would make the prefix a hash tag and put every key in one cluster slot.
  REDIS_KEY_PREFIX: Type.String({ default: 'agw:', pattern: '^[^{}]*$', description: 'prefix of every Redis key the gateway writes (no { or })' }),
  REDIS_COMMAND_TIMEOUT_MS: Int(500, 10, 'a Redis command slower than this fails (so a stalled Redis never hangs a request)'),
  CONSUMERS_FILE: OptionalString('consumers file (YAML or JSON); empty creates an in-memory demo consumer'),
  EXPIRY_WARNING_DAYS: Int(14, 0, 'in the last this many days before a consumer\'s `expires`, every answer to it carries a Sunset header (RFC 8594)'),
  AUDIT_RETENTION_DAYS: Int(400, 1, 'audit records of upstream writes older than this are trimmed from the Redis stream (the file is append-only: older records are skipped when read)'),
  AUDIT_MAX_ENTRIES: Int(1000000, 100, 'the audit stream in Redis is capped at about this many records (oldest trimmed first)'),
  AUDIT_FILE: Type.String({ default: 'audit.jsonl', description: 'without Redis, the append-only JSON-lines file the audit of upstream writes goes to' }),
  USAGE_RETENTION_DAYS: Int(400, 1, 'usage counters per consumer per UTC day are kept this many days'),
  USAGE_FLUSH_MS: Int(5000, 10, 'usage counters and last_used are counted in memory and written (one pipelined batch) this often, and when the gateway closes'),
  USAGE_FILE: Type.String({ default: 'usage.json', description: 'without Redis, the JSON file usage counters and last_used are written to' }),
  UPSTREAM_RATE: Rate('100/hour', 'global upstream budget shared by every consumer and replica; its period also bounds any upstream Retry-After the gateway obeys'),
  UPSTREAM_MAX_IDS_PER_CALL: Int(1000, 1, 'ids per upstream objects/ call', 50000),
  BULK_MAX_STREAMS: Int(2, 1, 'bulk object streams (POST /v1/objects/query as NDJSON, or as JSON of more than one chunk) one replica serves at once (503 beyond). Each holds a chunk of UPSTREAM_MAX_IDS_PER_CALL records outside the heap until its client takes it; with L1 full and the image\'s heap flags, 2 streams of 10,000 cached ids peaked at 306 MiB, 3 at 382, 4 at 460: 2 keep a replica inside its 384 MiB (README "Memory")'),
  BULK_MAX_STREAMS_PER_CONSUMER: Int(1, 1, 'bulk object streams one consumer may hold at once on a replica (429 beyond): over all its keys; at most BULK_MAX_STREAMS, and below it one consumer cannot take every slot of a replica'),
  UPSTREAM_BATCH_WINDOW_MS: Int(10, 0, 'how long concurrent object reads are gathered into one objects/ call'),
  UPSTREAM_BATCH_WINDOW_MAX_MS: Int(250, 0, 'the batching window under budget pressure: it widens from UPSTREAM_BATCH_WINDOW_MS towards this as the budget\'s pace runs down, so misses spread over time share calls; the longest a requested id waits before its call leaves. Neither window exceeds the time UPSTREAM_RATE takes to earn one call'),
  PREFETCH_ENABLED: Type.Boolean({ default: true, description: 'top every objects/ call up to UPSTREAM_MAX_IDS_PER_CALL with ids likely to be read soon (members of lists read recently, hot records close to going stale) and prefetch the members of lists read' }),
  PREFETCH_MAX_BYTES_PER_CALL: Int(33554432, 0, 'predicted ids are added to an objects/ call only while its expected reply stays under this many bytes'),
  PREFETCH_RECORD_BYTES: Int(16384, 1, 'expected bytes of one object record, until replies show the real average'),
  PREFETCH_HORIZON_S: Int(300, 0, 'lists read and records read within this many seconds are prediction sources; cached records that go stale within it are refreshed ahead'),
  PREFETCH_DELAY_MS: Int(2000, 0, 'after a list read, how long its uncached members wait to ride along a consumer\'s objects/ call before a call of their own'),
  PREFETCH_MIN_IDS: Int(100, 1, 'a prefetch call of its own goes only with at least this many uncached list members (or all of a smaller call\'s worth)'),
  UPSTREAM_TIMEOUT_MS: Int(120000, 100, 'overall deadline of one upstream call (the real server allows 600 s)'),
  UPSTREAM_CONNECT_TIMEOUT_MS: Int(5000, 10, 'TCP/TLS connect timeout to the upstream'),
  UPSTREAM_MAX_RESPONSE_BYTES: Int(268435456, 1024, 'largest upstream response body accepted'),
  UPSTREAM_RETRIES: Int(1, 0, 'retries of a read on a network error or a 5xx (at most one; only with UPSTREAM_RETRY_MIN_BUDGET tokens left)', 1),
  UPSTREAM_RETRY_MIN_BUDGET: Int(10, 0, 'a read is retried only while at least this many budget tokens are left'),
  UPSTREAM_BACKGROUND_HEADROOM: Type.String({ default: '20%', pattern: '^(\\d+|\\d{1,2}%|100%)$', description: 'background upstream work (stale-while-revalidate refreshes, refresh ahead, prefetch) runs only while more than this many budget tokens are left: a count (20) or a share of UPSTREAM_RATE\'s capacity (20%), below that capacity; foreground misses may use the rest' }),
  CACHE_MAX_STALE_S: Int(86400, 0, 'the oldest (seconds since it was loaded) a cached answer may be when served stale; while the upstream budget is at or below UPSTREAM_BACKGROUND_HEADROOM, or spent, cached entries past their route\'s freshness answer up to this age (X-Cache: STALE, X-Cache-Reason: budget-low) instead of an upstream call or a 503; it also cuts every route\'s stale windows'),
  UPSTREAM_CONNECTIONS: Int(8, 1, 'keep-alive connections to the upstream'),
  UPSTREAM_POOL_WAIT_MS: Int(5000, 10, 'longest an upstream call waits for a free connection before failing fast with 503 (no budget spent)'),
  UPSTREAM_BREAKER_THRESHOLD: Int(5, 1, 'consecutive upstream network failures or 5xx replies that open the circuit breaker'),
  UPSTREAM_BREAKER_OPEN_MS: Int(30000, 10, 'how long an open circuit breaker fails misses fast before it lets a probe through'),
  UPSTREAM_BREAKER_PROBE_INTERVAL_MS: Int(5000, 10, 'half-open circuit breaker: one probe at a time, at most one per this interval'),
  UPSTREAM_LOGIN_BACKOFF_MS: Int(60000, 10, 'wait after a failed auth-token/ login; doubles with each failure (with jitter), for every replica'),
  UPSTREAM_LOGIN_BACKOFF_MAX_MS: Int(1800000, 10, 'longest wait between failed logins (auth-token/ allows 10 anonymous calls an hour)'),
  CUSTOM_LISTS: OptionalString('JSON map of custom-list name → upstream object group id; replaces the defaults (mookodi 2, salt 14, …; src/lists.ts)'),
  UPSTREAM_PATHS: OptionalString('JSON map of upstream endpoint → path overrides, e.g. {"objects":"objects2/"} (an upstream rename without a release)'),
  CACHE_MAX_BYTES: Int(67108864, 0, 'in-process (L1) cache budget in bytes; 0 disables L1'),
  CACHE_FRESHNESS: OptionalString('JSON per-route freshness overrides in seconds, e.g. {"lists":{"freshS":30,"swrS":600,"sieS":3600}}; empty uses the defaults'),
  CACHE_FILL_WAIT_MS: Int(130000, 0, 'the longest a replica waits for another replica filling the same cache miss before calling the upstream itself; the filling replica holds a lock it extends while its call lasts, so keep this above UPSTREAM_TIMEOUT_MS'),
  IDEMPOTENCY_WAIT_MS: Int(5000, 0, 'how long a write waits for an earlier request with the same Idempotency-Key to finish before answering 409'),
  LIMIT_LEASE_DIVISOR: Int(20, 1, 'request rates, daily units and upstream shares are counted in the process on leases of min(limit / LIMIT_LEASE_DIVISOR, LIMIT_LEASE_MAX) units per Redis call; a limit below twice this leases one unit at a time and stays exact across replicas'),
  PUSH_POLL_INTERVAL_MS: Int(60000, 100, 'push: how often each event source (a list or VRA table someone subscribes to) is polled while the upstream budget is full; the interval grows as the budget empties, and no source is polled without subscribers'),
  PUSH_POLL_MAX_INTERVAL_MS: Int(900000, 100, 'push: the longest interval between two polls of a source with subscribers'),
  PUSH_LEADER_TTL_MS: Int(15000, 100, 'push: one replica polls each source; its lead expires this long after its last renewal (renewed every third of it), and another replica with subscribers takes over'),
  PUSH_RETENTION_S: Int(86400, 1, 'push: how long events are kept for Last-Event-ID resumption and webhook retries'),
  PUSH_MAX_EVENTS: Int(10000, 1, 'push: at most this many events kept per source (the oldest go first)'),
  PUSH_HEARTBEAT_MS: Int(15000, 100, 'push: an idle event stream gets a comment line this often (keeps proxies from closing it)'),
  PUSH_MAX_STREAMS_PER_CONSUMER: Int(5, 0, 'push: open event streams one consumer may hold across every replica, over all its keys (429 beyond)'),
  PUSH_WEBHOOK_ALLOWED_HOSTS: OptionalString('push: comma-separated hosts webhooks may use over plain http (e.g. 127.0.0.1,receiver.internal); every other webhook URL must be https'),
  PUSH_WEBHOOK_MAX_ATTEMPTS: Int(8, 1, 'push: deliveries of one webhook message before it goes to the consumer\'s dead-letter list'),
  PUSH_WEBHOOK_BACKOFF_MS: Int(2000, 1, 'push: wait before the first webhook retry; doubles with each failure (full jitter), up to 1 hour'),
  PUSH_WEBHOOK_TIMEOUT_MS: Int(10000, 100, 'push: a webhook receiver must answer within this (else the attempt failed)'),
  LIMIT_LEASE_MAX: Int(1000, 1, 'the largest lease of request-rate, daily or upstream-share units one replica takes per Redis call (what it may hold unspent, and so what it may make other replicas refuse early)'),
  LIMITS_ON_REDIS_ERROR: Enum(['open', 'closed'], 'open', 'serve (open) or refuse with 503 (closed) when Redis fails during a limit check'),
  // Per address, not per consumer: the endpoint takes no key. Behind a proxy every client through it has
  // the proxy's address (trustProxy is off), so the default leaves room for many logins through one.
  AUTH_TOKEN_RATE: Rate('30/minute', 'anonymous POST /atlas/api/auth-token/ requests one client address may make (429 beyond, before the body is read); the address is the connection\'s, so clients behind one proxy share it; counted in Redis across replicas, else per replica'),
  METRICS_TOKEN: OptionalString('when set, /metrics needs Authorization: Bearer <token> (and /status that or HTTP Basic); empty, both are open, and a HOST beyond loopback gets a warning at boot'),
  BODY_LIMIT_BYTES: Int(1048576, 1024, 'largest request body accepted (the bulk object query takes more when a consumer\'s max_batch needs it)'),
  REQUEST_TIMEOUT_MS: Int(30000, 100, 'a request\'s headers and body must arrive within this, else 408'),
  SHUTDOWN_DRAIN_MS: Int(5000, 0, 'after SIGTERM, how long /readyz answers 503 while every request is still served, so load balancers stop sending new ones before the listener closes'),
  SHUTDOWN_TIMEOUT_MS: Int(10000, 0, 'after the drain, how long in-flight requests may finish; those still running then get a 503 problem'),
  HEALTH_CHECK_INTERVAL_MS: Int(30000, 10, 'how often a background check looks at Redis, the upstream and the token for /healthz and gateway_dependency_up (probes never call them)')
})

// Node runs a timer of 2^31 ms or more after 1 ms (a TimeoutOverflowWarning): no *_MS setting may be
// that long. (A limit of Node's, not a setting.)
const longestTimerMs = 2 ** 31 - 1
for (const [key, schema] of Object.entries(ConfigSchema.properties) as Array<[string, { maximum?: number }]>) {
  if (key.endsWith('_MS')) schema.maximum = Math.min(schema.maximum ?? longestTimerMs, longestTimerMs)
}

// Secret stores (a Kubernetes secret made --from-file, a file read into the environment) often end the
// value with a line break, which no token, password or name holds: it would make every upstream call's
// Authorization header invalid.
const TRIMMED = new Set(['ATLAS_TOKEN', 'ATLAS_USERNAME', 'ATLAS_PASSWORD', 'METRICS_TOKEN'])

export type Config = Static<typeof ConfigSchema>

/** Validates an environment-like object once, at boot; a bad value throws naming the key. */
export function loadConfig (env: Record<string, string | undefined>): Config {
  const data: Record<string, string> = {}
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key]
    if (value !== undefined) data[key] = TRIMMED.has(key) ? value.trim() : value
  }
  checkWritten(data)
  const config = envSchema<Config>({ schema: ConfigSchema, data, env: false, dotenv: false })
  // Settings with a syntax of their own: a bad one fails here, named, rather than deep in a plugin.
  // The pattern sees only http(s)://…/; a port out of range or a space in the host is caught here.
  named('ATLAS_BASE_URL', () => { if (config.ATLAS_BASE_URL !== '' && !URL.canParse(config.ATLAS_BASE_URL)) throw new Error('ATLAS_BASE_URL is not a valid URL') })
  named('REDIS_URL', () => { if (config.REDIS_URL !== '') parseRedisUrl(config.REDIS_URL) })
  named('UPSTREAM_RATE', () => parseRate(config.UPSTREAM_RATE))
  named('AUTH_TOKEN_RATE', () => parseRate(config.AUTH_TOKEN_RATE))
  named('CUSTOM_LISTS', () => parseCustomLists(config.CUSTOM_LISTS))
  named('UPSTREAM_PATHS', () => resolvePaths(config.UPSTREAM_PATHS))
  checkHeadroom(config)
  checkShutdownDeadline(config)
  checkOrder(config)
  return config
}

// Settings that bound another from above: [lower, upper]. Set the wrong way round, the upper one won
// silently (a miss waited the whole UPSTREAM_BATCH_WINDOW_MS beyond UPSTREAM_BATCH_WINDOW_MAX_MS, the
// longest wait README promises) or meant nothing. Equal is a working setting: one window, one wait, one
// interval, or a replica of one bulk stream (BULK_MAX_STREAMS_PER_CONSUMER cannot be below 1).
const ORDERED: ReadonlyArray<readonly [keyof Config, keyof Config]> = [
  ['UPSTREAM_BATCH_WINDOW_MS', 'UPSTREAM_BATCH_WINDOW_MAX_MS'],
  ['UPSTREAM_LOGIN_BACKOFF_MS', 'UPSTREAM_LOGIN_BACKOFF_MAX_MS'],
  ['PUSH_POLL_INTERVAL_MS', 'PUSH_POLL_MAX_INTERVAL_MS'],
  ['BULK_MAX_STREAMS_PER_CONSUMER', 'BULK_MAX_STREAMS']
]

function checkOrder (config: Config): void {
  for (const [lower, upper] of ORDERED) {
    if (config[lower] > config[upper]) throw new Error(`${lower} (${config[lower]}) must not be above ${upper} (${config[upper]})`)
  }
}

// Beyond drain + SHUTDOWN_TIMEOUT_MS (or PUSH_WEBHOOK_TIMEOUT_MS when longer: a webhook post under way is
// waited for beside the requests), answering the requests left and closing Redis may take this long
// before close-with-grace gives up and exits 1.
const closeMarginMs = 5000

/** How long after a signal the process gives up closing and exits 1 (server.ts). */
export function shutdownDeadlineMs (config: Pick<Config, 'SHUTDOWN_DRAIN_MS' | 'SHUTDOWN_TIMEOUT_MS' | 'PUSH_WEBHOOK_TIMEOUT_MS'>): number {
  return config.SHUTDOWN_DRAIN_MS + Math.max(config.SHUTDOWN_TIMEOUT_MS, config.PUSH_WEBHOOK_TIMEOUT_MS) + closeMarginMs
}

/**
 * Each setting alone is within Node's longest timer, but the shutdown deadline is their sum: beyond it
 * Node ran that timer after 1 ms and a SIGTERM exited 1 at once, with no drain. Refused rather than cut
 * short, so that the drain and SHUTDOWN_TIMEOUT_MS always run as set.
 */
function checkShutdownDeadline (config: Config): void {
  const deadline = shutdownDeadlineMs(config)
  if (deadline <= longestTimerMs) return
  throw new Error(`SHUTDOWN_DRAIN_MS (${config.SHUTDOWN_DRAIN_MS}) + the longer of SHUTDOWN_TIMEOUT_MS (${config.SHUTDOWN_TIMEOUT_MS}) and PUSH_WEBHOOK_TIMEOUT_MS (${config.PUSH_WEBHOOK_TIMEOUT_MS}) + ${closeMarginMs} ms is ${deadline} ms, beyond the longest timer Node runs (${longestTimerMs} ms)`)
}

/**
 * Background work spends a token only while more than the headroom is left: a headroom at or above
 * the bucket's capacity would never let a refresh, a prefetch or a push poll run, and every entry past
 * its freshness would answer stale (budget-low) until CACHE_MAX_STALE_S.
 */
function checkHeadroom (config: Config): void {
  const { capacity } = parseRate(config.UPSTREAM_RATE)
  const tokens = headroomTokens(capacity, config.UPSTREAM_BACKGROUND_HEADROOM)
  if (tokens < capacity) return
  throw new Error(`UPSTREAM_BACKGROUND_HEADROOM=${config.UPSTREAM_BACKGROUND_HEADROOM} (${tokens} tokens) must be below the capacity of UPSTREAM_RATE=${config.UPSTREAM_RATE} (${capacity} tokens): background work runs only while more than the headroom is left, so it would never run`)
}

/**
 * ajv's coercion reads an integer as Number() does: a blank value became 0 (PORT=' ' listened on a
 * random port) and 0x50 or 1e3 became 80 and 1000. A setting that may not be empty passed its minLength
 * when blank, and failed later without its name (HOST=' ' at listen, getaddrinfo ENOTFOUND).
 */
function checkWritten (data: Record<string, string>): void {
  const schemas = ConfigSchema.properties as Record<string, { type?: string, minimum?: number, minLength?: number }>
  for (const [key, value] of Object.entries(data)) {
    const schema = schemas[key] ?? {}
    const digits = (schema.minimum ?? -1) >= 0 ? /^\d+$/ : /^-?\d+$/
    if (schema.type === 'integer' && !digits.test(value)) throw new Error(`${key}: ${JSON.stringify(value)} is not a whole number in decimal digits`)
    if ((schema.minLength ?? 0) > 0 && value.trim() === '') throw new Error(`${key}: ${JSON.stringify(value)} is blank`)
  }
}

function named (key: string, check: () => unknown): void {
  try {
    check()
  } catch (err) {
    const message = (err as Error).message
    throw new Error(message.startsWith(key) ? message : `${key}: ${message}`, { cause: err })
  }
}

/** Defaults of every setting, as a user with an empty environment gets them. */
export function defaultConfig (): Config {
  return loadConfig({})
}
