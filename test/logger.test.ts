import { test } from 'tap'
import { PassThrough } from 'node:stream'
import { buildApp } from '../src/app.js'
import { lazyRequestLogger, redactUrl } from '../src/logger.js'
import { pino } from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import { testConfig, UNUSED_UPSTREAM } from './helper.js'

test('redactUrl hides secret query values only', async (t) => {
  t.equal(redactUrl('/atlas/api/cone/?token=abcdef&ra=1'), '/atlas/api/cone/?token=[Redacted]&ra=1')
  t.equal(redactUrl('/x?a=1&TOKEN=zz'), '/x?a=1&TOKEN=[Redacted]')
  t.equal(redactUrl('/x?tokens=1'), '/x?tokens=1')
  t.equal(redactUrl('/plain'), '/plain')
})

test('a request carrying Authorization and ?token= logs neither secret', async (t) => {
  const chunks: string[] = []
  const logStream = new PassThrough()
  logStream.on('data', (c: Buffer) => chunks.push(c.toString()))
  const app = await buildApp(testConfig({ LOG_LEVEL: 'trace', ATLAS_BASE_URL: UNUSED_UPSTREAM }), { logStream })
  t.teardown(() => app.close())
  const secret = '0123456789abcdef0123456789abcdef01234567'
  const res = await app.inject({
    url: `/nope?token=${secret}`,
    headers: { authorization: `Bearer ${secret}`, 'x-api-key': secret, cookie: `s=${secret}` }
  })
  t.equal(res.statusCode, 404)
  const text = chunks.join('')
  t.ok(text.includes('"request_id"'), 'log lines carry the request id')
  t.ok(text.length > 0)
  t.notOk(text.includes(secret), 'no secret in the logs')
})

// The production destination (stdout, asynchronous, batched), in a child process whose stdout this
// test reads: a lone line still comes out soon (the batch timer), and lines written just before
// process.exit are not lost.
test('the stdout destination: batched, yet a lone line arrives, and exit flushes', async (t) => {
  const { spawn } = await import('node:child_process')
  const { fileURLToPath } = await import('node:url')
  const logger = fileURLToPath(new URL('../src/logger.ts', import.meta.url))
  const script = `
    import { pino } from 'pino'
    import { createLogDestination } from ${JSON.stringify(logger)}
    const log = pino({ level: 'info' }, createLogDestination())
    log.info('lone')
    process.stdin.once('data', () => {
      for (let i = 0; i < 3; i++) log.info({ i }, 'before exit')
      process.exit(0)
    })`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill() })
  let out = ''
  const lone = new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8')
      if (out.includes('"lone"')) resolve()
    })
  })
  // Far longer than the 200 ms batch timer: a bound on a hang, not a timing assertion.
  await Promise.race([lone, new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`no lone line in 5 s: ${out}`)), 5000))])
  t.ok(out.includes('"msg":"lone"'), 'a lone line is written without a flush from the caller')
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
  child.stdin.write('go\n')
  t.equal(await exited, 0)
  const lines = out.split('\n').filter((l) => l.includes('before exit'))
  t.equal(lines.length, 3, 'lines written just before process.exit are flushed')
})

// Under a write that does not finish (stdout not read: a full pipe), the batch timer must not pile up
// flush waiters: each sonic-boom flush(cb) adds 'drain' and 'error' listeners until the write drains
// (seen as MaxListenersExceededWarning in bench runs), and nothing may be lost once it does drain.
test('the stdout destination: a blocked stdout does not pile up flush listeners, and every line arrives', async (t) => {
  const { spawn } = await import('node:child_process')
  const { fileURLToPath } = await import('node:url')
  const logger = fileURLToPath(new URL('../src/logger.ts', import.meta.url))
  const LINES = 600
  const script = `
    import { pino } from 'pino'
    import { createLogDestination } from ${JSON.stringify(logger)}
    const dest = createLogDestination()
    const log = pino({ level: 'info' }, dest)
    const pad = 'x'.repeat(1000)
    let i = 0
    let most = 0
    const timer = setInterval(() => {
      for (let k = 0; k < 20 && i < ${LINES}; k++) log.info({ i: i++, pad }, 'line')
      most = Math.max(most, dest.listenerCount('drain'))
      if (i >= ${LINES}) {
        clearInterval(timer)
        setTimeout(() => { process.stderr.write('most drain listeners: ' + most + '\\n'); process.exit(0) }, 2500)
      }
    }, 100)`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill() })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
  // stdout is not read for 3.5 s while the child logs for 3 s: the pipe (64 KiB) fills after ~60 lines
  // and the write in flight waits; the batch timer fires about 15 times meanwhile.
  child.stdout.pause()
  await new Promise((resolve) => setTimeout(resolve, 3500))
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stdout.resume()
  const exited = await new Promise<number | null>((resolve) => child.once('close', resolve))
  t.equal(exited, 0)
  const most = Number(/most drain listeners: (\d+)/.exec(err)?.[1])
  t.ok(most <= 1, `at most one flush waits for the write at a time (most 'drain' listeners: ${most})`)
  t.notMatch(err, /MaxListenersExceededWarning/)
  const numbers = out.split('\n').filter((l) => l.includes('"msg":"line"')).map((l) => (JSON.parse(l) as { i: number }).i)
  t.equal(numbers.length, LINES, 'every line arrives')
  t.same(numbers, [...numbers].sort((a, b) => a - b), 'in order')
})

test('request.log is made on first use, with the request id and the route\'s options', async (t) => {
  const chunks: string[] = []
  const stream = new PassThrough()
  stream.on('data', (c: Buffer) => chunks.push(c.toString()))
  const parent = pino({ level: 'info' }, stream) as unknown as FastifyBaseLogger
  let children = 0
  const counting = Object.create(parent, { child: { value: (...args: Parameters<FastifyBaseLogger['child']>) => { children++; return parent.child(...args) } } }) as FastifyBaseLogger
  const quiet = lazyRequestLogger(counting, { request_id: 'r-1' }, {})
  t.equal(quiet.level, 'info', 'the level is the parent\'s until the route sets one')
  t.equal(children, 0, 'a request that logs nothing makes no child logger')
  const loud = lazyRequestLogger(counting, { request_id: 'r-2' }, { level: 'warn' })
  t.equal(loud.level, 'warn')
  loud.info('not at warn')
  loud.warn({ n: 1 }, 'kept')
  loud.error('kept too')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(children, 1, 'one child, on first use')
  const lines = chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(lines, [{ request_id: 'r-2', n: 1, msg: 'kept', level: 40 }, { request_id: 'r-2', msg: 'kept too', level: 50 }])
  t.equal(lines.length, 2)
  t.match((loud.child({ step: 'x' }, {}) as unknown as { bindings: () => object }).bindings(), { request_id: 'r-2', step: 'x' })
})
