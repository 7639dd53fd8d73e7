// A compat path without its trailing slash is answered with Django's 301 to the slashed path. The
// redirect needs nothing from the body, so it is answered before the body is read: the route is public
// (the slashed form checks the key, or for auth-token/ the address's AUTH_TOKEN_RATE, also before the
// body), and a body it read first let any caller have the gateway buffer 2.5 MiB per request, unlimited.
// Over loopback with a raw socket: the request's headers declare a 2 MiB form and no body byte is sent
// until the server has either answered or begun to read the body.
import { connect, type Socket } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { once } from 'node:events'
import { test } from 'tap'
import { buildTestApp, UNUSED_UPSTREAM } from '../../helper.js'
import { waitFor } from '../../fixtures/wait.js'

const BODY_BYTES = 2 * 1024 * 1024

for (const endpoint of ['auth-token', 'objects']) {
  test(`POST /atlas/api/${endpoint} (no slash): the 301 comes before any byte of the body is read`, async (t) => {
    const { app } = await buildTestApp(t, { config: { ATLAS_BASE_URL: UNUSED_UPSTREAM } })
    await app.listen({ port: 0, host: '127.0.0.1' })
    let seen: { req: IncomingMessage, res: ServerResponse, socket: Socket, readAtAnswer?: number } | undefined
    app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const entry: NonNullable<typeof seen> = { req, res, socket: req.socket }
      res.once('finish', () => { entry.readAtAnswer = entry.socket.bytesRead })
      seen = entry
    })

    const client = connect((app.server.address() as { port: number }).port, '127.0.0.1')
    t.teardown(() => { client.destroy() })
    await once(client, 'connect')
    let response = ''
    client.on('data', (chunk: Buffer) => { response += chunk.toString('latin1') })
    const head = `POST /atlas/api/${endpoint}?x=1 HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${BODY_BYTES}\r\n\r\n`
    client.write(head)

    await waitFor('the server to answer or to start reading the body', () =>
      seen !== undefined && (seen.res.writableFinished || seen.req.readableFlowing === true))
    const state = seen as NonNullable<typeof seen>
    const isReadingFirst = !state.res.writableFinished
    // The server waits for the body before answering: send it, to see the answer come and what it cost.
    if (isReadingFirst) client.write(Buffer.alloc(BODY_BYTES, 'a'))
    await waitFor('the answer\'s head', () => response.includes('\r\n\r\n'))
    await waitFor('the server to finish its answer', () => state.readAtAnswer !== undefined)
    const bodyRead = (state.readAtAnswer as number) - Buffer.byteLength(head)
    t.comment(`${endpoint}: answered after reading ${bodyRead} of the ${BODY_BYTES} body bytes`)
    t.notOk(isReadingFirst, 'the server answered without starting to read the body')
    t.equal(bodyRead, 0, 'no body byte read before the answer')
    t.match(response, /^HTTP\/1\.1 301 /, 'the redirect, as before')
    t.match(response, new RegExp(`\\r\\nlocation: /atlas/api/${endpoint}/\\?x=1\\r\\n`, 'i'), 'to the slashed path, query kept')
    t.match(response, /\r\ncontent-type: text\/html; charset=utf-8\r\n/i)
  })
}
