import { test } from 'tap'
import { hashKey } from '../../../src/consumers/keys.js'
import { bearer, buildAuthTestApp, consumersFile, makeConsumer } from '../../consumer-helper.js'

test('GET /v1/me: identity, scopes, lists, limits and usage, never the key', async (t) => {
  const bot = makeConsumer('mookodi-bot', {
    name: 'Mookodi follow-up',
    scopes: ['read', 'write:custom-lists'],
    lists: ['mookodi'],
    rate: '100/hour',
    daily_objects: 5000,
    max_batch: 200,
    upstream_share: 7
  })
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [bot]) } })
  const consumer = app.consumers.get('mookodi-bot')
  if (consumer === undefined) throw new Error('consumer not loaded')
  await app.quota.takeUpstreamShare(consumer)

  await app.inject({ method: 'GET', url: '/v1/me', headers: bearer(bot.key) })
  const res = await app.inject({ method: 'GET', url: '/v1/me', headers: { 'x-api-key': bot.key } })
  t.equal(res.statusCode, 200)
  t.strictSame(res.json(), {
    id: 'mookodi-bot',
    name: 'Mookodi follow-up',
    scopes: ['read', 'write:custom-lists'],
    lists: ['mookodi'],
    limits: { rate: '100/hour', daily_objects: 5000, max_batch: 200, upstream_share: 7 },
    expires: null,
    days_left: null,
    usage: { requests_this_window: 2, units_today: 0, upstream_share_used: 1 }
  })
  t.notOk(res.body.includes(bot.key), 'no key')
  t.notOk(res.body.includes(hashKey(bot.key)), 'no hash')
  t.equal(res.headers['ratelimit-policy'], '"requests";q=100;w=3600')
})

test('GET /v1/me without a key is a 401 problem', async (t) => {
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [makeConsumer('x')]) } })
  const res = await app.inject({ method: 'GET', url: '/v1/me' })
  t.equal(res.statusCode, 401)
  t.match(res.headers['www-authenticate'], /^Bearer /)
  t.match(res.json(), { code: 'GW_UNAUTHENTICATED', status: 401, request_id: String })
})

test('GET /v1/me is documented in the OpenAPI document', async (t) => {
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [makeConsumer('x')]) } })
  const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  t.ok(doc.paths['/v1/me']?.get, 'path present')
  t.ok(doc.paths['/v1/me'].get.responses['200'], '200 schema')
  t.ok(doc.paths['/v1/me'].get.responses['401'], '401 schema')
})
