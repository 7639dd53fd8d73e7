// The upstream client decodes a reply's UTF-8 as its chunks arrive (client.ts), so a character whose
// bytes are split between two chunks must come out whole. A loopback proxy in front of the sandbox puts
// a two-byte character into an object's record and sends the reply in two writes that split it.
import { test } from 'tap'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Sandbox } from '../../src/sandbox/index.js'
import { buildTestApp, demoAuth, startTestSandbox } from '../helper.js'

const MARK = 'Å' // U+00C5: two bytes in UTF-8

test('a character split across two chunks of an upstream reply arrives whole', async (t) => {
  const sandbox = await startTestSandbox(t)
  const target = new URL(sandbox.baseUrl)
  let split = 0
  const proxy = createServer((req, res) => {
    const forward = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const chunks: Buffer[] = []
      up.on('data', (c: Buffer) => chunks.push(c))
      up.on('end', () => {
        let body = Buffer.concat(chunks)
        const at = req.url?.endsWith('/objects/') === true ? body.indexOf('"ATLAS-NORTH"') : -1
        if (at >= 0) body = Buffer.concat([body.subarray(0, at + 1), Buffer.from(MARK), body.subarray(at + 2)])
        const headers = { ...up.headers, 'content-length': String(body.length) }
        delete headers['transfer-encoding']
        res.writeHead(up.statusCode ?? 502, headers)
        if (at < 0) {
          res.end(body)
          return
        }
        // The first write ends after the first byte of the two-byte character.
        split++
        res.write(body.subarray(0, at + 2))
        setTimeout(() => res.end(body.subarray(at + 2)), 30)
      })
    })
    req.pipe(forward)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { proxy.close() })
  const { port } = proxy.address() as AddressInfo
  const upstream = Object.create(sandbox, { baseUrl: { value: `http://127.0.0.1:${port}${target.pathname}` } }) as Sandbox
  const { app } = await buildTestApp(t, { upstream })
  const [id] = sandbox.ids()
  const res = await app.inject({ url: `/v1/objects/${String(id)}`, headers: demoAuth(app) })
  t.equal(res.statusCode, 200)
  t.equal(split, 1, 'the reply was sent in two writes splitting the character')
  t.equal(res.json().object.survey_field, `${MARK}TLAS-NORTH`, 'the field carries the character whole')
  t.notOk(res.body.includes('\uFFFD'), 'no replacement character')
})
