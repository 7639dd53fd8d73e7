// Decorates `app.consumers` from CONSUMERS_FILE. With no file, an in-memory demo consumer gets a fresh
// key at every boot, and that key is logged once here: the one intended disclosure of a key, so that
// `npm start` works out of the box. It is in the message text, which path-based redaction leaves alone.
import fp from 'fastify-plugin'
import { createConsumerRegistry, type ConsumerRegistry } from './registry.js'

declare module 'fastify' {
  interface FastifyInstance {
    consumers: ConsumerRegistry
  }
}

export const consumersPlugin = fp(async (app) => {
  const isCustomList = (name: string): boolean => app.lists.all.some((list) => list.kind === 'custom' && list.name === name)
  const registry = await createConsumerRegistry({ file: app.config.CONSUMERS_FILE, log: app.log, isCustomList })
  app.decorate('consumers', registry)
  if (registry.demoKey !== undefined) {
    app.log.info(`demo consumer key: ${registry.demoKey} (in memory, all scopes; set CONSUMERS_FILE for real consumers)`)
  } else {
    app.log.info({ consumers: registry.list().length, file: app.config.CONSUMERS_FILE }, 'consumers loaded')
  }
}, { name: 'consumers', fastify: '5.x' })
