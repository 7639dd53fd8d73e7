// /healthz answers while the process runs; /readyz runs the registered dependency checks.
import fp from 'fastify-plugin'
import { Type } from '@sinclair/typebox'
import { UnavailableError, withRetryAfter } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    readiness: ReturnType<typeof createReadiness>
  }
}

export interface CheckResult { ok: boolean, detail?: string }
type Check = () => Promise<CheckResult>

const DEFAULT_CHECK_TIMEOUT_MS = 2000

export function createReadiness () {
  const checks = new Map<string, Check>()
  let isShuttingDown = false
  return {
    add (name: string, check: Check): void { checks.set(name, check) },
    shuttingDown (): void { isShuttingDown = true },
    get isShuttingDown (): boolean { return isShuttingDown },
    async run (): Promise<{ ready: boolean, checks: Record<string, CheckResult> }> {
      const names = [...checks.keys()]
      const results = await Promise.all(names.map(async (name) => {
        const check = checks.get(name) as Check
        let timer: NodeJS.Timeout | undefined
        const timeout = new Promise<CheckResult>((resolve) => {
          timer = setTimeout(() => resolve({ ok: false, detail: 'timed out' }), DEFAULT_CHECK_TIMEOUT_MS)
        })
        try {
          return await Promise.race([check().catch((err: Error) => ({ ok: false, detail: err.message })), timeout])
        } finally {
          clearTimeout(timer)
        }
      }))
      const out: Record<string, CheckResult> = {}
      names.forEach((n, i) => { out[n] = results[i] as CheckResult })
      if (isShuttingDown) out.shutdown = { ok: false, detail: 'shutting down' }
      return { ready: !isShuttingDown && results.every((r) => r.ok), checks: out }
    }
  }
}

const CheckSchema = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })

export const healthPlugin = fp(async (app) => {
  app.decorate('readiness', createReadiness())
  // Closing for any reason (a signal, a test) turns /readyz to 503 and refuses new work with a problem,
  // while in-flight requests finish.
  app.addHook('preClose', async () => { app.readiness.shuttingDown() })
  app.addHook('onRequest', async (request, reply) => {
    if (!app.readiness.isShuttingDown || request.routeOptions.config.public === true) return
    reply.header('connection', 'close')
    throw withRetryAfter(new UnavailableError('The gateway is shutting down; retry (another replica will answer).'), 1)
  })

  app.get('/healthz', {
    config: { public: true },
    schema: { hide: true, response: { 200: Type.Object({ status: Type.Literal('ok') }) } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', {
    config: { public: true },
    schema: {
      hide: true,
      response: {
        200: Type.Object({ ready: Type.Boolean(), checks: Type.Record(Type.String(), CheckSchema) }),
        503: Type.Object({ ready: Type.Boolean(), checks: Type.Record(Type.String(), CheckSchema) })
      }
    }
  }, async (_request, reply) => {
    const result = await app.readiness.run()
    return reply.code(result.ready ? 200 : 503).send(result)
  })
}, { name: 'health', fastify: '5.x' })
