// The admin routes need the `admin` scope, fail closed like every other route, and the consumers
// listing shows no key and no hash.
import { test } from 'tap'
import { hashKey } from '../../../src/consumers/keys.js'
import { bearer, buildAuthTestApp, consumersFile, makeConsumer } from '../../consumer-helper.js'

const ADMIN_ROUTES = ['/v1/admin/audit', '/v1/admin/usage?month=2026-11', '/v1/admin/consumers']

test('admin routes: 401 without a key, 403 for every non-admin key, 200 for admin', async (t) => {
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const reader = makeConsumer('reader')
  const writer = makeConsumer('writer', { scopes: ['read', 'write:vra', 'write:custom-lists', 'write:detection-list'], lists: ['*'] })
  const expiredAdmin = makeConsumer('old-ops', { scopes: ['admin'], expires: '2020-01-01' })
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [admin, reader, writer, expiredAdmin]) } })
  for (const route of app.routeTable.filter((r) => r.url.startsWith('/v1/admin/'))) {
    t.equal(route.protection, 'admin', `${route.method} ${route.url} declares the admin scope`)
  }
  for (const url of ADMIN_ROUTES) {
    t.equal((await app.inject({ url })).statusCode, 401, `${url}: no key`)
    for (const who of [reader, writer]) {
      const res = await app.inject({ url, headers: bearer(who.key) })
      t.equal(res.statusCode, 403, `${url}: ${who.entry.id} is refused`)
      t.match(res.json(), { code: 'GW_FORBIDDEN', detail: /scope "admin"/ })
    }
    t.equal((await app.inject({ url, headers: bearer(expiredAdmin.key) })).statusCode, 401, `${url}: an expired admin key`)
    const ok = await app.inject({ url, headers: bearer(admin.key) })
    t.equal(ok.statusCode, 200, `${url}: admin`)
  }
  // Admin grants nothing else.
  t.equal((await app.inject({ url: '/v1/vra/todo', headers: bearer(admin.key) })).statusCode, 403)
})

test('GET /v1/admin/consumers: limits, expiry and last use, never a key or a hash', async (t) => {
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const bot = makeConsumer('bot', { expires: '2026-12-31', rate: '100/minute', key_sha256: [] })
  const second = makeConsumer('bot-second')
  // Two keys for one consumer (a rotation).
  bot.entry.key_sha256 = [hashKey(bot.key), hashKey(second.key)]
  const { app } = await buildAuthTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [admin, bot]) },
    deps: { now: () => Date.parse('2026-12-25T12:00:00Z') }
  })
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(second.key) })).statusCode, 200)
  const res = await app.inject({ url: '/v1/admin/consumers', headers: bearer(admin.key) })
  t.equal(res.statusCode, 200)
  const { consumers } = res.json() as { consumers: Array<Record<string, unknown>> }
  t.match(consumers.find((c) => c.id === 'bot'), {
    name: 'bot', scopes: ['read'], rate: '100/minute', expires: '2026-12-31', days_left: 7, is_expired: false, disabled: false, last_used: /^\d{4}-\d{2}-\d{2}T/
  })
  t.match(consumers.find((c) => c.id === 'ops'), { expires: null, days_left: null, last_used: null })
  for (const key of [admin.key, bot.key, second.key]) {
    t.notOk(res.body.includes(key), 'no key')
    t.notOk(res.body.includes(hashKey(key)), 'no hash')
    t.notOk(res.body.includes(hashKey(key).slice(0, 12)), 'not even a hash prefix')
  }
})
