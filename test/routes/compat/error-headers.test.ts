// Every answer of an upstream view carries its Vary and Allow (DRF's finalize_response adds them to
// errors too: the sandbox's 401, 403 and 429 have them). The compat path's own refusals (the key's rate,
// AUTH_TOKEN_RATE, a missing key or scope) are written by the auth layer, not by the route: they must
// carry the same two headers as the route's other answers, or a cache keyed on Vary mixes them up.
import { test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildTestApp, FIXTURE_IDS } from '../../helper.js'
import { consumersFile, makeConsumer } from '../../consumer-helper.js'

const VIEW_HEADERS = ['vary', 'allow'] as const

function viewHeaders (res: LightMyRequestResponse): Record<string, unknown> {
  return Object.fromEntries(VIEW_HEADERS.map((name) => [name, res.headers[name]]))
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }

async function postForm (app: FastifyInstance, endpoint: string, body: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: `/atlas/api/${endpoint}/`, headers: { ...FORM, ...headers }, payload: body })
}

test('compat refusals carry the Vary and Allow of the route they refuse', async (t) => {
  const reader = makeConsumer('reader', { rate: '3/minute', scopes: ['read'] })
  const { app } = await buildTestApp(t, { config: { AUTH_TOKEN_RATE: '1/minute', CONSUMERS_FILE: consumersFile(t, [reader]) } })
  const token = { authorization: `Token ${reader.key}` }

  // objects/ and vrascores/ answered (2 of the key's 3 a minute), then a 403 for a write (checked before
  // the rate, as upstream), a 401 without a key, and a 429 once the rate is spent.
  const ok = await postForm(app, 'objects', `objects=${FIXTURE_IDS.A}`, token)
  t.equal(ok.statusCode, 200)
  const options = await app.inject({ method: 'OPTIONS', url: '/atlas/api/vrascores/', headers: token })
  t.equal(options.statusCode, 200)
  const forbidden = await postForm(app, 'vrascores', `objectid=${FIXTURE_IDS.A}`, token)
  t.equal(forbidden.statusCode, 403)
  const unauthenticated = await postForm(app, 'objects', `objects=${FIXTURE_IDS.A}`)
  t.equal(unauthenticated.statusCode, 401)
  t.equal((await postForm(app, 'objects', `objects=${FIXTURE_IDS.A}`, token)).statusCode, 200)
  const limited = await postForm(app, 'objects', `objects=${FIXTURE_IDS.A}`, token)
  t.equal(limited.statusCode, 429)

  t.comment(`objects/ 200 ${JSON.stringify(viewHeaders(ok))}, 429 ${JSON.stringify(viewHeaders(limited))}, 401 ${JSON.stringify(viewHeaders(unauthenticated))}`)
  t.same(viewHeaders(ok), { vary: 'Accept', allow: 'GET, POST, HEAD, OPTIONS' }, "the route's own answer")
  t.same(viewHeaders(limited), viewHeaders(ok), 'the key-rate 429 carries them too')
  t.same(viewHeaders(unauthenticated), viewHeaders(ok), 'and the 401')
  t.same(viewHeaders(forbidden), viewHeaders(options), 'and the 403 (vrascores/)')

  // auth-token/: a 400 (wrong credentials), then AUTH_TOKEN_RATE (1/minute) spent: a 429.
  const wrong = await postForm(app, 'auth-token', 'username=nobody&password=nope')
  t.equal(wrong.statusCode, 400)
  const throttled = await postForm(app, 'auth-token', 'username=nobody&password=nope')
  t.equal(throttled.statusCode, 429)
  t.comment(`auth-token/ 400 ${JSON.stringify(viewHeaders(wrong))}, 429 ${JSON.stringify(viewHeaders(throttled))}`)
  t.same(viewHeaders(wrong), { vary: 'Cookie', allow: 'POST, OPTIONS' })
  t.same(viewHeaders(throttled), viewHeaders(wrong), 'the AUTH_TOKEN_RATE 429 carries them too')
})
