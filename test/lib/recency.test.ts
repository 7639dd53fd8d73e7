// Recency order in a Map without a delete and a set on every touch (src/lib/recency.ts).
import { test } from 'tap'
import { RecencyOrder, type Ranked } from '../../src/lib/recency.js'

function filled (n: number): { map: Map<string, Ranked>, order: RecencyOrder } {
  const order = new RecencyOrder()
  const map = new Map<string, Ranked>()
  for (let i = 0; i < n; i++) map.set(`k${i}`, order.stamp({ rank: 0 }))
  return { map, order }
}

test('a key in the older half moves to the newest end; small maps keep exact LRU order', async (t) => {
  const { map, order } = filled(2)
  order.touch(map, 'k0', map.get('k0') as Ranked)
  t.same([...map.keys()], ['k1', 'k0'], 'the oldest key, read, becomes the newest')
  order.touch(map, 'k0', map.get('k0') as Ranked)
  t.same([...map.keys()], ['k1', 'k0'])
  const big = filled(100)
  big.order.touch(big.map, 'k10', big.map.get('k10') as Ranked)
  t.equal([...big.map.keys()].at(-1), 'k10', 'a key in the older half moves')
  t.equal([...big.map.keys()][0], 'k0', 'the rest keep their order')
})

test('a hot key read 10,000 times in a 1,000-key map moves once, and stays out of eviction\'s way', async (t) => {
  const { map, order } = filled(1000)
  const hot = map.get('k0') as Ranked
  let moves = 0
  for (let i = 0; i < 10_000; i++) {
    const before = hot.rank
    order.touch(map, 'k0', hot)
    if (hot.rank !== before) moves++
  }
  t.equal(moves, 1, 'moved once: after that it is in the newer half')
  // 499 newer keys leave it in the newer half: evicting the 499 oldest keys spares it, and a read leaves it.
  for (let i = 0; i < 499; i++) map.set(`n${i}`, order.stamp({ rank: 0 }))
  for (let i = 0; i < 499; i++) map.delete(map.keys().next().value as string)
  t.ok(map.has('k0'), 'still held after as many evictions as new keys')
  const rank = hot.rank
  order.touch(map, 'k0', hot)
  t.equal(hot.rank, rank, 'not moved while half the keys are older')
  // One more makes 500 newer keys of 1,000: the older half, so a read moves it to the newest end.
  map.set('n499', order.stamp({ rank: 0 }))
  map.delete(map.keys().next().value as string)
  order.touch(map, 'k0', hot)
  t.not(hot.rank, rank, 'moved once in the older half')
  t.equal([...map.keys()].at(-1), 'k0')
})
