// Sandbox defaults and option normalisation, done once at start.
import { ENDPOINT_NAMES, type EndpointName, type SandboxOptions } from './types.js'

export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PREFIX = '/api/'
export const DEFAULT_OBJECTS = 2000
// Records kept as JSON text (~10 kB each); older ones are rebuilt on demand.
export const DEFAULT_RECORD_CACHE = 5000
export const DEFAULT_SEED = 42
// The upstream's REST_FRAMEWORK rates.
export const DEFAULT_USER_RATE = '100/hour'
export const DEFAULT_STAFF_RATE = '100000/hour'
export const DEFAULT_ANON_RATE = '10/hour'
// The client docs speak of tokens issued for 3 to 12 months; 90 days matches their example reply.
export const DEFAULT_TOKEN_TTL_S = 90 * 86400
export const DEFAULT_MAX_OBJECTS_PER_CALL = 50000

export interface Rate {
  text: string
  num: number
  durationS: number
}

// DRF's SimpleRateThrottle.parse_rate: only the first letter of the period counts.
const PERIODS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 }

export function parseRate (text: string): Rate {
  const [numText, period = ''] = text.split('/')
  const num = Number(numText)
  const durationS = PERIODS[period.charAt(0)]
  if (!Number.isInteger(num) || num < 0 || durationS === undefined) {
    throw new Error(`invalid throttle rate "${text}": use <count>/<sec|min|hour|day>`)
  }
  return { text, num, durationS }
}

export interface ResolvedOptions {
  host: string
  port: number
  prefix: string
  objects: number
  recordCache: number
  seed: number
  latencyMs: number
  jitterMs: number
  errorRate: number
  tokenTtlS: number
  userRate: Rate
  staffRate: Rate
  anonRate: Rate
  maxObjectsPerCall: number
  segments: Record<EndpointName, string>
}

function normalisePrefix (prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '')
  return trimmed === '' ? '/' : `/${trimmed}/`
}

function nonNegative (name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new Error(`sandbox option ${name} must be a non-negative number`)
  return value
}

export function resolveOptions (opts: SandboxOptions = {}): ResolvedOptions {
  const segments = Object.fromEntries(ENDPOINT_NAMES.map((name) => {
    const override = opts.paths?.[name]
    return [name, override === undefined ? name : override.replace(/^\/+|\/+$/g, '')]
  })) as Record<EndpointName, string>
  const errorRate = nonNegative('errorRate', opts.errorRate ?? 0)
  if (errorRate > 1) throw new Error('sandbox option errorRate must be between 0 and 1')
  const objects = nonNegative('objects', opts.objects ?? DEFAULT_OBJECTS)
  return {
    host: opts.host ?? DEFAULT_HOST,
    port: opts.port ?? 0,
    prefix: normalisePrefix(opts.prefix ?? DEFAULT_PREFIX),
    objects: Math.floor(objects),
    recordCache: Math.floor(nonNegative('recordCache', opts.recordCache ?? DEFAULT_RECORD_CACHE)),
    seed: opts.seed ?? DEFAULT_SEED,
    latencyMs: nonNegative('latencyMs', opts.latencyMs ?? 0),
    jitterMs: nonNegative('jitterMs', opts.jitterMs ?? 0),
    errorRate,
    tokenTtlS: nonNegative('tokenTtlS', opts.tokenTtlS ?? DEFAULT_TOKEN_TTL_S),
    userRate: parseRate(opts.throttleRate ?? DEFAULT_USER_RATE),
    staffRate: parseRate(opts.staffThrottleRate ?? DEFAULT_STAFF_RATE),
    anonRate: parseRate(opts.anonThrottleRate ?? DEFAULT_ANON_RATE),
    maxObjectsPerCall: Math.floor(nonNegative('maxObjectsPerCall', opts.maxObjectsPerCall ?? DEFAULT_MAX_OBJECTS_PER_CALL)),
    segments
  }
}

type Env = Record<string, string | undefined>

function numberFrom (env: Env, name: string): number | undefined {
  const text = env[name]
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got "${text}"`)
  return value
}

function textFrom (env: Env, name: string): string | undefined {
  const text = env[name]
  return text === undefined || text === '' ? undefined : text
}

// Each SANDBOX_* variable, the option it sets, and whether it is a number.
const KNOBS: Array<[string, keyof SandboxOptions, 'number' | 'text']> = [
  ['SANDBOX_HOST', 'host', 'text'],
  ['SANDBOX_PORT', 'port', 'number'],
  ['SANDBOX_OBJECTS', 'objects', 'number'],
  ['SANDBOX_SEED', 'seed', 'number'],
  ['SANDBOX_LATENCY_MS', 'latencyMs', 'number'],
  ['SANDBOX_JITTER_MS', 'jitterMs', 'number'],
  ['SANDBOX_ERROR_RATE', 'errorRate', 'number'],
  ['SANDBOX_TOKEN_TTL_S', 'tokenTtlS', 'number'],
  ['SANDBOX_THROTTLE_RATE', 'throttleRate', 'text'],
  ['SANDBOX_STAFF_THROTTLE_RATE', 'staffThrottleRate', 'text'],
  ['SANDBOX_ANON_THROTTLE_RATE', 'anonThrottleRate', 'text']
]

/**
 * The SANDBOX_* knobs, read by `npm run sandbox` and by the gateway's embedded sandbox. Unset knobs stay
 * undefined, which resolveOptions reads as "use the default". Each set knob goes through resolveOptions'
 * checks on its own here, so a value out of range is refused naming its variable, not its option.
 */
export function sandboxOptionsFromEnv (env: Env): SandboxOptions {
  const options: SandboxOptions = {}
  for (const [name, option, kind] of KNOBS) {
    const value = kind === 'number' ? numberFrom(env, name) : textFrom(env, name)
    if (value === undefined) continue
    const one = { [option]: value }
    try {
      resolveOptions(one)
    } catch (err) {
      throw new Error(`${name}=${String(value)}: ${(err as Error).message}`, { cause: err })
    }
    Object.assign(options, one)
  }
  return options
}
