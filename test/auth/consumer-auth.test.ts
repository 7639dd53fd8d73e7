// Authentication, scopes, lists and limits through the real app, with test routes declaring
// `config: { scope, list, units, dialect }` the way the v1 and compat routes do.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import { SCOPES } from '../../src/consumers/scopes.js'
import { hashKey } from '../../src/consumers/keys.js'
import { FIXTURE_IDS, startTestSandbox, testConfig, TEST_REDIS_URL } from '../helper.js'
import { bearer, buildAuthTestApp, consumersFile, makeConsumer, registerTestRoutes, uniquePrefix, writeConsumers } from '../consumer-helper.js'

async function rejections (app: FastifyInstance, consumer: string, kind: string): Promise<number> {
  const metric = await app.metrics.limitRejections.get()
  return metric.values.find((v) => v.labels.consumer === consumer && v.labels.kind === kind)?.value ?? 0
}

test('authentication, scopes and lists', async (t) => {
  const sandbox = await startTestSandbox(t)
  const reader = makeConsumer('reader')
  const mookodi = makeConsumer('mookodi-bot', { scopes: ['read', 'write:custom-lists'], lists: ['mookodi'] })
  const writer = makeConsumer('writer', { scopes: [...SCOPES], lists: ['*'] })
  const off = makeConsumer('off', { disabled: true })
  const file = consumersFile(t, [reader, mookodi, writer, off])
  const { app, logs } = await buildAuthTestApp(t, { upstream: sandbox, config: { CONSUMERS_FILE: file }, register: registerTestRoutes })

  t.test('v1: 401 for missing, malformed, unknown and disabled keys, with WWW-Authenticate: Bearer', async (t) => {
    const cases: Array<[string, Record<string, string>, RegExp]> = [
      ['no credentials', {}, /^Bearer realm="atlas-gateway"$/],
      ['another scheme', { authorization: `Token ${reader.key}` }, /^Bearer realm="atlas-gateway"$/],
      ['Bearer without a key', { authorization: 'Bearer' }, /^Bearer .*error="invalid_token"/],
      ['malformed key', bearer('abc'), /^Bearer .*error="invalid_token"/],
      ['uppercase key', bearer(reader.key.toUpperCase()), /error="invalid_token"/],
      ['unknown key', bearer('0'.repeat(40)), /error="invalid_token"/],
      ['unknown X-API-Key', { 'x-api-key': '1'.repeat(40) }, /error="invalid_token"/],
      ['disabled consumer', bearer(off.key), /error="invalid_token"/]
    ]
    for (const [name, headers, challenge] of cases) {
      const res = await app.inject({ method: 'GET', url: '/t/read', headers })
      t.equal(res.statusCode, 401, name)
      t.match(res.headers['www-authenticate'], challenge, `${name}: challenge`)
      t.match(res.headers['content-type'], /^application\/problem\+json/)
      t.match(res.json(), { status: 401, code: 'GW_UNAUTHENTICATED', detail: /key/ }, `${name}: problem`)
    }
  })

  t.test('v1: Bearer (any case) and X-API-Key both authenticate', async (t) => {
    for (const headers of [bearer(reader.key), { authorization: `bearer ${reader.key}` }, { 'x-api-key': reader.key }]) {
      const res = await app.inject({ method: 'GET', url: '/t/read', headers })
      t.equal(res.statusCode, 200)
      t.equal(res.headers['ratelimit-policy'], '"requests";q=600;w=60', 'the policy header')
      t.match(res.headers.ratelimit, /^"requests";r=\d+;t=\d+$/, 'the current state header')
    }
  })

  t.test('routes without a scope are untouched', async (t) => {
    const res = await app.inject({ method: 'GET', url: '/t/public' })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['ratelimit-policy'], undefined)
    t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  })

  t.test('v1: 403 names the missing scope; a read-only key cannot write anything', async (t) => {
    for (const [method, url, scope] of [['POST', '/t/vra', 'write:vra'], ['POST', '/t/detection', 'write:detection-list'], ['PUT', '/t/lists/mookodi', 'write:custom-lists']] as const) {
      const res = await app.inject({ method, url, headers: bearer(reader.key) })
      t.equal(res.statusCode, 403, `${method} ${url}`)
      t.equal(res.headers['www-authenticate'], undefined)
      t.match(res.json(), { code: 'GW_FORBIDDEN', detail: new RegExp(`"${scope}"`) })
    }
  })

  t.test('v1: a key may write only its own custom lists', async (t) => {
    t.equal((await app.inject({ method: 'PUT', url: '/t/lists/mookodi', headers: bearer(mookodi.key) })).statusCode, 200)
    const other = await app.inject({ method: 'PUT', url: '/t/lists/vra', headers: bearer(mookodi.key) })
    t.equal(other.statusCode, 403)
    t.match(other.json(), { code: 'GW_FORBIDDEN', detail: /custom list "vra"/ })
    t.equal((await app.inject({ method: 'POST', url: '/t/vra', headers: bearer(mookodi.key) })).statusCode, 403)
    for (const url of ['/t/lists/vra', '/t/lists/anything']) {
      t.equal((await app.inject({ method: 'PUT', url, headers: bearer(writer.key) })).statusCode, 200, `"*" allows ${url}`)
    }
    t.equal((await app.inject({ method: 'POST', url: '/t/vra', headers: bearer(writer.key) })).statusCode, 200)
    t.equal((await app.inject({ method: 'POST', url: '/t/detection', headers: bearer(writer.key) })).statusCode, 200)
  })

  t.test('compat: the upstream\'s exact 401 and 403 replies', async (t) => {
    const unknown = '0'.repeat(40)
    const cases: Array<[string, string, Record<string, string>, string]> = [
      ['nothing', '/compat/read/', {}, 'Authentication credentials were not provided.'],
      ['Bearer is not a compat scheme', '/compat/read/', bearer(reader.key), 'Authentication credentials were not provided.'],
      ['unknown key', '/compat/read/', { authorization: `Token ${unknown}` }, 'Invalid token.'],
      ['disabled consumer', '/compat/read/', { authorization: `Token ${off.key}` }, 'Invalid token.'],
      ['keyword alone', '/compat/read/', { authorization: 'Token' }, 'Invalid token header. No credentials provided.'],
      ['spaces', '/compat/read/', { authorization: 'Token abc def' }, 'Invalid token header. Token string should not contain spaces.'],
      ['non-UTF-8 bytes', '/compat/read/', { authorization: 'Token \u00e9\u00ff' }, 'Invalid token header. Token string should not contain invalid characters.'],
      ['?token= bad format', '/compat/read/?token=abc-def', {}, 'Invalid token format.'],
      ['?token= unknown', `/compat/read/?token=${unknown}`, {}, 'Invalid token.'],
      ['a bad header wins over a good ?token=', `/compat/read/?token=${reader.key}`, { authorization: `Token ${unknown}` }, 'Invalid token.']
    ]
    for (const [name, url, headers, detail] of cases) {
      const res = await app.inject({ method: 'GET', url, headers })
      t.equal(res.statusCode, 401, name)
      t.equal(res.headers['www-authenticate'], 'Token', `${name}: challenge`)
      t.equal(res.headers['content-type'], 'application/json', `${name}: content type`)
      t.equal(res.body, JSON.stringify({ detail }), `${name}: body`)
    }
    for (const [url, headers] of [['/compat/read/', { authorization: `Token ${reader.key}` }], ['/compat/read/', { authorization: `token ${reader.key}` }], [`/compat/read/?token=${reader.key}`, {}]] as const) {
      t.equal((await app.inject({ method: 'GET', url, headers })).statusCode, 200, `accepted: ${url} ${JSON.stringify(headers).slice(0, 20)}`)
    }
    const forbidden = await app.inject({ method: 'POST', url: '/compat/vra/', headers: { authorization: `Token ${reader.key}` } })
    t.equal(forbidden.statusCode, 403)
    t.equal(forbidden.headers['www-authenticate'], undefined)
    t.equal(forbidden.headers['content-type'], 'application/json')
    t.equal(forbidden.body, '{"detail":"You do not have permission to perform this action."}')
  })

  t.test('compat: a key may write only its own custom lists (the list is in the body)', async (t) => {
    const form = { authorization: `Token ${mookodi.key}`, 'content-type': 'application/x-www-form-urlencoded' }
    const salt = app.lists.resolveCustom('salt').id
    const own = app.lists.resolveCustom('mookodi').id
    sandbox.resetCalls()
    for (const endpoint of ['objectgroups', 'objectgroupsdelete']) {
      const res = await app.inject({ method: 'POST', url: `/atlas/api/${endpoint}/`, headers: form, payload: `objectid=${FIXTURE_IDS.A}&objectgroupid=${salt}` })
      t.equal(res.statusCode, 403, `${endpoint} on salt`)
      t.equal(res.body, '{"detail":"You do not have permission to perform this action."}')
    }
    t.equal(sandbox.calls.get('objectgroups') ?? 0, 0, 'nothing sent upstream')
    t.equal(sandbox.calls.get('objectgroupsdelete') ?? 0, 0)
    const allowed = await app.inject({ method: 'POST', url: '/atlas/api/objectgroups/', headers: form, payload: `objectid=${FIXTURE_IDS.A}&objectgroupid=${own}` })
    t.equal(allowed.statusCode, 201, 'its own list')
  })

  t.test('keys and their hashes never reach the logs', async (t) => {
    await app.inject({ method: 'GET', url: `/compat/read/?token=${writer.key}` })
    await app.inject({ method: 'GET', url: '/t/read', headers: { 'x-api-key': mookodi.key } })
    const text = logs()
    t.ok(text.length > 0, 'logs were captured')
    for (const c of [reader, mookodi, writer, off]) {
      t.notOk(text.includes(c.key), `${c.entry.id}: key not logged`)
      t.notOk(text.includes(hashKey(c.key)), `${c.entry.id}: hash not logged`)
    }
  })
})

test('request rate: the (max+1)th request is 429 with Retry-After, per consumer, in both dialects', async (t) => {
  const slow = makeConsumer('slow', { rate: '3/minute' })
  const other = makeConsumer('other', { rate: '3/minute' })
  const { app, config } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [slow, other]) }, register: registerTestRoutes })
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'GET', url: '/t/read', headers: bearer(slow.key) })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['ratelimit-policy'], '"requests";q=3;w=60')
    t.match(res.headers.ratelimit, new RegExp(`^"requests";r=${2 - i};t=\\d+$`))
  }
  const limited = await app.inject({ method: 'GET', url: '/t/read', headers: bearer(slow.key) })
  t.equal(limited.statusCode, 429)
  t.match(limited.json(), { code: 'GW_RATE_LIMITED', status: 429 })
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`)
  t.match(limited.headers.ratelimit, /^"requests";r=0;t=\d+$/)
  t.equal(await rejections(app, 'slow', 'rate'), 1, 'counted in gateway_limit_rejections_total')

  const compat = await app.inject({ method: 'GET', url: '/compat/read/', headers: { authorization: `Token ${slow.key}` } })
  t.equal(compat.statusCode, 429)
  t.equal(compat.headers['content-type'], 'application/json')
  const seconds = Number(compat.headers['retry-after'])
  t.equal(compat.body, JSON.stringify({ detail: `Request was throttled. Expected available in ${seconds} second${seconds === 1 ? '' : 's'}.` }))

  t.equal((await app.inject({ method: 'GET', url: '/t/read', headers: bearer(other.key) })).statusCode, 200, 'other consumers are unaffected (keyed by consumer, not IP)')

  if (app.redis !== null) {
    // EXISTS, not KEYS: on a Redis Cluster a KEYS reaches one node only (test/scale runs this file there).
    t.equal(await app.redis.exists(`${config.REDIS_KEY_PREFIX}rate:slow`), 1, 'counters live under REDIS_KEY_PREFIX')
  }
})

test('two gateway instances on one Redis allow exactly max requests in total', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const sandbox = await startTestSandbox(t)
  const shared = makeConsumer('shared', { rate: '5/minute' })
  const config = { CONSUMERS_FILE: consumersFile(t, [shared]), REDIS_KEY_PREFIX: uniquePrefix('replicas') }
  const one = await buildAuthTestApp(t, { upstream: sandbox, config, register: registerTestRoutes })
  const two = await buildAuthTestApp(t, { upstream: sandbox, config, register: registerTestRoutes })
  const statuses: number[] = []
  for (let i = 0; i < 12; i++) {
    const app = i % 2 === 0 ? one.app : two.app
    statuses.push((await app.inject({ method: 'GET', url: '/t/read', headers: bearer(shared.key) })).statusCode)
  }
  t.equal(statuses.filter((s) => s === 200).length, 5, `exactly max succeed: ${statuses.join(',')}`)
  t.equal(statuses.filter((s) => s === 429).length, 7)
  // Concurrency as well: a burst split across both instances.
  const burst = makeConsumer('burst', { rate: '10/minute' })
  const burstConfig = { CONSUMERS_FILE: consumersFile(t, [burst]), REDIS_KEY_PREFIX: uniquePrefix('burst') }
  const a = await buildAuthTestApp(t, { upstream: sandbox, config: burstConfig, register: registerTestRoutes })
  const b = await buildAuthTestApp(t, { upstream: sandbox, config: burstConfig, register: registerTestRoutes })
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) =>
    (i % 2 === 0 ? a.app : b.app).inject({ method: 'GET', url: '/t/read', headers: bearer(burst.key) })))
  t.equal(results.filter((r) => r.statusCode === 200).length, 10)
})

// A rate whose period a reload shortens (3/hour to 3/minute): the window already running ends within the
// new period. It kept the old window's end, so the 429 said Retry-After 3600 under a policy of w=60.
for (const redis of [true, false]) {
  test(`a reload that shortens a rate's period cuts the running window to it (${redis ? 'Redis' : 'memory'})`, { skip: redis && TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
    const bot = makeConsumer('bot', { rate: '3/hour' })
    const file = consumersFile(t, [bot])
    const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: file, ...(redis ? {} : { REDIS_URL: '' }) }, register: registerTestRoutes })
    const read = async () => await app.inject({ url: '/t/read', headers: bearer(bot.key) })
    for (let i = 0; i < 3; i++) t.equal((await read()).statusCode, 200)
    t.equal((await read()).statusCode, 429)
    writeConsumers(file, [{ ...bot.entry, rate: '3/minute' }])
    t.same(await app.consumers.reload(), { ok: true })
    const limited = await read()
    t.equal(limited.statusCode, 429, 'the 3 requests of the running window still count')
    t.equal(limited.headers['ratelimit-policy'], '"requests";q=3;w=60')
    const retryAfter = Number(limited.headers['retry-after'])
    t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter} within the new 60 s window`)
    const reset = Number(/;t=(\d+)$/.exec(String(limited.headers.ratelimit))?.[1])
    t.ok(reset >= 1 && reset <= 60, `RateLimit t=${reset} within the new 60 s window`)
  })
}

// Limits lowered by a reload of every replica: what a replica leased under the old limits goes back to
// Redis as its reload succeeds, not when that replica next charges the consumer. Kept, replica 2's lease
// of 1,000 units (1 spent) made replica 1 refuse the consumer outright under a daily limit cut to 500
// ("0 of 500 are left", /v1/me units_today 1000) until replica 2 served it again; the request rate and
// the upstream share leased the same way.
test('a reload that lowers limits gives back every replica\'s leases at once', { skip: TEST_REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const bot = makeConsumer('bot', { daily_objects: 100_000, rate: '100000/hour', upstream_share: 100_000 })
  const file = consumersFile(t, [bot])
  const config = { CONSUMERS_FILE: file, REDIS_KEY_PREFIX: uniquePrefix('reload-leases') }
  const one = (await buildAuthTestApp(t, { config, register: registerTestRoutes })).app
  const two = (await buildAuthTestApp(t, { config, register: registerTestRoutes })).app
  const batch = async (app: FastifyInstance, n: number) => await app.inject({
    method: 'POST', url: '/t/batch', headers: bearer(bot.key), payload: { ids: Array.from({ length: n }, (_, i) => String(i)) }
  })
  const shareOf = async (app: FastifyInstance): Promise<boolean> => {
    const consumer = app.consumers.get('bot')
    if (consumer === undefined) return false
    return await app.quota.takeUpstreamShare(consumer).then(() => true, () => false)
  }
  // Replica 2 spends one unit, one request and one upstream call, leasing a block of 1,000 of each.
  t.equal((await batch(two, 1)).statusCode, 200)
  t.equal(await shareOf(two), true)
  writeConsumers(file, [{ ...bot.entry, daily_objects: 500, rate: '500/hour', upstream_share: 500 }])
  t.same(await one.consumers.reload(), { ok: true })
  t.same(await two.consumers.reload(), { ok: true })

  const me = await one.inject({ url: '/v1/me', headers: bearer(bot.key) })
  t.equal(me.statusCode, 200, `replica 1 admits the consumer: ${me.body}`)
  t.match(me.json(), {
    usage: { requests_this_window: 2, units_today: 1, upstream_share_used: 1 },
    limits: { daily_objects: 500 }
  }, 'replica 2 gave back what it had not spent: the batch and this request, one unit, one upstream call')
  let admitted = 0
  for (let i = 0; i < 10; i++) if ((await batch(one, 1)).statusCode === 200) admitted++
  t.equal(admitted, 10, 'replica 1 admits the consumer at once')
  t.equal(await shareOf(one), true, 'and takes from its upstream share')
  const over = await batch(one, 490)
  t.equal(over.statusCode, 429, 'and refuses what would cross the new limit')
  t.match(over.json(), { detail: /; 489 of 500 are left today/ })
  t.equal((await batch(one, 489)).statusCode, 200, 'the last 489 units')
})

test('max_batch and daily object units', async (t) => {
  const batcher = makeConsumer('batcher', { daily_objects: 10, max_batch: 6 })
  // A minute before a UTC midnight, on the app's clock: the test does not depend on when it runs.
  const now = Date.UTC(2026, 10, 30, 23, 59, 0)
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [batcher]) }, deps: { now: () => now }, register: registerTestRoutes })
  const batch = (n: number) => app.inject({
    method: 'POST', url: '/t/batch', headers: bearer(batcher.key), payload: { ids: Array.from({ length: n }, (_, i) => String(i)) }
  })
  const tooBig = await batch(7)
  t.equal(tooBig.statusCode, 413)
  t.match(tooBig.json(), { code: 'GW_PAYLOAD_TOO_LARGE', detail: /at most 6/ })
  t.equal(await rejections(app, 'batcher', 'max_batch'), 1)

  t.equal((await batch(6)).statusCode, 200)
  const over = await batch(5)
  t.equal(over.statusCode, 429, 'a batch that would cross the daily budget is refused')
  t.match(over.json(), { code: 'GW_QUOTA_EXHAUSTED', detail: /4 of 10 are left today/ })
  t.equal(over.headers['retry-after'], '60', 'Retry-After runs to the next UTC midnight')
  t.equal(await rejections(app, 'batcher', 'daily_objects'), 1)
  t.equal((await batch(4)).statusCode, 200, 'the refused batch charged nothing: 4 units were still left')
  t.equal((await batch(1)).statusCode, 429)

  const compatBig = await app.inject({ method: 'POST', url: '/compat/batch/?n=7', headers: { authorization: `Token ${batcher.key}` } })
  t.equal(compatBig.statusCode, 413)
  t.equal(compatBig.headers['content-type'], 'application/json')
  t.match(compatBig.json(), { detail: /at most 6/ })

  const compat = await app.inject({ method: 'POST', url: '/compat/batch/?n=1', headers: { authorization: `Token ${batcher.key}` } })
  t.equal(compat.statusCode, 429)
  t.match(compat.body, /^\{"detail":"Request was throttled\. Expected available in \d+ seconds?\."\}$/)

  const me = await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(batcher.key) })
  t.equal(me.json().usage.units_today, 10)
})

test('a bad consumers file fails boot, naming the entry and the field', async (t) => {
  const sandbox = await startTestSandbox(t)
  const file = consumersFile(t, [{ id: 'broken', key_sha256: 'xyz' }])
  const config = testConfig({ ATLAS_BASE_URL: sandbox.baseUrl, ATLAS_TOKEN: sandbox.tokens.write, CONSUMERS_FILE: file, LOG_LEVEL: 'silent' })
  await t.rejects(buildApp(config), /consumers\[0\] \(id "broken"\): field "key_sha256"/)
})

test('no consumers file: the demo consumer\'s key is logged once, and only once', async (t) => {
  const { app, logs } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: '' }, register: registerTestRoutes })
  const key = app.consumers.demoKey ?? ''
  t.match(key, /^[0-9a-f]{40}$/)
  const line = logs().split('\n').find((l) => l.includes('demo consumer key'))
  t.match(JSON.parse(line ?? '{}'), { level: 30, msg: `demo consumer key: ${key} (in memory, all scopes; set CONSUMERS_FILE for real consumers)` })
  for (const url of ['/t/read', '/t/lists/anything']) {
    const res = await app.inject({ method: url === '/t/read' ? 'GET' : 'PUT', url, headers: bearer(key) })
    t.equal(res.statusCode, 200, `demo may ${url}`)
  }
  t.equal(logs().split(key).length - 1, 1, 'the key appears in exactly one log line')
})
