// The token refresh lock across replicas, with real Redis and a fake auth-token/ over loopback that
// holds each login until the test lets it answer. A replica whose login outlasts its lock must not
// release the lock another replica took after it expired: a third replica would then log in beside the
// second (each login rotates the upstream key and kills the other's token).
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type Test } from 'tap'
import { createRedisHealth } from '../../src/lib/redis-health.js'
import { createTokenManager, type LoginFn } from '../../src/upstream/token.js'
import { connectTestRedis, deleteKeysOnTeardown, testKeyPrefix } from '../fixtures/redis-keys.js'
import { waitFor } from '../fixtures/wait.js'

const REDIS_URL = process.env.REDIS_URL ?? ''

/** auth-token/ answering each login with a new token, but only once the test answers it. */
async function heldLogins (t: Test) {
  type Held = ServerResponse & { reply: () => void }
  const pending: Held[] = []
  let received = 0
  let answerAtOnce = false
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    received++
    const token = String(received).padStart(40, 'a')
    const reply = () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ token }))
    }
    if (answerAtOnce) reply()
    else pending.push(Object.assign(res, { reply }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as AddressInfo
  const login: LoginFn = async (username, password) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/auth-token/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ username, password }).toString()
    })
    return (await res.json() as { token: string }).token
  }
  return {
    login,
    get received () { return received },
    get pending () { return pending.length },
    /** Answers the oldest login still held. */
    answerNext () { pending.shift()?.reply() },
    /** Answers every held login and every later one at once. */
    answerAll () {
      answerAtOnce = true
      for (const res of pending.splice(0)) res.reply()
    }
  }
}

test('a login that outlasts its lock does not release the lock another replica took since', { skip: REDIS_URL === '' ? 'REDIS_URL is not set' : false }, async (t) => {
  const prefix = testKeyPrefix('token-lock')
  deleteKeysOnTeardown(t, REDIS_URL, prefix)
  const logins = await heldLogins(t)
  const sources = { token: '', tokenFile: '', username: 'bot', usernameFile: '', password: 'secret', passwordFile: '' }
  const replica = async (lockTtlMs?: number) => {
    const redis = await connectTestRedis(t, REDIS_URL)
    const guard = createRedisHealth().guard('token')
    return createTokenManager(sources, logins.login, () => {}, { redis, prefix, guard, ...(lockTtlMs === undefined ? {} : { lockTtlMs }) })
  }
  const observer = await connectTestRedis(t, REDIS_URL)
  const lockKey = `${prefix}token:lock`
  const stale = 'f'.repeat(40)
  await observer.set(`${prefix}token`, stale)
  // A's lock lives 100 ms, far less than its login takes; B and C keep the default.
  const [a, b, c] = await Promise.all([replica(100), replica(), replica()])

  const aRefresh = a.refresh(stale)
  await waitFor('A\'s login', () => logins.received === 1)
  await waitFor('A\'s lock to expire under its running login', async () => (await observer.exists(lockKey)) === 0)
  const bRefresh = b.refresh(stale)
  await waitFor('B\'s login, under the lock it took after A\'s expired', () => logins.received === 2)

  logins.answerNext()
  const fromA = await aRefresh
  const lockAfterA = await observer.exists(lockKey)
  t.comment(`after A's late release, B's lock ${lockAfterA === 1 ? 'is still there' : 'is gone'}`)
  t.equal(lockAfterA, 1, 'A released only its own lock: B still holds its own')

  // C meets A's token refused (B's login rotated it): it must wait for B's token, not log in too.
  const cRefresh = c.refresh(fromA)
  // Given time to log in (as it did when A's release had freed the lock), C sends nothing.
  await waitFor('a third login', () => logins.received === 3, { timeoutMs: 1000 }).catch(() => {})
  const concurrent = logins.received
  logins.answerAll()
  const [fromB, fromC] = await Promise.all([bRefresh, cRefresh])
  t.comment(`logins: ${logins.received} (${concurrent} sent before B's answered); C got ${fromC === fromB ? 'B\'s token' : 'a token of its own'}`)
  t.equal(logins.received, 2, 'two logins: A\'s (its lock expired) and B\'s; C waited for B\'s')
  t.equal(fromC, fromB, 'C uses the token B stored')
  t.equal(await observer.exists(lockKey), 0, 'B released its lock')
})
