// Access for a stated length of time: `expires` in the consumers file. The app's clock is injected
// (buildApp deps.now), so a key can expire while the gateway runs, without a reload.
import { test } from 'tap'
import { parseConsumers } from '../../src/consumers/file.js'
import { parseExpires } from '../../src/consumers/schema.js'
import { bearer, buildAuthTestApp, consumersFile, makeConsumer } from '../consumer-helper.js'

const DAY = 86400000

test('parseExpires: a date grants its whole UTC day; a datetime is the instant', async (t) => {
  t.equal(parseExpires('2026-12-31'), Date.parse('2027-01-01T00:00:00Z'))
  t.equal(parseExpires('2026-12-31T12:30:00Z'), Date.parse('2026-12-31T12:30:00Z'))
  t.equal(parseExpires('2026-12-31T12:30'), Date.parse('2026-12-31T12:30:00Z'), 'no offset means UTC')
  t.equal(parseExpires('2026-12-31T12:30:00+00:00'), Date.parse('2026-12-31T12:30:00Z'))
  for (const bad of ['2026-02-30', '2026-12-31T24:00:00Z', '2026-12-31T12:00:00+02:00', 'tomorrow', '31/12/2026']) {
    t.throws(() => parseExpires(bad), { message: /invalid expires/ }, bad)
  }
})

test('a bad expires fails the file, naming the entry and the field', async (t) => {
  const entry = (expires: string) => `consumers:\n  - id: a\n    key_sha256: ${'a'.repeat(64)}\n    expires: "${expires}"\n`
  t.throws(() => parseConsumers(entry('next week'), 'c.yaml'), { message: /c\.yaml: consumers\[0\] \(id "a"\): field "expires": must be a date/ })
  t.throws(() => parseConsumers(entry('2026-02-30'), 'c.yaml'), { message: /c\.yaml: consumers\[0\] \(id "a"\): invalid expires "2026-02-30"/ })
  // YAML 1.2 reads an unquoted date as a string, as the gateway needs it.
  const [record] = parseConsumers(`consumers:\n  - id: a\n    key_sha256: ${'a'.repeat(64)}\n    expires: 2026-12-31\n`, 'c.yaml')
  t.equal(record?.consumer.expires, '2026-12-31')
})

test('a key expires while the gateway runs: Sunset in its last days, then 401 in both dialects', async (t) => {
  let now = Date.parse('2026-12-01T10:00:00Z')
  const bot = makeConsumer('bot', { expires: '2026-12-31', scopes: ['read', 'write:vra'] })
  const forever = makeConsumer('forever')
  const { app } = await buildAuthTestApp(t, {
    config: { CONSUMERS_FILE: consumersFile(t, [bot, forever]) },
    deps: { now: () => now }
  })
  const me = async (key: string) => await app.inject({ url: '/v1/me', headers: bearer(key) })

  let res = await me(bot.key)
  t.equal(res.statusCode, 200)
  t.match(res.json(), { expires: '2026-12-31', days_left: 31 })
  t.equal(res.headers.sunset, undefined, 'no Sunset a month before')

  now = Date.parse('2026-12-20T00:00:00Z')
  res = await me(bot.key)
  t.match(res.json(), { days_left: 12 })
  t.equal(res.headers.sunset, 'Fri, 01 Jan 2027 00:00:00 GMT', 'Sunset (RFC 8594) in the last 14 days: when requests stop')
  const compat = await app.inject({ url: '/atlas/api/vratodolist/', headers: { authorization: `Token ${bot.key}` } })
  t.equal(compat.statusCode, 200)
  t.equal(compat.headers.sunset, 'Fri, 01 Jan 2027 00:00:00 GMT', 'on the compatibility path too')

  now = Date.parse('2026-12-31T23:59:59Z')
  res = await me(bot.key)
  t.equal(res.statusCode, 200, 'the whole last day is granted')
  t.match(res.json(), { days_left: 1 })

  now = Date.parse('2027-01-01T00:00:00Z')
  res = await me(bot.key)
  t.equal(res.statusCode, 401, 'refused from the first instant after, without a restart or a reload')
  t.match(res.json(), { code: 'GW_UNAUTHENTICATED', detail: 'This key\'s access expired on 2026-12-31 (UTC); ask the gateway\'s operator to extend it.' })
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
  const write = await app.inject({ method: 'POST', url: '/v1/vra/todo', headers: bearer(bot.key), payload: { id: '1161600211221604900' } })
  t.equal(write.statusCode, 401, 'writes are refused as well')
  const compatAfter = await app.inject({ url: '/atlas/api/vratodolist/', headers: { authorization: `Token ${bot.key}` } })
  t.equal(compatAfter.statusCode, 401)
  t.strictSame(compatAfter.json(), { detail: 'This key\'s access expired on 2026-12-31 (UTC); ask the gateway\'s operator to extend it.' })

  t.equal((await me(forever.key)).statusCode, 200, 'a consumer without expires is untouched')
  t.match((await me(forever.key)).json(), { expires: null, days_left: null })
  now += 400 * DAY
  t.equal((await me(forever.key)).statusCode, 200)
})

test('a datetime expiry, and an extension picked up by a reload', async (t) => {
  let now = Date.parse('2026-11-30T11:00:00Z')
  const bot = makeConsumer('bot', { expires: '2026-11-30T12:00:00Z' })
  const file = consumersFile(t, [bot])
  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: file }, deps: { now: () => now } })
  const res = await app.inject({ url: '/v1/me', headers: bearer(bot.key) })
  t.match(res.json(), { expires: '2026-11-30T12:00:00Z', days_left: 1 })
  t.equal(res.headers.sunset, 'Mon, 30 Nov 2026 12:00:00 GMT')
  now = Date.parse('2026-11-30T12:00:00Z')
  const refused = await app.inject({ url: '/v1/me', headers: bearer(bot.key) })
  t.equal(refused.statusCode, 401)
  t.match(refused.json(), { detail: /expired at 2026-11-30T12:00:00Z/ })
  const { writeConsumers } = await import('../consumer-helper.js')
  writeConsumers(file, [{ ...bot.entry, expires: '2027-06-30' }])
  t.strictSame(await app.consumers.reload(), { ok: true })
  t.equal((await app.inject({ url: '/v1/me', headers: bearer(bot.key) })).statusCode, 200, 'extended')
})
