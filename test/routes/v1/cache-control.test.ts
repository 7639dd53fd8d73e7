// Every v1 answer says whether it may be stored. Cached reads carry `private, max-age=…` (send.ts);
// everything else (personal answers, admin listings, writes, problems) is `no-store`: a key may come in
// X-API-Key, which RFC 9111 §3.5 does not treat as Authorization, so a shared cache with a default
// lifetime could otherwise keep one consumer's answer and hand it to another.
import { test } from 'tap'
import { buildTestApp, FIXTURE_IDS } from '../../helper.js'
import { consumersFile, makeConsumer } from '../../consumer-helper.js'

test('answers that are not cached reads carry Cache-Control: no-store; cached reads keep theirs', async (t) => {
  const admin = makeConsumer('ops', { scopes: ['admin'] })
  const bot = makeConsumer('bot', { scopes: ['read', 'write:vra'] })
  const { app } = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [admin, bot]) } })
  const as = (who: { key: string }) => ({ 'x-api-key': who.key })
  const cases: Array<{ what: string, method?: 'GET' | 'POST' | 'HEAD', url: string, headers?: Record<string, string>, payload?: object, status: number }> = [
    { what: '/v1/me', url: '/v1/me', headers: as(bot), status: 200 },
    { what: 'HEAD /v1/me', method: 'HEAD', url: '/v1/me', headers: as(bot), status: 200 },
    { what: 'admin consumers', url: '/v1/admin/consumers', headers: as(admin), status: 200 },
    { what: 'admin usage', url: '/v1/admin/usage?month=2026-11', headers: as(admin), status: 200 },
    { what: 'admin audit', url: '/v1/admin/audit', headers: as(admin), status: 200 },
    { what: 'a write', method: 'POST', url: '/v1/vra/todo', headers: as(bot), payload: { id: FIXTURE_IDS.A }, status: 201 },
    { what: 'a 401 problem', url: '/v1/me', status: 401 },
    { what: 'a 403 problem', url: '/v1/admin/consumers', headers: as(bot), status: 403 },
    { what: 'a 404 problem', url: `/v1/objects/${FIXTURE_IDS.U}`, headers: as(bot), status: 404 },
    { what: 'a 400 problem', url: '/v1/objects/12', headers: as(bot), status: 400 }
  ]
  for (const c of cases) {
    const res = await app.inject({ method: c.method ?? 'GET', url: c.url, headers: c.headers ?? {}, ...(c.payload === undefined ? {} : { payload: c.payload }) })
    t.equal(res.statusCode, c.status, `${c.what}: ${c.status}`)
    t.equal(res.headers['cache-control'], 'no-store', `${c.what}: no-store`)
  }
  const read = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: as(bot) })
  t.equal(read.statusCode, 200)
  t.match(read.headers['cache-control'], /^private, max-age=\d+/, 'a cached read keeps its own')
  const again = await app.inject({ url: `/v1/objects/${FIXTURE_IDS.A}`, headers: { ...as(bot), 'if-none-match': read.headers.etag as string } })
  t.equal(again.statusCode, 304)
  t.match(again.headers['cache-control'], /^private, max-age=\d+/, 'and so does its 304')
})
