// Issue 11, item 7: secrets never leave. Consumer keys are redacted from logged URLs in every query form a
// server would read as a secret parameter, and the upstream token and password are scrubbed from any
// upstream text before it reaches a log line or a response body.
import { test } from 'tap'
import { redactUrl } from '../src/logger.js'
import { scrubSecrets } from '../src/upstream/scrub.js'
import { buildTestApp, FIXTURE_IDS } from './helper.js'

const { A, D } = FIXTURE_IDS
const KEY = '0123456789abcdef0123456789abcdef01234567'

test('redactUrl: every query form of a secret name is redacted', async (t) => {
  const cases: Array<[string, string]> = [
    ['/atlas/api/cone/?token=K&ra=1', '/atlas/api/cone/?token=[Redacted]&ra=1'],
    ['/x?a=1&TOKEN=K', '/x?a=1&TOKEN=[Redacted]'],
    ['/x?ToKeN=K', '/x?ToKeN=[Redacted]'],
    // Percent-encoded names, decoded the way a server decodes them (Django reads %74oken as token).
    ['/atlas/api/cone/?%74oken=K&ra=1', '/atlas/api/cone/?%74oken=[Redacted]&ra=1'],
    ['/x?to%6Ben=K', '/x?to%6Ben=[Redacted]'],
    ['/x?%54%4F%4B%45%4E=K', '/x?%54%4F%4B%45%4E=[Redacted]'],
    ['/x?api%5Fkey=K', '/x?api%5Fkey=[Redacted]'],
    // `+` is a space in a query name.
    ['/x?token+=K', '/x?token+=[Redacted]'],
    ['/x?+token=K', '/x?+token=[Redacted]'],
    // Array forms, literal or encoded.
    ['/x?token[]=K', '/x?token[]=[Redacted]'],
    ['/x?token%5B%5D=K', '/x?token%5B%5D=[Redacted]'],
    ['/x?token[0]=K&ra=1', '/x?token[0]=[Redacted]&ra=1'],
    // `;` separators, in the query and in the path.
    ['/x?ra=1;token=K', '/x?ra=1;token=[Redacted]'],
    ['/x?;token=K', '/x?;token=[Redacted]'],
    ['/atlas/api/cone/;token=K', '/atlas/api/cone/;token=[Redacted]'],
    // Every secret name.
    ['/x?key=K&api_key=K&password=K&access_token=K', '/x?key=[Redacted]&api_key=[Redacted]&password=[Redacted]&access_token=[Redacted]'],
    ['/x?PASSWORD=K', '/x?PASSWORD=[Redacted]'],
    // Repeated names, and a value running into a fragment or a second `?`.
    ['/x?token=K&token=K', '/x?token=[Redacted]&token=[Redacted]'],
    ['/x?token=K#frag', '/x?token=[Redacted]'],
    ['/x?a=b?token=K', '/x?a=b?token=[Redacted]'],
    // Malformed UTF-8 in the name does not stop the decoding of the rest.
    ['/x?%74oken[%FF]=K', '/x?%74oken[%FF]=[Redacted]']
  ]
  for (const [url, expected] of cases) t.equal(redactUrl(url), expected, url)
})

test('redactUrl: everything else is left as sent', async (t) => {
  for (const url of [
    '/plain', '/x?tokens=1', '/x?my_token=1', '/x?ra=1&dec=2&radius=5', '/x?token', '/x?token=',
    '/x?%74okens=1', '/x?%2574oken=1', '/x?format=json&requestType=count', '/v1/objects/1161600211221604900'
  ]) {
    t.equal(redactUrl(url), url, url)
  }
})

test('scrubSecrets: every secret of 8 characters or more, as sent, JSON-escaped or form-encoded', async (t) => {
  const password = 'pa"ss wo\\rd'
  t.equal(scrubSecrets(`{"detail":"${KEY} ${KEY}"}`, [KEY]), '{"detail":"[Redacted] [Redacted]"}', 'every occurrence')
  t.equal(scrubSecrets(JSON.stringify({ detail: `bad ${password}` }), [KEY, password]), '{"detail":"bad [Redacted]"}', 'inside a JSON string')
  t.equal(scrubSecrets(`password=${encodeURIComponent(password).replaceAll('%20', '+')}&x=1`, [password]), 'password=[Redacted]&x=1', 'form-encoded')
  t.equal(scrubSecrets('row 1234567 of short', ['1234567', 'short', '']), 'row 1234567 of short', 'short values are data, not secrets')
  t.equal(scrubSecrets('{"ok":true}', [KEY]), '{"ok":true}')
})

/** The access-log lines (msg "request completed") of a log text. */
function accessUrls (text: string): string[] {
  return text.split('\n').filter((l) => l.includes('"request completed"')).map((l) => (JSON.parse(l) as { url: string }).url)
}

test('compat path: a key in any query form is accepted or refused, and never logged', async (t) => {
  const { app, logs } = await buildTestApp(t, { config: { LOG_LEVEL: 'trace' } })
  const key = app.consumers.demoKey as string
  const search = 'ra=1&dec=1&radius=5&requestType=count'
  const accepted = await app.inject({ url: `/atlas/api/cone/?%74oken=${key}&${search}` })
  t.equal(accepted.statusCode, 200, '%74oken is token, as the upstream reads it')
  for (const url of [`/atlas/api/cone/?token[]=${key}&${search}`, `/atlas/api/cone/?${search};token=${key}`]) {
    const refused = await app.inject({ url })
    t.equal(refused.statusCode, 401, `${url.replace(key, '<key>')} is refused`)
  }
  const upper = await app.inject({ url: `/atlas/api/cone/?TOKEN=${key}&${search}` })
  t.equal(upper.statusCode, 401, 'names are case-sensitive upstream')
  const text = logs()
  const urls = accessUrls(text)
  t.equal(urls.length, 4, 'one access line per request')
  t.match(urls, [/\?%74oken=\[Redacted\]&ra=1/, /\?token\[\]=\[Redacted\]&ra=1/, /;token=\[Redacted\]$/, /\?TOKEN=\[Redacted\]&ra=1/], 'the access log shows the form, not the key')
  t.notOk(text.replace(`demo consumer key: ${key}`, '').includes(key), 'the key is in no log line')
})

test('an upstream that echoes its token in a 400 write reply: neither the log nor the consumer sees it', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t)
  const token = sandbox.tokens.write
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 400, body: JSON.stringify({ detail: `token ${token} may not add rows` }) })
  const res = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: { authorization: `Bearer ${app.consumers.demoKey as string}` } })
  t.equal(res.statusCode, 400)
  t.notOk(res.body.includes(token), 'not in the response')
  t.match(res.json().detail, /\[Redacted\] may not add rows/, 'the rest of the upstream text is kept')
  t.notOk(logs().includes(token), 'not in the logs')
})

test('an upstream that echoes its token or password in a 500 read reply: not in the log', async (t) => {
  const { app, sandbox, config, logs } = await buildTestApp(t)
  const token = sandbox.tokens.write
  sandbox.inject({ endpoint: 'objects', kind: 'status', status: 500, times: 10, body: JSON.stringify({ detail: `bad ${token} for ${config.ATLAS_PASSWORD}` }) })
  const res = await app.inject({ url: `/v1/objects/${A}`, headers: { authorization: `Bearer ${app.consumers.demoKey as string}` } })
  t.equal(res.statusCode, 502)
  t.notOk(res.body.includes(token))
  const text = logs()
  t.ok(text.includes('[Redacted]'), 'the snippet is logged, scrubbed')
  t.notOk(text.includes(token), 'no token in the logs')
  t.notOk(text.includes(config.ATLAS_PASSWORD), 'no password in the logs')
})

test('compat path: an upstream write reply echoing the token is passed on scrubbed', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t)
  const token = sandbox.tokens.write
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 400, body: JSON.stringify({ detail: `token ${token}` }) })
  const res = await app.inject({
    method: 'POST',
    url: '/atlas/api/objectgroups/',
    headers: { authorization: `Token ${app.consumers.demoKey as string}`, 'content-type': 'application/x-www-form-urlencoded' },
    payload: `objectid=${D}&objectgroupid=3`
  })
  t.notOk(res.body.includes(token), `not in the response (${res.statusCode})`)
  t.match(res.body, /\[Redacted\]/)
  t.notOk(logs().includes(token))
})

test('after refreshes, the configured, the previous and the current token are all scrubbed', async (t) => {
  const { app, sandbox, logs } = await buildTestApp(t)
  const auth = { authorization: `Bearer ${app.consumers.demoKey as string}` }
  const tokens = [sandbox.tokens.write]
  for (const id of [A, D]) {
    sandbox.expireToken('write')
    t.equal((await app.inject({ url: `/v1/objects/${id}`, headers: auth })).statusCode, 200, 'refreshed')
    tokens.push(sandbox.tokens.write)
  }
  t.equal(new Set(tokens).size, 3, 'each refresh rotated the token')
  sandbox.inject({ endpoint: 'objectgroups', kind: 'status', status: 400, body: JSON.stringify({ detail: tokens.join(' then ') }) })
  const res = await app.inject({ method: 'PUT', url: `/v1/custom-lists/vra/objects/${D}`, headers: auth })
  t.equal(res.statusCode, 400)
  t.match(res.json().detail, /\[Redacted\] then \[Redacted\] then \[Redacted\]/)
  const text = logs()
  for (const [i, token] of tokens.entries()) {
    t.notOk(res.body.includes(token), `token ${i} is not in the response`)
    t.notOk(text.includes(token), `token ${i} is not in the logs`)
  }
})
