// One batch per event-loop turn: what callers add while the turn's microtasks run is sent once, after
// them; flush() sends it at once, and what is added after a send starts a new batch.
import { test } from 'tap'
import { createTurnBatch } from '../../src/lib/turn-batch.js'

test('items added in one turn are sent together, once; a later turn is a batch of its own', async (t) => {
  const sent: number[][] = []
  const batch = createTurnBatch<number>(async (items) => { sent.push([...items]) })
  // Added from chained microtasks, as requests' continuations are (each goes on without waiting).
  const adds: Array<Promise<void>> = []
  await Promise.all([
    Promise.resolve().then(() => { adds.push(batch.add([1])) }).then(() => { adds.push(batch.add([2, 3])) }),
    Promise.resolve().then(() => { adds.push(batch.add([4])) })
  ])
  await Promise.all(adds)
  t.same(sent, [[1, 4, 2, 3]], 'one send for the turn, in the order asked')
  await batch.add([5])
  t.same(sent, [[1, 4, 2, 3], [5]], 'the next turn sends its own')
})

test('flush() sends the open batch now; what comes after goes in the next one', async (t) => {
  const sent: string[][] = []
  const batch = createTurnBatch<string>(async (items) => { sent.push([...items]) })
  const a = batch.add(['a'])
  const flushed = batch.flush()
  const b = batch.add(['b'])
  await flushed
  t.same(sent, [['a']], 'the flushed batch went alone')
  await Promise.all([a, b])
  t.same(sent, [['a'], ['b']])
  await batch.flush()
  t.same(sent, [['a'], ['b']], 'a flush with nothing open sends nothing')
})

test('a failed send rejects the callers of its batch only', async (t) => {
  let calls = 0
  const batch = createTurnBatch<number>(async () => { if (calls++ === 0) throw new Error('redis down') })
  await t.rejects(batch.add([1]), /redis down/)
  await t.resolves(batch.add([2]))
})

test('flush() also waits for a batch whose send is still running', async (t) => {
  const sent: number[][] = []
  let finish!: () => void
  const batch = createTurnBatch<number>(async (items) => {
    if (items[0] === 1) await new Promise<void>((resolve) => { finish = resolve })
    sent.push([...items])
  })
  const first = batch.add([1])
  await new Promise((resolve) => setImmediate(resolve))
  let flushed = false
  const flush = batch.flush().then(() => { flushed = true })
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(flushed, false, 'not before the batch in flight is sent')
  finish()
  await Promise.all([first, flush])
  t.same(sent, [[1]])
})
