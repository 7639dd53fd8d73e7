// The keeper of invalidations Redis has not taken (src/cache/unsent-invalidations.ts): tags are sent
// again until a send succeeds, tags kept during a send wait for the next one, and the oldest are dropped
// past the bound.
import { test } from 'tap'
import { createUnsentInvalidations } from '../../src/cache/unsent-invalidations.js'
import { waitFor } from '../fixtures/wait.js'

test('kept tags are sent again until Redis takes them, then no more', async (t) => {
  const sends: string[][] = []
  let isRedisBack = false
  const events: string[] = []
  const unsent = createUnsentInvalidations({
    intervalMs: 10,
    send: async (tags) => { sends.push(tags); return isRedisBack },
    onChange: (event, n) => { events.push(`${event}:${n}`) }
  })
  t.teardown(() => unsent.close())
  unsent.keep(['object:1', 'list:good'])
  await waitFor('two failed sends', () => sends.length >= 2)
  t.equal(unsent.size, 2, 'kept while Redis refuses')
  isRedisBack = true
  await waitFor('the tags to be sent', () => unsent.size === 0)
  const count = sends.length
  t.same(sends.at(-1), ['object:1', 'list:good'])
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(sends.length, count, 'nothing left to send: no more calls')
  t.same(events, ['kept:2', 'sent:2'])
})

test('a tag kept while a send is out waits for the next send', async (t) => {
  let release!: (ok: boolean) => void
  const sends: string[][] = []
  const unsent = createUnsentInvalidations({
    intervalMs: 10,
    send: async (tags) => { sends.push(tags); return new Promise<boolean>((resolve) => { release = resolve }) }
  })
  t.teardown(() => { release(true); return unsent.close() })
  unsent.keep(['a'])
  await waitFor('the first send', () => sends.length === 1)
  unsent.keep(['b'])
  release(true)
  await waitFor('the second send', () => sends.length === 2)
  t.same(sends, [['a'], ['b']])
  release(true)
  await waitFor('nothing left', () => unsent.size === 0)
})

test('past maxTags the oldest tags are dropped and reported; close reports what is left', async (t) => {
  const events: string[] = []
  const unsent = createUnsentInvalidations({ intervalMs: 60_000, maxTags: 3, send: async () => false, onChange: (event, n) => { events.push(`${event}:${n}`) } })
  unsent.keep(['a', 'b'])
  unsent.keep(['c', 'a', 'd'])
  t.equal(unsent.size, 3)
  t.same(events, ['kept:2', 'kept:3', 'dropped:1'], 'b, the oldest, was dropped (a was kept again)')
  await unsent.close()
  t.same(events.at(-1), 'dropped:3')
  t.equal(unsent.size, 0)
})
