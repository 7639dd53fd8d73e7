import { test } from 'tap'
import { PassThrough } from 'node:stream'
import { buildApp } from '../src/app.js'
import { redactUrl } from '../src/logger.js'
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
