// The keys CLI edits the consumers file; a running gateway picks the edit up through
// app.consumers.reload() (what SIGHUP calls).
import { test } from 'tap'
import { join } from 'node:path'
import { readFileSync, writeFileSync } from 'node:fs'
import { runKeys, type KeysIo } from '../../src/cli/keys.js'
import { hashKey } from '../../src/consumers/keys.js'
import { bearer, buildAuthTestApp } from '../consumer-helper.js'

function io (env: Record<string, string> = {}) {
  let out = ''
  let err = ''
  const value: KeysIo = { env, out: (text) => { out += text }, err: (text) => { err += text } }
  return { io: value, out: () => out, err: () => err }
}

async function keys (argv: string[], env: Record<string, string> = {}) {
  const cli = io(env)
  const code = await runKeys(argv, cli.io)
  return { code, out: cli.out(), err: cli.err() }
}

test('create → the key works; update adds a key; revoke → 401; reload picks up changes', async (t) => {
  const file = join(t.testdir(), 'consumers.yaml')
  const created = await keys(['create', 'mookodi-bot', '--scopes', 'read,write:custom-lists', '--lists', 'mookodi', '--rate', '100/minute', '--name', 'Mookodi', '--file', file])
  t.equal(created.code, 0, created.err)
  const first = created.out.trim()
  t.match(first, /^[0-9a-f]{40}$/, 'the key alone on stdout')
  t.match(created.err, /created consumer "mookodi-bot"/)
  const text = readFileSync(file, 'utf8')
  t.notOk(text.includes(first), 'the file never holds the key')
  t.ok(text.includes(hashKey(first)), 'only its SHA-256')

  const { app } = await buildAuthTestApp(t, { config: { CONSUMERS_FILE: file } })
  const me = (key: string) => app.inject({ method: 'GET', url: '/v1/me', headers: bearer(key) })
  const res = await me(first)
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: 'mookodi-bot', name: 'Mookodi', scopes: ['read', 'write:custom-lists'], lists: ['mookodi'], limits: { rate: '100/minute' } })

  const second = (await keys(['create', 'mookodi-bot', '--file', file])).out.trim()
  t.strictSame(await app.consumers.reload(), { ok: true })
  t.equal((await me(first)).statusCode, 200, 'an update keeps the existing key (rotation)')
  t.equal((await me(second)).statusCode, 200, 'and adds the new one')

  const listed = await keys(['list', '--file', file])
  t.equal(listed.code, 0)
  t.match(listed.out, /^mookodi-bot\tname=Mookodi\tscopes=read,write:custom-lists\tlists=mookodi\trate=100\/minute\tlast_used=never\tkeys=[0-9a-f]{12}@never,[0-9a-f]{12}@never\n$/)
  for (const key of [first, second]) {
    t.notOk(listed.out.includes(key), 'list shows no keys')
    t.notOk(listed.out.includes(hashKey(key)), 'nor whole hashes')
  }

  const revoked = await keys(['revoke', hashKey(first).slice(0, 10), '--file', file])
  t.equal(revoked.code, 0, revoked.err)
  await app.consumers.reload()
  t.equal((await me(first)).statusCode, 401, 'the revoked key is refused')
  t.equal((await me(second)).statusCode, 200, 'the other key still works')

  const env = { CONSUMERS_FILE: file }
  const other = (await keys(['create', 'broker'], env)).out.trim()
  t.equal((await me(other)).statusCode, 401, 'not known before a reload')
  await app.consumers.reload()
  t.equal((await me(other)).statusCode, 200, 'a new consumer after reload, without a restart')

  const replaced = (await keys(['create', 'mookodi-bot', '--replace'], env)).out.trim()
  await app.consumers.reload()
  t.equal((await me(second)).statusCode, 401, '--replace drops the old keys')
  t.equal((await me(replaced)).statusCode, 200)

  t.equal((await keys(['revoke', 'mookodi-bot'], env)).code, 0)
  await app.consumers.reload()
  t.equal((await me(replaced)).statusCode, 401, 'revoking by id revokes every key')
  t.equal(app.consumers.get('mookodi-bot')?.disabled, true)
  t.equal((await me(other)).statusCode, 200, 'other consumers are untouched')

  const again = await keys(['create', 'mookodi-bot'], env)
  t.match(again.err, /re-enabled consumer "mookodi-bot"/)
  await app.consumers.reload()
  t.equal((await me(again.out.trim())).statusCode, 200, 'a new key re-enables a revoked consumer')
  t.equal((await me(replaced)).statusCode, 401, 'and the revoked keys stay revoked')
})

test('bad input leaves the file unchanged', async (t) => {
  const file = join(t.testdir(), 'c.yaml')
  t.equal((await keys(['create', 'a', '--file', file])).code, 0)
  const before = readFileSync(file, 'utf8')
  const bad = await keys(['create', 'b', '--scopes', 'read,root', '--file', file])
  t.equal(bad.code, 1)
  t.match(bad.err, /consumers\[1\] \(id "b"\): field "scopes\[1\]"/)
  t.equal(bad.out, '', 'no key is printed for a consumer that was not saved')
  t.equal((await keys(['create', 'c', '--max-batch', 'lots', '--file', file])).code, 1)
  t.equal((await keys(['create', 'bad id!', '--file', file])).code, 1)
  t.equal((await keys(['revoke', 'abc', '--file', file])).code, 1, 'a short prefix is not enough')
  t.match((await keys(['revoke', 'ffffffffff', '--file', file])).err, /no key hash starts with/)
  t.equal(readFileSync(file, 'utf8'), before)
  t.equal((await keys([])).code, 2, 'usage')
  t.equal((await keys(['frobnicate'])).code, 2)
})

test('comments survive edits, and JSON files stay JSON', async (t) => {
  const dir = t.testdir()
  const yamlFile = join(dir, 'c.yaml')
  writeFileSync(yamlFile, '# operators: keep this\nconsumers: []\n')
  await keys(['create', 'a', '--file', yamlFile])
  t.match(readFileSync(yamlFile, 'utf8'), /^# operators: keep this/)
  const jsonFile = join(dir, 'c.json')
  writeFileSync(jsonFile, '{"consumers":[]}')
  await keys(['create', 'a', '--daily-objects', '50', '--max-batch', '5', '--upstream-share', '3', '--file', jsonFile])
  const parsed = JSON.parse(readFileSync(jsonFile, 'utf8'))
  t.match(parsed, { consumers: [{ id: 'a', daily_objects: 50, max_batch: 5, upstream_share: 3 }] })
})
