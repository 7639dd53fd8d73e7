// buildApp(config) assembles the gateway: plugins are registered in one explicit order, because each
// builds on the ones before it (config → errors → health → redis → upstream → cache → auth → quota → routes).
import Fastify, { type FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { buildLoggerOptions, genReqId } from './logger.js'
import { problemHandlerPlugin } from './plugins/problem-handler.js'
import { healthPlugin } from './plugins/health.js'
import { openapiPlugin } from './plugins/openapi.js'
import { metricsPlugin } from './plugins/metrics.js'
import { redisPlugin } from './plugins/redis.js'
import type { Redis } from 'ioredis'

export interface AppDeps {
  /** A pino-compatible destination stream for logs (tests capture logs through it). */
  logStream?: NodeJS.WritableStream
  /** An ioredis client to use instead of creating one from REDIS_URL (not closed by the app). */
  redis?: Redis
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const loggerOptions = buildLoggerOptions(config)
  const app = Fastify({
    logger: deps.logStream === undefined ? loggerOptions : Object.assign(loggerOptions, { stream: deps.logStream }),
    genReqId,
    requestIdLogLabel: 'request_id',
    bodyLimit: config.BODY_LIMIT_BYTES,
    trustProxy: false,
    return503OnClosing: true,
    ajv: { customOptions: { removeAdditional: 'all', coerceTypes: 'array', useDefaults: true } }
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('config', config)
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  await app.register(problemHandlerPlugin)
  await app.register(healthPlugin)
  await app.register(metricsPlugin)
  await app.register(redisPlugin, deps.redis === undefined ? {} : { client: deps.redis })
  await app.register(openapiPlugin)

  return app
}
