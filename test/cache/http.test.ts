// sendCached and wantsBypass on a tiny Fastify app whose route reads through a real cache.
import { test } from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import { sendCached, wantsBypass, matchesIfNoneMatch } from '../../src/cache/http.js'
import { DEFAULT_FRESHNESS } from '../../src/cache/freshness.js'
import { countingLoader, manualClock, memoryCache } from './cache-fixture.js'

const LISTS = DEFAULT_FRESHNESS.lists

async function buildTinyApp (t: Test) {
  const { cache, clock } = memoryCache(manualClock())
  const state = { body: '{"rows":[1,2,3]}' }
  const loader = countingLoader(() => state.body, { tags: ['list:eyeball'] })
  const app = Fastify()
  // Stands in for consumer auth: the consumer's allow_bypass comes from a test header.
  app.addHook('onRequest', async (request) => {
    const allow = request.headers['x-test-allow-bypass']
    if (allow !== undefined) Reflect.set(request, 'consumer', { id: 'bot', allow_bypass: allow === 'yes' })
  })
  app.get('/lists', async (request, reply) => {
    const result = await cache.fetch('v1:lists:', LISTS, loader.fn, { route: 'lists', bypass: wantsBypass(request) })
    return sendCached(request, reply, result, { freshness: LISTS })
  })
  app.get('/fixed', async (request, reply) => {
    const result = await cache.fetch('v1:fixed:', LISTS, loader.fn)
    return sendCached(request, reply, result, { cacheControl: 'no-store' })
  })
  app.get('/missing', async (request, reply) => {
    const result = await cache.fetch('v1:missing:', LISTS, async () => ({ body: Buffer.from('{"missing":true}'), status: 404 }))
    return sendCached(request, reply, result, { freshness: LISTS })
  })
  t.teardown(() => app.close())
  return { app, cache, clock, state, loader }
}

test('a cached answer carries X-Cache, Age, Cache-Control, a strong ETag and the stored bytes', async (t) => {
  const { app, clock } = await buildTinyApp(t)
  const first = await app.inject({ url: '/lists' })
  t.equal(first.statusCode, 200)
  t.equal(first.headers['x-cache'], 'MISS')
  t.equal(first.headers.age, '0')
  t.equal(first.headers['cache-control'], 'private, max-age=60, stale-while-revalidate=300, stale-if-error=3600')
  t.match(first.headers.etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.equal(first.headers['content-type'], 'application/json')
  t.equal(first.body, '{"rows":[1,2,3]}')
  clock.advance(45_500)
  const second = await app.inject({ url: '/lists' })
  t.equal(second.headers['x-cache'], 'HIT')
  t.equal(second.headers.age, '45')
  t.equal(second.headers['cache-control'], 'private, max-age=15, stale-while-revalidate=300, stale-if-error=3600')
  t.equal(second.headers.etag, first.headers.etag)
  const fixed = await app.inject({ url: '/fixed' })
  t.equal(fixed.headers['cache-control'], 'no-store', 'an explicit Cache-Control is used as given')
})

test('304 on a matching If-None-Match; 200 with the new bytes after the content changed', async (t) => {
  const { app, cache, state } = await buildTinyApp(t)
  const first = await app.inject({ url: '/lists' })
  const etag = String(first.headers.etag)
  for (const header of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const res = await app.inject({ url: '/lists', headers: { 'if-none-match': header } })
    t.equal(res.statusCode, 304, `If-None-Match: ${header}`)
    t.equal(res.body, '')
    t.equal(res.headers.etag, etag)
    t.equal(res.headers['x-cache'], 'HIT')
  }
  t.equal((await app.inject({ url: '/lists', headers: { 'if-none-match': '"other"' } })).statusCode, 200)

  state.body = '{"rows":[1,2,3,4]}'
  await cache.invalidate(['list:eyeball'])
  const changed = await app.inject({ url: '/lists', headers: { 'if-none-match': etag } })
  t.equal(changed.statusCode, 200)
  t.equal(changed.headers['x-cache'], 'MISS')
  t.equal(changed.body, '{"rows":[1,2,3,4]}')
  t.not(changed.headers.etag, etag)
})

test('a non-2xx entry is sent with its status and never answered 304', async (t) => {
  const { app } = await buildTinyApp(t)
  const first = await app.inject({ url: '/missing' })
  t.equal(first.statusCode, 404)
  const again = await app.inject({ url: '/missing', headers: { 'if-none-match': String(first.headers.etag) } })
  t.equal(again.statusCode, 404)
  t.equal(again.body, '{"missing":true}')
})

test('no-cache bypasses only for consumers allowed to; others are served from cache, and X-Cache says so', async (t) => {
  const { app, loader, state } = await buildTinyApp(t)
  await app.inject({ url: '/lists' })
  state.body = '{"rows":[]}'
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'cache-control': 'no-cache' }, 'HIT'],
    [{ 'cache-control': 'no-cache', 'x-test-allow-bypass': 'no' }, 'HIT'],
    [{ 'x-test-allow-bypass': 'yes' }, 'HIT'],
    [{ 'cache-control': 'max-age=0, No-Cache', 'x-test-allow-bypass': 'yes' }, 'BYPASS'],
    [{ pragma: 'no-cache', 'x-test-allow-bypass': 'yes' }, 'BYPASS']
  ]
  for (const [headers, expected] of cases) {
    const res = await app.inject({ url: '/lists', headers })
    t.equal(res.headers['x-cache'], expected, JSON.stringify(headers))
  }
  t.equal(loader.calls, 3)
  t.equal((await app.inject({ url: '/lists' })).body, '{"rows":[]}', 'the bypass refreshed the cache')
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
