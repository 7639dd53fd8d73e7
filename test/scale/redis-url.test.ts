// REDIS_URL's forms: what each parses into (passwords, TLS, Sentinel parameters, default ports), what a
// malformed one says at boot, and the client each builds (options checked on the real ioredis objects,
// never connected).
import { test } from 'tap'
import { Cluster, Redis } from 'ioredis'
import { parseRedisUrl, redactRedisUrl } from '../../src/lib/redis-url.js'
import { createRedis } from '../../src/plugins/redis.js'
import { loadConfig } from '../../src/config.js'

test('one server: passed to ioredis as it is', async (t) => {
  t.same(parseRedisUrl('redis://127.0.0.1:6379/2'), { kind: 'single', url: 'redis://127.0.0.1:6379/2' })
  t.same(parseRedisUrl('rediss://:pw@h:6380'), { kind: 'single', url: 'rediss://:pw@h:6380' })
  t.same(parseRedisUrl('/var/run/redis/redis.sock'), { kind: 'single', url: '/var/run/redis/redis.sock' })
  t.same(parseRedisUrl('/var/run/redis/redis.sock?db=3'), { kind: 'single', url: '/var/run/redis/redis.sock?db=3' })
  t.same(parseRedisUrl('redis://h:6379/'), { kind: 'single', url: 'redis://h:6379/' })
  t.same(parseRedisUrl('redis://h'), { kind: 'single', url: 'redis://h' })
})

test('Sentinel: nodes, master name, db, passwords, TLS', async (t) => {
  t.same(parseRedisUrl('redis+sentinel://s1:26380,s2,[::1]:26381/mymaster'), {
    kind: 'sentinel',
    sentinels: [{ host: 's1', port: 26380 }, { host: 's2', port: 26379 }, { host: '::1', port: 26381 }],
    name: 'mymaster',
    db: 0,
    tls: false
  })
  t.same(parseRedisUrl('rediss+sentinel://app:p%40ss%20w@s1:26379/m/3?sentinelPassword=s%26p&sentinelUsername=watch'), {
    kind: 'sentinel',
    sentinels: [{ host: 's1', port: 26379 }],
    name: 'm',
    db: 3,
    tls: true,
    username: 'app',
    password: 'p@ss w',
    sentinelPassword: 's&p',
    sentinelUsername: 'watch'
  })
})

test('Cluster: seed nodes, password, TLS', async (t) => {
  t.same(parseRedisUrl('redis+cluster://:secret@10.0.0.1:7000,10.0.0.2'), {
    kind: 'cluster',
    nodes: [{ host: '10.0.0.1', port: 7000 }, { host: '10.0.0.2', port: 6379 }],
    tls: false,
    password: 'secret'
  })
  t.same(parseRedisUrl('rediss+cluster://c1:7000').kind, 'cluster')
  t.equal((parseRedisUrl('rediss+cluster://c1:7000') as { tls: boolean }).tls, true)
})

test('a malformed REDIS_URL fails at boot, saying what is wrong', async (t) => {
  const bad: Array<[string, RegExp]> = [
    ['http://x', /must be a socket path or start with redis:\/\//],
    ['REDISS://h:6380', /lower-case/],
    ['redis+sentinel://s1:26379', /needs the master name/],
    ['redis+sentinel://s1:26379/m/x', /mastername\/db/],
    ['redis+sentinel://s1:26379/m?tls=true', /unknown parameter "tls"/],
    ['redis+cluster://c1:7000/1', /takes no path/],
    ['redis+cluster://c1:7000?x=1', /takes no parameter/],
    ['redis+cluster://c1:7000,,c2', /empty node/],
    ['redis+cluster://c1:99999', /port out of range/],
    ['redis+cluster://c1:70a0', /malformed node/],
    ['redis+cluster://:%E0%A4%A@c1', /badly escaped password/],
    // ioredis would send SELECT NaN (an unhandled reply error ending the process) and copy every query
    // parameter over the gateway's own options (commandTimeout, enableOfflineQueue).
    ['redis://127.0.0.1:6379/abc', /database "abc" that is not a number/],
    ['redis://127.0.0.1:6379/0/1', /database "0\/1" that is not a number/],
    ['redis://127.0.0.1:6379/0?commandTimeout=60000&enableOfflineQueue=1&bogus=x', /takes no parameter \(got commandTimeout, enableOfflineQueue, bogus\)/],
    ['redis://127.0.0.1:6379?db=abc', /takes no parameter \(got db\)/],
    ['rediss://:pw@h:6380/0?password=other', /takes no parameter \(got password\)/],
    ['redis://h:6379/0#x', /no fragment/],
    ['/var/run/redis/redis.sock?commandTimeout=60000', /unknown parameter "commandTimeout"/],
    ['/var/run/redis/redis.sock?db=x', /database "x" that is not a number/]
  ]
  for (const [url, message] of bad) {
    t.throws(() => parseRedisUrl(url), message, url)
    t.throws(() => loadConfig({ REDIS_URL: url }), message, `loadConfig ${url}`)
  }
  t.throws(() => loadConfig({ REDIS_KEY_PREFIX: 'agw:{x}:' }), /REDIS_KEY_PREFIX/, 'a prefix with braces would be a hash tag')
  t.equal(loadConfig({ REDIS_URL: 'redis+cluster://c1:7000' }).REDIS_URL, 'redis+cluster://c1:7000')
})

test('passwords are redacted for logs', async (t) => {
  t.equal(redactRedisUrl('redis+sentinel://:p@s1:1,s2:2/m?sentinelPassword=x&a=b'), 'redis+sentinel://:***@s1:1,s2:2/m?sentinelPassword=***&a=b')
  t.equal(redactRedisUrl('rediss://user:pw@h:1'), 'rediss://user:***@h:1')
  t.equal(redactRedisUrl('redis://h:1'), 'redis://h:1')
})

// The boot log line names REDIS_URL redacted. The parsers end a password at the last `@` of the
// authority (the URL parser of one server, parseRedisUrl of Sentinel and Cluster, which takes a `/` in
// it as well) and read a `sentinelPassword` whose name is percent-encoded: the redaction stopped at the
// first `@` or `/` and matched the name only as written, so part or all of those passwords was logged.
test('every password a REDIS_URL is read with is redacted, as the parsers end and name it', async (t) => {
  const urls = [
    'redis://:p@ssw0rd@h1:6379',
    'rediss://user:p@5s@w0rd@h1:6379/2',
    'redis+cluster://:p@ssw0rd@c1:7000,c2:7001',
    'redis+sentinel://:pa/ss@s1:26379/mymaster',
    'redis+sentinel://u:a/b@c@s1:26379,s2/mymaster/1?sentinelPassword=sp/1@2',
    'redis+sentinel://s1:26379/m?sentinel%50assword=s3cret&sentinelUsername=su',
    'redis+sentinel://s1:26379/m?sentinelPassword=first&sentinelPassword=second'
  ]
  for (const url of urls) {
    const target = parseRedisUrl(url)
    const secrets: string[] = []
    if (target.kind === 'single') {
      const password = decodeURIComponent(new URL(url).password)
      secrets.push(password)
    } else {
      if (target.password !== undefined) secrets.push(target.password)
      if (target.kind === 'sentinel' && target.sentinelPassword !== undefined) secrets.push(target.sentinelPassword)
    }
    t.ok(secrets.length > 0, `${url}: read with a password`)
    const shown = redactRedisUrl(url)
    for (const secret of secrets) {
      for (const piece of secret.split(/[@/]/).filter((p) => p.length >= 2)) t.notOk(shown.includes(piece), `${url} is logged as ${shown}: no "${piece}" of its password`)
    }
  }
  t.equal(redactRedisUrl('redis+sentinel://u:a/b@c@s1:26379,s2/mymaster/1?sentinelPassword=sp/1@2'), 'redis+sentinel://u:***@s1:26379,s2/mymaster/1?sentinelPassword=***')
  t.equal(redactRedisUrl('redis+sentinel://s1:26379/m?sentinel%50assword=s3cret&sentinelUsername=su'), 'redis+sentinel://s1:26379/m?sentinel%50assword=***&sentinelUsername=su')
  t.equal(redactRedisUrl('redis+sentinel://s1:26379/m?sentinelPassword=first&sentinelPassword=second'), 'redis+sentinel://s1:26379/m?sentinelPassword=***&sentinelPassword=***')
  t.equal(redactRedisUrl('/var/run/redis.sock?db=2'), '/var/run/redis.sock?db=2')
  t.equal(redactRedisUrl('redis://user@h:1'), 'redis://user@h:1', 'a user name alone is no password')
})

test('each form builds its ioredis client with TLS and passwords where asked (not connected)', async (t) => {
  const timeout = { REDIS_COMMAND_TIMEOUT_MS: 700 }
  const single = createRedis({ REDIS_URL: 'rediss://:pw@127.0.0.1:6390', ...timeout })
  t.ok(single instanceof Redis)
  t.equal(single.options.password, 'pw')
  t.ok(single.options.tls, 'rediss: TLS')
  t.equal(single.options.commandTimeout, 700)
  t.equal(single.options.enableOfflineQueue, false)

  const sentinel = createRedis({ REDIS_URL: 'rediss+sentinel://:pw@127.0.0.1:26390/m/2?sentinelPassword=sp', ...timeout })
  t.same(sentinel.options.sentinels, [{ host: '127.0.0.1', port: 26390 }])
  t.equal(sentinel.options.name, 'm')
  t.equal(sentinel.options.db, 2)
  t.equal(sentinel.options.password, 'pw')
  t.equal(sentinel.options.sentinelPassword, 'sp')
  t.same(sentinel.options.tls, {})
  t.same(sentinel.options.sentinelTLS, {})
  t.equal(sentinel.options.enableTLSForSentinelMode, true)
  t.equal(sentinel.options.commandTimeout, 700)

  const cluster = createRedis({ REDIS_URL: 'rediss+cluster://:pw@127.0.0.1:7390,127.0.0.1:7391', ...timeout }) as unknown as Cluster
  t.ok(cluster instanceof Cluster)
  t.ok(cluster.isCluster)
  t.equal(cluster.options.redisOptions?.password, 'pw')
  t.same(cluster.options.redisOptions?.tls, {})
  t.equal(cluster.options.redisOptions?.commandTimeout, 700)
  t.equal(cluster.options.enableOfflineQueue, false)
  t.equal(typeof cluster.options.dnsLookup, 'function', 'TLS: connects to the names in the URL, as certificates name them')

  const plain = createRedis({ REDIS_URL: 'redis+cluster://127.0.0.1:7390', ...timeout }) as unknown as Cluster
  t.equal(plain.options.redisOptions?.tls, undefined, 'no TLS without rediss+')
  for (const c of [single, sentinel]) c.disconnect()
  for (const c of [cluster, plain]) c.disconnect()
})
