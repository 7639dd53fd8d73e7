// What had to reach Redis and did not (src/lib/resend-queue.ts): entries are sent again until a send
// settles them, an entry kept again while a send is out waits for the next one, and the oldest are
// dropped past the bound.
import { test } from 'tap'
import { createResendQueue } from '../../src/lib/resend-queue.js'
import { waitFor } from '../fixtures/wait.js'

test('kept entries are sent again until a send settles them, then no more', async (t) => {
  const sends: string[][] = []
  let isRedisBack = false
  const events: string[] = []
  const queue = createResendQueue<string, true>({
    intervalMs: 10,
    send: async (entries) => { sends.push(entries.map(([k]) => k)); return isRedisBack ? entries.map(([k]) => k) : [] },
    onChange: (event, n) => { events.push(`${event}:${n}`) }
  })
  t.teardown(() => queue.close())
  queue.keep([['object:1', true], ['list:good', true]])
  await waitFor('two failed sends', () => sends.length >= 2)
  t.equal(queue.size, 2, 'kept while Redis refuses')
  isRedisBack = true
  await waitFor('the entries to be sent', () => queue.size === 0)
  const count = sends.length
  t.same(sends.at(-1), ['object:1', 'list:good'])
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(sends.length, count, 'nothing left to send: no more calls')
  t.same(events, ['kept:2', 'sent:2'])
})

test('only the keys a send settles go; an entry kept again while the send is out waits for the next one', async (t) => {
  let release!: (keys: string[]) => void
  const sends: Array<Array<readonly [string, number]>> = []
  const queue = createResendQueue<string, number>({
    intervalMs: 10,
    send: async (entries) => { sends.push([...entries]); return new Promise<string[]>((resolve) => { release = resolve }) }
  })
  t.teardown(() => { release([]); return queue.close() })
  queue.keep([['a', 1], ['b', 1]])
  await waitFor('the first send', () => sends.length === 1)
  queue.keep([['a', 2]])
  release(['a', 'b'])
  await waitFor('the second send', () => sends.length === 2)
  t.same(sends, [[['a', 1], ['b', 1]], [['a', 2]]], 'b settled; a was kept again with a new value and sent again')
  t.equal(queue.get('a'), 2)
  release(['a'])
  await waitFor('nothing left', () => queue.size === 0)
})

test('past maxEntries the oldest are dropped and reported; close reports what is left', async (t) => {
  const events: string[] = []
  const queue = createResendQueue<string, true>({ intervalMs: 60_000, maxEntries: 3, send: async () => [], onChange: (event, n) => { events.push(`${event}:${n}`) } })
  queue.keep([['a', true], ['b', true]])
  queue.keep([['c', true], ['a', true], ['d', true]])
  t.equal(queue.size, 3)
  t.same(events, ['kept:2', 'kept:3', 'dropped:1'], 'b, the oldest, was dropped (a was kept again)')
  await queue.close()
  t.same(events.at(-1), 'dropped:3')
  t.equal(queue.size, 0)
})
