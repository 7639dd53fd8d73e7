import { test } from 'tap'
import { createSingleFlight } from '../../src/lib/single-flight.js'

function deferred<T> () {
  let resolve!: (value: T) => void
  let reject!: (err: unknown) => void
  const promise = new Promise<T>((_resolve, _reject) => { resolve = _resolve; reject = _reject })
  return { promise, resolve, reject }
}

test('50 concurrent calls for one key share one call and its value', async (t) => {
  const flight = createSingleFlight<string, number>()
  const gate = deferred<number>()
  let calls = 0
  const all = Array.from({ length: 50 }, async () => flight.run('k', async () => { calls++; return gate.promise }))
  t.ok(flight.has('k'))
  t.equal(flight.size, 1)
  gate.resolve(42)
  t.same(await Promise.all(all), Array(50).fill(42))
  t.equal(calls, 1)
  t.notOk(flight.has('k'), 'forgotten once settled')
  t.equal(await flight.run('k', async () => 7), 7, 'a later call runs again')
})

test('different keys run independently', async (t) => {
  const flight = createSingleFlight<number, string>()
  const [a, b] = await Promise.all([flight.run(1, async () => 'one'), flight.run(2, async () => 'two')])
  t.equal(a, 'one')
  t.equal(b, 'two')
})

test('a failure is shared by the callers in flight and not remembered', async (t) => {
  const flight = createSingleFlight<string, string>()
  const gate = deferred<string>()
  const first = flight.run('k', async () => gate.promise)
  const second = flight.run('k', async () => 'never called')
  gate.reject(new Error('upstream down'))
  await t.rejects(first, /upstream down/)
  await t.rejects(second, /upstream down/)
  t.equal(await flight.run('k', async () => 'recovered'), 'recovered')
})

test('a synchronous throw becomes a shared rejection', async (t) => {
  const flight = createSingleFlight<string, string>()
  const boom = (): Promise<string> => { throw new Error('sync') }
  await t.rejects(flight.run('k', boom), /sync/)
  t.equal(flight.size, 0)
})

test('a call in flight that canJoin refuses is replaced; it settling does not drop its successor', async (t) => {
  const flight = createSingleFlight<string, string>()
  const old = deferred<string>()
  const next = deferred<string>()
  const first = flight.run('k', async () => old.promise)
  const second = flight.run('k', async () => next.promise, () => false)
  const third = flight.run('k', async () => 'never called')
  old.resolve('before')
  t.equal(await first, 'before')
  t.ok(flight.has('k'), 'the successor is still in flight')
  next.resolve('after')
  t.equal(await second, 'after')
  t.equal(await third, 'after', 'later callers join the successor')
  t.notOk(flight.has('k'))
})
