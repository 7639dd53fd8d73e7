// The lead of a source across replicas on one Redis: one replica polls; when it shuts down (it gives
// the lead up) or dies (its lead expires), another replica with subscribers takes over from the stored
// snapshot, and subscribers that resume on it lose nothing and get nothing twice.
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test, type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { listeningReplicas, startTestSandbox, TEST_REDIS_URL } from '../helper.js'
import { bearer, consumersFile, makeConsumer, uniquePrefix, writeConsumers } from '../consumer-helper.js'
import { openSse, type SseClient } from './sse-client.js'

const LIST = 'salt'
const SOURCE = `lists/${LIST}`

async function waitUntil (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const eventIds = (c: SseClient) => c.events.filter((e) => e.id !== undefined && e.event !== 'shutdown').map((e) => e.id as string)

async function twoReplicas (t: Test) {
  const sandbox = await startTestSandbox(t)
  const reader = makeConsumer('reader', { scopes: ['read'] })
  const writer = makeConsumer('writer', { scopes: ['read', 'write:custom-lists'], lists: [LIST] })
  const config = {
    CONSUMERS_FILE: consumersFile(t, [reader, writer]),
    REDIS_KEY_PREFIX: uniquePrefix('push-lead'),
    PUSH_POLL_INTERVAL_MS: 100,
    PUSH_LEADER_TTL_MS: 600,
    PUSH_MAX_STREAMS_PER_CONSUMER: 100,
    CACHE_FRESHNESS: '{"lists":{"freshS":3600,"swrS":0}}',
    PREFETCH_ENABLED: false
  }
  const { apps, bases } = await listeningReplicas(t, 2, { upstream: sandbox, config: config as never })
  return { sandbox, apps: apps as [FastifyInstance, FastifyInstance], bases, read: bearer(reader.key), write: bearer(writer.key) }
}

test('the lead of a source', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  t.test('moves to the other replica when the leader shuts down; resumed streams lose nothing', async (t) => {
    const { sandbox, apps, bases, read, write } = await twoReplicas(t)
    const clients = await Promise.all([0, 1, 2, 3].map(async (i) => openSse(`${bases[i % 2] as string}/v1/lists/${LIST}/events`, read)))
    await waitUntil('one leader', () => apps.filter((a) => a.push.leading().includes(SOURCE)).length === 1)
    await waitUntil('the baseline', async () => (await apps[0].push.store.snapshot(SOURCE)) !== null)
    const leaderAt = apps.findIndex((a) => a.push.leading().includes(SOURCE))
    const leader = apps[leaderAt] as FastifyInstance
    const other = apps[1 - leaderAt] as FastifyInstance
    const ids = sandbox.ids().slice(70, 73).map(String)
    t.equal((await other.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${ids[0] as string}`, headers: write })).statusCode, 201)
    await waitUntil('the first event everywhere', () => clients.every((c) => eventIds(c).length === 1))

    await leader.close()
    const gone = clients.filter((_, i) => i % 2 === leaderAt)
    t.ok(gone.every((c) => c.events.at(-1)?.event === 'shutdown'), 'the leader\'s streams were told it shut down')
    await waitUntil('the other replica to lead', () => other.push.leading().includes(SOURCE))
    t.equal((await other.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${ids[1] as string}`, headers: write })).statusCode, 201)
    t.equal((await other.inject({ method: 'DELETE', url: `/v1/custom-lists/${LIST}/objects/${ids[0] as string}`, headers: write })).statusCode, 204)
    const resumed = await Promise.all(gone.map(async (c) => openSse(`${bases[1 - leaderAt] as string}/v1/lists/${LIST}/events`, { ...read, 'last-event-id': c.lastId() as string })))
    const stayed = clients.filter((_, i) => i % 2 !== leaderAt)
    await waitUntil('three events everywhere', () => stayed.every((c) => eventIds(c).length === 3) && resumed.every((c, i) => eventIds(gone[i] as SseClient).length + eventIds(c).length === 3))
    const expected = ((await other.push.store.page(SOURCE, '0-0', 10)).events).map((e) => e.id)
    t.equal(expected.length, 3)
    for (const c of stayed) t.same(eventIds(c), expected)
    for (const [i, c] of resumed.entries()) t.same([...eventIds(gone[i] as SseClient), ...eventIds(c)], expected, 'resumed on the other replica: nothing lost, nothing twice')
    await Promise.all([...clients, ...resumed].map(async (c) => c.close()))
  })

  t.test('is taken over when the leader stops renewing it; a commit without the lead writes nothing', async (t) => {
    const { sandbox, apps, bases, read, write } = await twoReplicas(t)
    const clients = await Promise.all([0, 1].map(async (i) => openSse(`${bases[i] as string}/v1/lists/${LIST}/events`, read)))
    await waitUntil('the baseline', async () => (await apps[0].push.store.snapshot(SOURCE)) !== null)
    // A replica that died holding the lead: its key lives out its TTL and nobody renews it.
    const lockKey = `${apps[0].config.REDIS_KEY_PREFIX}{push:${SOURCE}}:lead`
    await apps[0].redis?.set(lockKey, 'a-dead-replica', 'PX', 1500)
    await waitUntil('no replica to lead', () => apps.every((a) => !a.push.leading().includes(SOURCE)))
    const id = String(sandbox.ids()[80])
    t.equal((await apps[0].inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${id}`, headers: write })).statusCode, 201)
    await waitUntil('a new leader', () => apps.some((a) => a.push.leading().includes(SOURCE)))
    await waitUntil('the event on both streams', () => clients.every((c) => eventIds(c).length === 1))
    await new Promise((resolve) => setTimeout(resolve, 400))
    t.same(clients.map((c) => eventIds(c).length), [1, 1], 'announced once')
    t.equal(((await apps[0].push.store.page(SOURCE, '0-0', 10)).events).length, 1)
    // The fencing check: a commit by a token that does not hold the lead (a replica that lost it while it
    // polled) writes neither events nor snapshot.
    const before = await apps[0].push.store.snapshot(SOURCE)
    t.equal(await apps[0].push.store.commit({ source: SOURCE, token: 'a-dead-replica', rows: '{}', at: Date.now(), events: ['{"type":"member.added"}'] }), null)
    t.equal(((await apps[0].push.store.page(SOURCE, '0-0', 10)).events).length, 1, 'no event written')
    t.equal((await apps[0].push.store.snapshot(SOURCE))?.rows, before?.rows, 'the snapshot unchanged')
    // A webhook cursor is fenced the same way: one who lost the lead cannot move it back.
    t.ok(await apps[0].push.store.setCursor(SOURCE, 'hooks#x', '5-0'))
    t.notOk(await apps[0].push.store.setCursor(SOURCE, 'hooks#x', '1-0', { lead: 'a-dead-replica' }), 'refused without the lead')
    t.equal(await apps[0].push.store.cursor(SOURCE, 'hooks#x'), '5-0', 'the cursor unchanged')
    await Promise.all(clients.map(async (c) => c.close()))
  })
})

test('a poll slower than PUSH_LEADER_TTL_MS keeps the lead: one replica delivers the webhooks', { skip: TEST_REDIS_URL === '' ? 'needs REDIS_URL' : false }, async (t) => {
  // A receiver that takes 300 ms to answer, so that deliveries are still going on while the poll is slow.
  const posts: string[] = []
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      posts.push(String(req.headers['webhook-id']))
      setTimeout(() => res.writeHead(204).end(), 300)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  const dir = t.testdir()
  const file = join(dir, 'whsec')
  writeFileSync(file, 'whsec_' + randomBytes(24).toString('base64'))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  const writer = makeConsumer('writer', { scopes: ['read', 'write:custom-lists'], lists: [LIST] })
  const hooks = makeConsumer('hooks', { scopes: ['read'], webhooks: [{ url, sources: [SOURCE], secret: { file } }] as never })
  const sandbox = await startTestSandbox(t)
  const { apps } = await listeningReplicas(t, 2, {
    upstream: sandbox,
    config: {
      CONSUMERS_FILE: writeConsumers(join(dir, 'consumers.yaml'), [writer, hooks]),
      REDIS_KEY_PREFIX: uniquePrefix('push-slow-poll'),
      PUSH_POLL_INTERVAL_MS: 100,
      PUSH_LEADER_TTL_MS: 600,
      PUSH_WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
      CACHE_FRESHNESS: '{"lists":{"freshS":3600,"swrS":0}}',
      PREFETCH_ENABLED: false
    } as never
  })
  const [a] = apps as [FastifyInstance, FastifyInstance]
  await waitUntil('the baseline', async () => (await a.push.store.snapshot(SOURCE)) !== null)
  const write = bearer(writer.key)
  const ids = sandbox.ids().slice(100, 108).map(String)
  for (const id of ids) t.equal((await a.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${id}`, headers: write })).statusCode, 201)
  await waitUntil('the 8 events', async () => ((await a.push.store.page(SOURCE, '0-0', 100)).events).length === 8)
  // The leader's next poll takes 3 s (5 × PUSH_LEADER_TTL_MS), while 8 posts of 300 ms are delivered.
  sandbox.inject({ endpoint: 'objectlist', kind: 'delay', delayMs: 3000, times: 1 })
  t.equal((await a.inject({ method: 'PUT', url: `/v1/custom-lists/${LIST}/objects/${String(sandbox.ids()[120])}`, headers: write })).statusCode, 201)
  await waitUntil('the 9th event', async () => ((await a.push.store.page(SOURCE, '0-0', 100)).events).length === 9)
  const events = ((await a.push.store.page(SOURCE, '0-0', 100)).events).map((e) => `${SOURCE}:${e.id}`)
  await waitUntil('every event posted', () => events.every((id) => posts.includes(id)))
  // A second sender would post its copies within a few answers' time.
  await new Promise((resolve) => setTimeout(resolve, 1500))
  t.same(posts, events, `each message posted once, in order (${posts.length} posts of ${new Set(posts).size} messages)`)
  t.equal(apps.filter((app) => app.push.leading().includes(SOURCE)).length, 1, 'one leader')
})
