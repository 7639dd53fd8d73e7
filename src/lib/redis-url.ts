// REDIS_URL's three forms, parsed into what ioredis needs (README "Settings" documents them):
//   redis://[[user]:password@]host[:port][/db]            one server (rediss:// with TLS), as ioredis reads it
//   /path/to/redis.sock[?db=N]                             one server over a Unix socket
//   redis+sentinel://[[user]:password@]host:port[,host:port…]/mastername[/db][?sentinelPassword=…&sentinelUsername=…]
//   redis+cluster://[[user]:password@]host:port[,host:port…]
// The password is the data nodes' (the master and replicas, or every cluster node); a Sentinel's own
// password, if it has one, is the `sentinelPassword` parameter. `rediss+sentinel://` and
// `rediss+cluster://` use TLS to every server (Sentinels included); the CA comes from the system or
// NODE_EXTRA_CA_CERTS. Nothing is accepted silently: an unknown parameter or a malformed node fails.

export interface RedisNode {
  host: string
  port: number
}

interface Credentials {
  username?: string
  password?: string
  tls: boolean
}

export type RedisTarget =
  | { kind: 'single', url: string }
  | ({ kind: 'sentinel', sentinels: RedisNode[], name: string, db: number, sentinelUsername?: string, sentinelPassword?: string } & Credentials)
  | ({ kind: 'cluster', nodes: RedisNode[] } & Credentials)

const SENTINEL_PORT = 26379
const REDIS_PORT = 6379
const SCHEME = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/(.*)$/s
const SENTINEL_PARAMS = new Set(['sentinelPassword', 'sentinelUsername'])

function fail (why: string): never {
  throw new Error(`REDIS_URL ${why}`)
}

function decode (text: string, what: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return fail(`has a badly escaped ${what}`)
  }
}

/** `host:port`, `[v6]:port` or a bare host (default port). */
function parseNode (text: string, defaultPort: number): RedisNode {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/@,]+))(?::(\d{1,5}))?$/.exec(text)
  if (match === null) return fail(`has a malformed node "${text}" (host:port)`)
  const port = match[3] === undefined ? defaultPort : Number(match[3])
  if (port < 1 || port > 65535) return fail(`has a node port out of range in "${text}"`)
  return { host: (match[1] ?? match[2]) as string, port }
}

// ioredis copies every query parameter of a one-server URL into its options, where it would override
// the gateway's own (commandTimeout, enableOfflineQueue: the fail-fast settings), and sends the path as
// the SELECT argument unchecked, so /abc ends the process with an unhandled reply error.
/** redis://… or rediss://… to one server: a database of digits at most, no parameter. */
function parseSingle (url: string): RedisTarget {
  if (!URL.canParse(url)) return fail('is not a valid URL')
  const parsed = new URL(url)
  // Only the keys are named: a value may be a password.
  if (url.includes('?')) return fail(`of one server takes no parameter (got ${[...parsed.searchParams.keys()].join(', ') || '?'})`)
  if (url.includes('#')) return fail('of one server takes no fragment (#)')
  if (!/^\/?(\d+)?$/.test(parsed.pathname)) return fail(`of one server has a database "${parsed.pathname.slice(1)}" that is not a number (redis://host:port/db)`)
  return { kind: 'single', url }
}

/** A Unix socket path, as ioredis reads it; `?db=N` is the only parameter. */
function parseSocket (url: string): RedisTarget {
  const queryAt = url.indexOf('?')
  if (queryAt === -1) return { kind: 'single', url }
  for (const [key, value] of new URLSearchParams(url.slice(queryAt + 1))) {
    if (key !== 'db') return fail(`has an unknown parameter "${key}" (a socket path takes only db)`)
    if (!/^\d+$/.test(value)) return fail(`has a database "${value}" that is not a number`)
  }
  return { kind: 'single', url }
}

/** Throws a message naming what is wrong (config.ts reports it at boot); '' is not a target. */
export function parseRedisUrl (url: string): RedisTarget {
  if (url.startsWith('/')) return parseSocket(url)
  const scheme = SCHEME.exec(url)
  if (scheme === null) return fail('must be a socket path or start with redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster:// (lower-case)')
  const kind = scheme[2]
  if (kind === undefined) return parseSingle(url)
  const tls = scheme[1] === 'rediss'
  const rest = scheme[3] as string
  const queryAt = rest.indexOf('?')
  const beforeQuery = queryAt === -1 ? rest : rest.slice(0, queryAt)
  const params = new URLSearchParams(queryAt === -1 ? '' : rest.slice(queryAt + 1))
  const slash = beforeQuery.indexOf('/', beforeQuery.lastIndexOf('@') + 1)
  const authority = slash === -1 ? beforeQuery : beforeQuery.slice(0, slash)
  const path = slash === -1 ? '' : beforeQuery.slice(slash + 1)
  const at = authority.lastIndexOf('@')
  const credentials: Credentials = { tls }
  if (at !== -1) {
    const userinfo = authority.slice(0, at)
    const colon = userinfo.indexOf(':')
    const username = decode(colon === -1 ? userinfo : userinfo.slice(0, colon), 'username')
    const password = colon === -1 ? '' : decode(userinfo.slice(colon + 1), 'password')
    if (username !== '') credentials.username = username
    if (password !== '') credentials.password = password
  }
  const hosts = authority.slice(at + 1).split(',')
  if (hosts.some((h) => h === '')) return fail('lists an empty node')
  if (kind === 'cluster') {
    if (path !== '') return fail('of a cluster takes no path (a cluster has only database 0)')
    if ([...params.keys()].length > 0) return fail(`of a cluster takes no parameter (got ${[...params.keys()].join(', ')})`)
    return { kind: 'cluster', nodes: hosts.map((h) => parseNode(h, REDIS_PORT)), ...credentials }
  }
  const [name = '', db = '0', ...extra] = path.split('/')
  if (name === '') return fail('of a Sentinel setup needs the master name as its path (redis+sentinel://host:port/mymaster)')
  if (extra.length > 0 || !/^\d+$/.test(db)) return fail('of a Sentinel setup has a path of /mastername or /mastername/db')
  for (const key of params.keys()) {
    if (!SENTINEL_PARAMS.has(key)) return fail(`has an unknown parameter "${key}" (known: ${[...SENTINEL_PARAMS].join(', ')})`)
  }
  const sentinelPassword = params.get('sentinelPassword')
  const sentinelUsername = params.get('sentinelUsername')
  return {
    kind: 'sentinel',
    sentinels: hosts.map((h) => parseNode(h, SENTINEL_PORT)),
    name: decode(name, 'master name'),
    db: Number(db),
    ...credentials,
    ...(sentinelPassword === null ? {} : { sentinelPassword }),
    ...(sentinelUsername === null ? {} : { sentinelUsername })
  }
}

/**
 * The URL with every password replaced by `***`, for logs: the userinfo's, which runs from its first `:`
 * to the authority's last `@` (where the URL parser, for one server, and parseRedisUrl end it: it may hold
 * `@`, and for Sentinel and Cluster `/`), and every `sentinelPassword` parameter, named as
 * URLSearchParams reads it (`sentinel%50assword` too).
 */
export function redactRedisUrl (url: string): string {
  // Any scheme: what is logged may not have been validated.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)
  if (scheme === null) return url
  const start = scheme[0].length
  const queryAt = url.indexOf('?', start)
  const end = queryAt === -1 ? url.length : queryAt
  const at = url.lastIndexOf('@', end - 1)
  const colon = url.indexOf(':', start)
  const head = at >= start && colon !== -1 && colon < at ? `${url.slice(0, colon + 1)}***${url.slice(at, end)}` : url.slice(0, end)
  if (queryAt === -1) return head
  const pairs = url.slice(queryAt + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=')
    return eq !== -1 && new URLSearchParams(pair).keys().next().value === 'sentinelPassword' ? `${pair.slice(0, eq)}=***` : pair
  })
  return `${head}?${pairs.join('&')}`
}
