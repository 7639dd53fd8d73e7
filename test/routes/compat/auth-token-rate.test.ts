// The compatibility path's auth-token/ is public (no key, as upstream) and reads a form of up to 2.5 MiB:
// its anonymous POSTs are limited per client address (AUTH_TOKEN_RATE), so that no client can spend the
// gateway's CPU on forms or guess credentials as fast as it likes. Over loopback, against real Redis when
// REDIS_URL is set (replicas then count together) and in memory.
import { test } from 'tap'
import { Agent, request } from 'undici'
import { buildTestApp, listeningReplicas, UNUSED_UPSTREAM } from '../../helper.js'
import { consumersFile, makeConsumer } from '../../consumer-helper.js'

const RATE = '5/minute'
const LIMIT = 5
const form = (fields: Record<string, string>) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(fields).toString()
})
const WRONG = form({ username: 'bot', password: 'nope' })

interface Answer { status: number, body: string, retryAfter: unknown }

async function post (url: string, opts: Parameters<typeof request>[1] = WRONG): Promise<Answer> {
  const res = await request(url, opts)
  return { status: res.statusCode, body: await res.body.text(), retryAfter: res.headers['retry-after'] }
}

const base = (port: number) => `http://127.0.0.1:${port}/atlas/api/auth-token/`

for (const useRedis of [true, false]) {
  test(`auth-token/: anonymous POSTs are refused past AUTH_TOKEN_RATE per client address (${useRedis ? 'Redis' : 'memory'})`, async (t) => {
    const bot = makeConsumer('bot')
    const { app } = await buildTestApp(t, { useRedis, config: { ATLAS_BASE_URL: UNUSED_UPSTREAM, AUTH_TOKEN_RATE: RATE, CONSUMERS_FILE: consumersFile(t, [bot]) } })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const url = base((app.server.address() as { port: number }).port)

    const answers: Answer[] = []
    for (let i = 0; i < LIMIT + 3; i++) answers.push(await post(url))
    const statuses = answers.map((a) => a.status)
    t.comment(`statuses of ${LIMIT + 3} wrong logins at ${RATE}: ${statuses.join(' ')}`)
    t.same(statuses.slice(0, LIMIT), Array(LIMIT).fill(400), `the first ${LIMIT} are answered (wrong credentials)`)
    t.same(statuses.slice(LIMIT), [429, 429, 429], 'the rest are refused')
    const refused = answers[LIMIT] as Answer
    const seconds = Number(refused.retryAfter)
    t.ok(Number.isInteger(seconds) && seconds >= 1 && seconds <= 60, `Retry-After in whole seconds within the window (${String(refused.retryAfter)})`)
    t.equal(refused.body, JSON.stringify({ detail: `Request was throttled. Expected available in ${seconds} seconds.` }), "DRF's throttle reply")

    // Refused before the body is read: a body DRF would refuse (a JSON parse error, a 400) gets the 429.
    const malformed = await post(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' })
    t.equal(malformed.status, 429, 'a malformed body past the limit is a 429, not a parse error')
    // Even the right credentials wait: the count is the address's, not the consumer's.
    t.equal((await post(url, form({ username: 'bot', password: bot.key }))).status, 429, 'a right login from the same address waits too')

    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    t.match(metrics.body, /gateway_limit_rejections_total\{consumer="anonymous",kind="auth_token"\} 5\n/, 'the 5 refusals are counted')

    // Another client address has a count of its own (127.0.0.2 is loopback too).
    const other = new Agent({ localAddress: '127.0.0.2' })
    t.teardown(() => other.close())
    const fromOther = await post(url, { ...form({ username: 'bot', password: bot.key }), dispatcher: other })
    t.equal(fromOther.status, 200, 'another address logs in')
    t.match(JSON.parse(fromOther.body), { token: bot.key }, 'with its key')

    // A consumer's requests elsewhere on the compat path are not counted by address.
    const objects = await post(url.replace('auth-token/', 'objects/'), { method: 'POST', headers: { authorization: `Token ${bot.key}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'objects=1' })
    t.not(objects.status, 429, `a keyed request from the refused address is not refused by it (${objects.status})`)
  })
}

test('auth-token/: replicas sharing Redis count an address together', { skip: process.env.REDIS_URL === undefined ? 'needs REDIS_URL' : false }, async (t) => {
  const { bases } = await listeningReplicas(t, 2, { config: { ATLAS_BASE_URL: UNUSED_UPSTREAM, AUTH_TOKEN_RATE: RATE, REDIS_KEY_PREFIX: `agw-test:auth-token-rate:${process.pid}:${Math.random().toString(36).slice(2)}:` } })
  const urls = bases.map((b) => `${b}/atlas/api/auth-token/`)
  const statuses: number[] = []
  for (let i = 0; i < LIMIT + 1; i++) statuses.push((await post(urls[i % 2] as string)).status)
  t.comment(`alternating between 2 replicas at ${RATE}: ${statuses.join(' ')}`)
  t.same(statuses, [...Array(LIMIT).fill(400), 429], `${LIMIT} answered across both, then refused`)
})
