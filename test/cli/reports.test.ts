// The audit, usage and keys CLIs, spawned for real through npm as an operator runs them, against what a
// gateway wrote (Redis when REDIS_URL is set, else the files).
import { test } from 'tap'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { AuditRecord } from '../../src/audit/record.js'
import { runAudit, type CliIo } from '../../src/cli/audit.js'
import { runKeys, type KeysIo } from '../../src/cli/keys.js'
import { runUsage } from '../../src/cli/usage.js'
import { hashKey } from '../../src/consumers/keys.js'
import { buildTestApp, FIXTURE_IDS } from '../helper.js'
import { bearer, consumersFile, makeConsumer } from '../consumer-helper.js'
import { clearOfMidnight } from '../fixtures/wait.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const { A, B } = FIXTURE_IDS

interface Run { code: number | null, out: string, err: string }

function io (env: Record<string, string>) {
  const result = { out: '', err: '' }
  const value: CliIo & KeysIo = { env, out: (text) => { result.out += text }, err: (text) => { result.err += text } }
  return { io: value, result }
}

async function inProcess (runner: (argv: string[], io: CliIo) => Promise<number>, args: string[], env: Record<string, string>): Promise<Run> {
  const cli = io(env)
  const code = await runner(args, cli.io)
  return { code, ...cli.result }
}

/** `npm run -s <script> -- args`, or (quicker: each npm start costs seconds here) node with tsx, as npm runs it. */
function run (how: 'npm' | 'node', script: string, args: string[], env: Record<string, string>, timeoutMs?: number): Promise<Run> {
  const [command, argv] = how === 'npm'
    ? ['npm', ['run', '-s', script, '--', ...args]]
    : [process.execPath, ['--import', 'tsx', `src/cli/${script}.ts`, ...args]]
  return new Promise((resolve, reject) => {
    // A child still running after timeoutMs is killed (its code is then null).
    const child = spawn(command, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(timeoutMs === undefined ? {} : { timeout: timeoutMs }) })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, out, err }))
  })
}

test('npm run audit, usage and keys read what the gateway wrote', { timeout: 300000 }, async (t) => {
  await clearOfMidnight()
  const alice = makeConsumer('alice', { scopes: ['read', 'write:vra', 'write:custom-lists'], lists: ['*'] })
  const bob = makeConsumer('bob', { scopes: ['read', 'write:vra'] })
  const file = consumersFile(t, [alice, bob])
  const { app, config, sandbox } = await buildTestApp(t, { config: { CONSUMERS_FILE: file } })
  const env = {
    REDIS_URL: config.REDIS_URL,
    REDIS_KEY_PREFIX: config.REDIS_KEY_PREFIX,
    AUDIT_FILE: config.AUDIT_FILE,
    USAGE_FILE: config.USAGE_FILE,
    CONSUMERS_FILE: file
  }
  const write = async (key: string, url: string, payload?: object) => {
    const res = await app.inject({ method: payload === undefined ? 'PUT' : 'POST', url, headers: bearer(key), ...(payload === undefined ? {} : { payload }) })
    t.ok(res.statusCode < 300, `${url}: ${res.statusCode}`)
  }
  await write(alice.key, '/v1/vra/todo', { id: B })
  await write(alice.key, `/v1/custom-lists/vra/objects/${A}`)
  await write(bob.key, '/v1/vra/scores', { id: B, preal: 0.25 })
  await app.usage.flush()

  const json = await run('npm', 'audit', ['--consumer', 'alice', '--since', '2000-01-01', '--json'], env)
  t.equal(json.code, 0, json.err)
  const records = json.out.trim().split('\n').map((line) => JSON.parse(line) as AuditRecord)
  t.strictSame(records.map((r) => [r.consumer, r.endpoint]), [['alice', 'vratodo'], ['alice', 'objectgroups']])
  t.match(json.err, /2 records/)

  const csv = await run('node', 'audit', ['--since', '2000-01-01', '--object', A, '--csv'], env)
  t.equal(csv.code, 0, csv.err)
  const rows = csv.out.trim().split('\r\n')
  t.match(rows[0], /^id,time,consumer,request_id,route,dialect,endpoint,object_ids,list,fields,outcome,upstream_status,error$/)
  t.equal(rows.length, 2, 'the one write of that object')
  t.match(rows[1], /,alice,.*,objectgroups,/)

  const text = await inProcess(runAudit, ['--since', '2999-01-01'], env)
  t.equal(text.code, 0)
  t.equal(text.out, '', 'nothing since then')
  const bobText = await inProcess(runAudit, ['--since', '2000-01-01', '--consumer', 'bob'], env)
  t.match(bobText.out, /\tbob\tPOST \/v1\/vra\/scores\tvrascores\t/)
  t.equal((await inProcess(runAudit, ['--consumer', 'alice'], env)).code, 2, '--since is required')
  const badDate = await inProcess(runAudit, ['--since', '2026-02-30'], env)
  t.equal(badDate.code, 1)
  t.match(badDate.err, /--since must be a date/)

  const month = new Date().toISOString().slice(0, 7)
  const usage = await run('npm', 'usage', ['--month', month, '--csv'], env)
  t.equal(usage.code, 0, usage.err)
  const usageRows = usage.out.trim().split('\r\n')
  t.match(usageRows[0], /^day,consumer,requests,requests_by_class,units,upstream_calls,cache_lookups,cache_hits,cache_hit_ratio,writes,errors,client_errors,rejections$/)
  t.match(usageRows.find((r) => r.includes(',alice,')), /,alice,2,custom-lists=1 vra=1,/)
  t.match(usageRows.find((r) => r.includes(',bob,')), /,bob,1,vra=1,/)
  const usageJson = await inProcess(runUsage, ['--month', month, '--consumer', 'bob', '--json'], env)
  t.match(JSON.parse(usageJson.out.trim()), { consumer: 'bob', requests: 1, writes: 1 })
  t.equal((await inProcess(runUsage, ['--month', '2026-13'], env)).code, 1)
  const rolled = await inProcess(runUsage, ['--from', '2026-02-30', '--to', '2026-03-01'], env)
  t.equal(rolled.code, 1, 'an impossible date is refused, not rolled over')
  t.match(rolled.err, /from ≤ to/)
  const range = await inProcess(runUsage, ['--from', `${month}-01`, '--to', new Date().toISOString().slice(0, 10), '--consumer', 'alice'], env)
  t.equal(range.code, 0, range.err)
  t.match(range.out, /\talice\trequests=2 \(custom-lists=1,vra=1\)\tunits=0\t/)
  t.equal((await inProcess(runUsage, [], env)).code, 2)

  // keys: last use per key, expiry set, listed, extended.
  const listed = await run('node', 'keys', ['list'], env)
  t.equal(listed.code, 0, listed.err)
  t.match(listed.out, new RegExp(`^alice\\t.*\\tlast_used=\\d{4}-\\d{2}-\\d{2}T[^\\t]+\\tkeys=${hashKey(alice.key).slice(0, 12)}@\\d{4}-`, 'm'))
  t.equal((await inProcess(runKeys, ['expire', 'bob', '2020-01-31'], env)).code, 0)
  const expired = await inProcess(runKeys, ['expired'], env)
  t.equal(expired.out, 'bob\texpires=2020-01-31\texpired=2020-02-01T00:00:00.000Z\n')
  const extended = await inProcess(runKeys, ['extend', 'bob', '--days', '10'], env)
  t.equal(extended.code, 0, extended.err)
  const today = Date.parse(new Date().toISOString().slice(0, 10) + 'T00:00:00Z')
  const expected = new Date(today + 10 * 86400000).toISOString().slice(0, 10)
  t.match(extended.err, new RegExp(`now expires ${expected} \\(was 2020-01-31\\)`), 'an expired key is extended from today')
  t.match(readFileSync(file, 'utf8'), new RegExp(`expires: ${expected}|expires: "${expected}"`))
  t.equal((await inProcess(runKeys, ['expired'], env)).out, '', 'no longer expired')
  t.equal((await app.consumers.reload()).ok, true, 'the gateway accepts the edited file')
  t.equal(app.consumers.get('bob')?.expires, expected)
  t.equal((await inProcess(runKeys, ['expire', 'bob', 'never'], env)).code, 0)
  t.notMatch(readFileSync(file, 'utf8'), /expires/)
  t.equal((await inProcess(runKeys, ['expire', 'bob', '2026-02-30'], env)).code, 1, 'an impossible date is refused')
  t.equal((await inProcess(runKeys, ['extend', 'bob', '--days', '3'], env)).code, 1, 'nothing to extend')

  const outputs = [json, csv, bobText, usage, usageJson, listed].map((r) => r.out + r.err).join('\n')
  for (const secret of [alice.key, bob.key, ...Object.values(sandbox.tokens)]) t.notOk(outputs.includes(secret), 'no secret in any output')
})

test('with Redis unreachable, audit and usage fail at once and keys list still ends', { timeout: 120000 }, async (t) => {
  // A port nothing listens on. The clients used to keep reconnecting after a failed connect, and the
  // commands never exited (killed by `timeout` after 60 s in a reviewer's run; here after 20 s: code null).
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  const file = consumersFile(t, [makeConsumer('alice', { scopes: ['read'] })])
  const env = { REDIS_URL: `redis://127.0.0.1:${port}`, CONSUMERS_FILE: file }
  const [audit, usage, listed] = await Promise.all([
    run('node', 'audit', ['--since', '2026-11-01'], env, 20000),
    run('node', 'usage', ['--month', '2026-11'], env, 20000),
    run('node', 'keys', ['list'], env, 20000)
  ])
  t.equal(audit.code, 1, 'audit ended, failing')
  t.match(audit.err, /audit:/)
  t.equal(usage.code, 1, 'usage ended, failing')
  t.equal(listed.code, 0, 'keys list ended')
  t.match(listed.out, /alice/)
  t.match(listed.err + listed.out, /last uses unknown/)
})
