import { test, type Test } from 'tap'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { closeSync, constants, openSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { PassThrough } from 'node:stream'
import { pino } from 'pino'
import { stringify } from 'yaml'
import { createConsumerRegistry, DEMO_CONSUMER_ID } from '../../src/consumers/registry.js'
import { generateKey, hashKey } from '../../src/consumers/keys.js'
import { SCOPES } from '../../src/consumers/scopes.js'

function captureLog () {
  const chunks: string[] = []
  const stream = new PassThrough()
  stream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')))
  return { log: pino(stream), text: () => chunks.join('') }
}

test('authenticate: known, rotated, unknown, malformed and disabled keys', async (t) => {
  const [a1, a2, b, unknown] = [generateKey(), generateKey(), generateKey(), generateKey()]
  const path = join(t.testdir(), 'c.yaml')
  writeFileSync(path, stringify({
    consumers: [
      { id: 'a', key_sha256: [hashKey(a1), hashKey(a2)] },
      { id: 'b', key_sha256: hashKey(b), disabled: true }
    ]
  }))
  const { log } = captureLog()
  const registry = await createConsumerRegistry({ file: path, log })
  t.equal(registry.demoKey, undefined)
  t.equal(registry.authenticate(a1)?.id, 'a')
  t.equal(registry.authenticate(a2)?.id, 'a', 'both keys of a rotation work')
  t.equal(registry.authenticate(unknown), undefined)
  t.equal(registry.authenticate(a1.toUpperCase()), undefined, 'keys are lowercase hex')
  t.equal(registry.authenticate(''), undefined)
  t.equal(registry.authenticate(hashKey(a1)), undefined, 'the hash is not a key')
  t.equal(registry.authenticate(b), undefined, 'a disabled consumer does not authenticate')
  t.equal(registry.get('b')?.disabled, true)
  t.strictSame(registry.list().map((c) => c.id), ['a', 'b'])
  t.notOk(JSON.stringify(registry.list()).includes(hashKey(a1)), 'consumers carry no key hashes')
})

test('reload swaps the set; a broken file keeps the old one and says why', async (t) => {
  const [a, c] = [generateKey(), generateKey()]
  const path = join(t.testdir(), 'c.yaml')
  writeFileSync(path, stringify({ consumers: [{ id: 'a', key_sha256: hashKey(a) }] }))
  const { text, log } = captureLog()
  const registry = await createConsumerRegistry({ file: path, log })
  t.equal(registry.authenticate(a)?.id, 'a', 'a key seen once is remembered (no hash on the next request)')
  t.equal(registry.authenticate(a)?.id, 'a')

  writeFileSync(path, stringify({ consumers: [{ id: 'c', key_sha256: hashKey(c) }, { id: 'a', key_sha256: hashKey(a), disabled: true }] }))
  t.strictSame(await registry.reload(), { ok: true })
  t.equal(registry.authenticate(c)?.id, 'c')
  t.equal(registry.authenticate(a), undefined, 'a remembered key follows the reload: its consumer is now disabled')

  writeFileSync(path, stringify({ consumers: [{ id: 'c', key_sha256: hashKey(c) }] }))
  t.strictSame(await registry.reload(), { ok: true })
  t.equal(registry.authenticate(a), undefined, 'a consumer removed from the file is gone')

  writeFileSync(path, 'consumers:\n  - id: c\n    key_sha256: nope\n')
  const result = await registry.reload()
  t.equal(result.ok, false)
  t.match(result.error, /consumers\[0\] \(id "c"\): field "key_sha256"/)
  t.equal(registry.authenticate(c)?.id, 'c', 'the previous consumers stay')
  t.match(text(), /"level":40.*reload failed/, 'the failure is logged as a warning')
})

test('a grant of a list the catalogue lacks is warned about at boot and on reload, not refused', async (t) => {
  const path = join(t.testdir(), 'c.yaml')
  const entry = (lists: string[]) => ({ id: 'bot', key_sha256: hashKey(generateKey()), scopes: ['write:custom-lists'], lists })
  writeFileSync(path, stringify({ consumers: [entry(['followup-targets', 'mookodi', '*'])] }))
  const { text, log } = captureLog()
  const custom = new Set(['mookodi', 'salt'])
  const registry = await createConsumerRegistry({ file: path, log, isCustomList: (name) => custom.has(name) })
  // Before: nothing said so; PUT answered 404 Unknown custom list while /v1/me showed the grant.
  const warnings = () => text().split('\n').filter((l) => l.includes('"level":40'))
  t.equal(warnings().length, 1)
  t.match(warnings()[0], /"consumer":"bot".*"lists":\["followup-targets"\]/)
  t.equal(registry.get('bot')?.lists.length, 3, 'the grant stays (CUSTOM_LISTS may name it later)')
  writeFileSync(path, stringify({ consumers: [entry(['salt', 'gone'])] }))
  t.strictSame(await registry.reload(), { ok: true })
  t.equal(warnings().length, 2)
  t.match(warnings()[1], /"lists":\["gone"\]/)
})

test('reload listeners run after a reload installed the new set, never after a failed one', async (t) => {
  const path = join(t.testdir(), 'c.yaml')
  writeFileSync(path, stringify({ consumers: [{ id: 'a', key_sha256: hashKey(generateKey()), daily_objects: 100 }] }))
  const { text, log } = captureLog()
  const registry = await createConsumerRegistry({ file: path, log })
  const seen: Array<number | undefined> = []
  registry.onReload(async () => { seen.push(registry.get('a')?.daily_objects) })
  registry.onReload(async () => { throw new Error('listener broke') })
  writeFileSync(path, stringify({ consumers: [{ id: 'a', key_sha256: hashKey(generateKey()), daily_objects: 50 }] }))
  t.strictSame(await registry.reload(), { ok: true }, 'a listener\'s failure does not fail the reload')
  t.strictSame(seen, [50], 'the listener saw the new limits')
  t.match(text(), /"level":40.*listener broke/, 'the listener\'s failure is logged')
  writeFileSync(path, 'consumers: nope\n')
  t.equal((await registry.reload()).ok, false)
  t.strictSame(seen, [50], 'a failed reload changes nothing, so tells no listener')
})

/**
 * Makes `path` a FIFO and starts `read` (which opens it): the read is held until `release` writes `text`
 * into it. Resolves once the reader has opened the FIFO (a writer's non-blocking open succeeds only then),
 * so that `path` may be replaced meanwhile without the held read seeing it.
 */
async function holdRead (t: Test, path: string, read: () => void) {
  const fifo = join(t.testdir(), 'held.fifo')
  execFileSync('mkfifo', [fifo])
  renameSync(fifo, path)
  read()
  let fd: number | undefined
  while (fd === undefined) {
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err
      await sleep(5)
    }
  }
  const writer = fd
  let released = false
  const release = (text: string) => {
    if (released) return
    released = true
    writeSync(writer, text)
    closeSync(writer)
  }
  // A failing test still lets the held read end (it holds a thread of the pool).
  t.teardown(() => release(''))
  return release
}

test('reloads run one at a time: a slow read of an older file never installs after a newer one', { skip: process.platform === 'win32' ? 'needs mkfifo' : false }, async (t) => {
  const [a, b, c] = [generateKey(), generateKey(), generateKey()]
  const path = join(t.testdir(), 'c.yaml')
  const file = (id: string, key: string) => stringify({ consumers: [{ id, key_sha256: hashKey(key) }] })
  writeFileSync(path, file('a', a))
  const registry = await createConsumerRegistry({ file: path, log: captureLog().log })
  const installs: string[] = []
  registry.onReload(async () => { installs.push(registry.list().map((x) => x.id).join(',')) })

  // The first reload reads the file as it was (consumer b), slowly; a newer file (consumer c) replaces it
  // meanwhile, and two more reloads are asked for.
  let first: Promise<unknown> | undefined
  const release = await holdRead(t, path, () => { first = registry.reload() })
  const fresh = join(t.testdir(), 'fresh.yaml')
  writeFileSync(fresh, file('c', c))
  renameSync(fresh, path)
  const second = registry.reload()
  const third = registry.reload()
  // Let the later reloads run as far as they can before the first read ends.
  await sleep(100)
  release(file('b', b))
  const results = await Promise.all([first, second, third])
  t.comment(`installs in order: ${installs.join(' then ')}`)
  t.strictSame(results, [{ ok: true }, { ok: true }, { ok: true }], 'every reload succeeded')
  t.equal(registry.authenticate(c)?.id, 'c', 'the consumers are the file\'s latest')
  t.equal(registry.authenticate(b), undefined, 'the older read did not install last')
  t.strictSame(installs, ['b', 'c'], 'the slow read installed first; the two reloads asked meanwhile ran once, after it')
})

test('more keys than are remembered: every key still authenticates, unknown ones never do', async (t) => {
  const remembered = 20
  const keys = Array.from({ length: remembered + 5 }, () => generateKey())
  const path = join(t.testdir(), 'c.yaml')
  writeFileSync(path, stringify({ consumers: keys.map((key, i) => ({ id: `c${i}`, key_sha256: hashKey(key) })) }))
  const registry = await createConsumerRegistry({ file: path, log: captureLog().log, knownKeysMax: remembered })
  let wrong = 0
  for (let round = 0; round < 2; round++) {
    keys.forEach((key, i) => { if (registry.authenticate(key)?.id !== `c${i}`) wrong++ })
  }
  t.equal(wrong, 0, 'the oldest remembered keys are forgotten and hashed again, never mixed up')
  t.equal(registry.authenticate(generateKey()), undefined)
})

test('a bad file at boot rejects, naming the problem', async (t) => {
  const path = join(t.testdir(), 'c.yaml')
  writeFileSync(path, 'consumers:\n  - id: x\n    key_sha256: 12\n')
  await t.rejects(createConsumerRegistry({ file: path, log: captureLog().log }), /consumers\[0\] \(id "x"\): field "key_sha256"/)
})

test('no file: an in-memory demo consumer with every scope and every list', async (t) => {
  const registry = await createConsumerRegistry({ file: '', log: captureLog().log })
  const key = registry.demoKey
  t.match(key, /^[0-9a-f]{40}$/)
  const demo = registry.authenticate(key ?? '')
  t.equal(demo?.id, DEMO_CONSUMER_ID)
  t.strictSame(demo?.scopes, [...SCOPES])
  t.strictSame(demo?.lists, ['*'])
  t.strictSame(await registry.reload(), { ok: true }, 'reload keeps the demo consumer')
  t.equal(registry.authenticate(key ?? '')?.id, DEMO_CONSUMER_ID)
})
