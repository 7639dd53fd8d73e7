// B1 and B2: a bare Fastify route returning the bytes the gateway returns for the same object, from
// memory (B1, the ceiling of any Node gateway here) or from Redis with getBuffer (B2, the ceiling of
// a Redis-backed hit). No logger, no hooks: only what every Fastify route pays.
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { announce, onClose, settingsFrom } from './child-ipc.js'

interface BaselineSettings {
  mode: 'memory' | 'redis'
  bodyFile: string
  contentType: string
  redisUrl: string
  redisKey: string
}

const settings = settingsFrom<BaselineSettings>('BENCH_BASELINE')
const body = readFileSync(settings.bodyFile)
const app = Fastify({ logger: false })
let redis: Redis | undefined

if (settings.mode === 'redis') {
  const client = new Redis(settings.redisUrl, { lazyConnect: true })
  await client.connect()
  await client.set(settings.redisKey, body, 'PX', 3600000)
  redis = client
  app.get('/object', async (request, reply) => {
    const value = await client.getBuffer(settings.redisKey)
    return reply.type(settings.contentType).send(value)
  })
} else {
  app.get('/object', async (request, reply) => reply.type(settings.contentType).send(body))
}

await app.listen({ port: 0, host: '127.0.0.1' })
const address = app.server.address()
const port = typeof address === 'object' && address !== null ? address.port : 0
onClose(async () => {
  await app.close()
  if (redis !== undefined) {
    await redis.del(settings.redisKey)
    await redis.quit()
  }
})
announce({ port, origin: `http://127.0.0.1:${port}` })
