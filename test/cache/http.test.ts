// Cache headers, conditional answers and bypass on a real cached v1 read (a detection list), against
// the sandbox upstream.
import { test } from 'tap'
import { matchesIfNoneMatch } from '../../src/cache/http.js'
import { buildTestApp } from '../helper.js'
import { consumersFile, makeConsumer } from '../consumer-helper.js'

const URL = '/v1/lists/eyeball/objects'

async function appWithConsumers (t: Parameters<typeof buildTestApp>[0]) {
  const plain = makeConsumer('plain', { scopes: ['read'] })
  const refresher = makeConsumer('refresher', { scopes: ['read'], allow_bypass: true })
  const built = await buildTestApp(t, { config: { CONSUMERS_FILE: consumersFile(t, [plain, refresher]) } })
  return { ...built, plain: { authorization: `Bearer ${plain.key}` }, refresher: { authorization: `Bearer ${refresher.key}` } }
}

test('a cached answer carries X-Cache, Age, Cache-Control and a strong ETag', async (t) => {
  const { app, plain } = await appWithConsumers(t)
  const first = await app.inject({ url: URL, headers: plain })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(first.headers.age, '0')
  t.match(first.headers['cache-control'], /^private, max-age=\d+, stale-while-revalidate=\d+, stale-if-error=\d+$/)
  t.match(first.headers.etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.match(first.headers['content-type'], /^application\/json/)
  const second = await app.inject({ url: URL, headers: plain })
  t.equal(second.headers['x-cache'], 'HIT')
  t.equal(second.headers.etag, first.headers.etag)
  t.equal(second.body, first.body)
})

test('304 on a matching If-None-Match (weak or strong), 200 otherwise; a derived view has its own ETag', async (t) => {
  const { app, plain } = await appWithConsumers(t)
  const first = await app.inject({ url: URL, headers: plain })
  const etag = String(first.headers.etag)
  for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const res = await app.inject({ url: URL, headers: { ...plain, 'if-none-match': ifNoneMatch } })
    t.equal(res.statusCode, 304, ifNoneMatch)
    t.equal(res.body, '')
  }
  t.equal((await app.inject({ url: URL, headers: { ...plain, 'if-none-match': '"other"' } })).statusCode, 200)
  const filtered = await app.inject({ url: `${URL}?vra_gte=100`, headers: plain })
  t.not(filtered.headers.etag, etag, 'the filtered body is another representation')
  t.equal((await app.inject({ url: `${URL}?vra_gte=100`, headers: { ...plain, 'if-none-match': etag } })).statusCode, 200)
})

test('no-cache bypasses the cache only for consumers allowed to; others are served from it, and X-Cache says so', async (t) => {
  const { app, sandbox, plain, refresher } = await appWithConsumers(t)
  await app.inject({ url: URL, headers: plain })
  sandbox.resetCalls()
  for (const headers of [{ 'cache-control': 'no-cache' }, { pragma: 'no-cache' }, { 'cache-control': 'max-age=0, No-Cache' }]) {
    const res = await app.inject({ url: URL, headers: { ...plain, ...headers } })
    t.equal(res.headers['x-cache'], 'HIT', `plain ${JSON.stringify(headers)}`)
  }
  t.equal(sandbox.totalCalls(), 0, 'a consumer without allow_bypass never reaches the upstream this way')
  const bypass = await app.inject({ url: URL, headers: { ...refresher, 'cache-control': 'no-cache' } })
  t.equal(bypass.headers['x-cache'], 'BYPASS')
  t.equal(sandbox.calls.get('objectlist'), 1, 'allow_bypass: the upstream was asked again')
  t.equal((await app.inject({ url: URL, headers: plain })).headers['x-cache'], 'HIT', 'and the cache holds the new answer')
})

test('matchesIfNoneMatch follows the weak comparison of RFC 9110', async (t) => {
  t.ok(matchesIfNoneMatch('"a"', '"a"'))
  t.ok(matchesIfNoneMatch('W/"a"', '"a"'))
  t.ok(matchesIfNoneMatch(' "b" ,  "a" ', '"a"'))
  t.notOk(matchesIfNoneMatch('"A"', '"a"'))
  t.notOk(matchesIfNoneMatch('a', '"a"'))
  t.notOk(matchesIfNoneMatch(undefined, '"a"'))
  t.notOk(matchesIfNoneMatch('', '"a"'))
})
