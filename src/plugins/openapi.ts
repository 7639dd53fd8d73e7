// OpenAPI 3 document at /openapi.json and a browsable page at /docs, generated from the route schemas.
import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'

export const openapiPlugin = fp(async (app) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'atlas-gateway',
        version: '1',
        description: 'A stable facade over the ATLAS Transient Server API. Every ATLAS id (19 digits, above 2^53) ' +
          'is a JSON string in v1, and so is any other integer beyond 2^53. Errors are RFC 9457 problem+json ' +
          'documents with a stable `code`.'
      },
      // Every v1 route needs a consumer key (health, docs and metrics routes are hidden from the document).
      security: [{ bearer: [] }, { apiKey: [] }],
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'the consumer key (40 hex)' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' }
        }
      }
    }
  })
  // The docs page's routes are registered by @fastify/swagger-ui, which takes no route config: they are
  // marked public in a context of their own.
  await app.register(async (docs) => {
    docs.addHook('onRoute', (route) => { (route.config ??= {}).public = true })
    await docs.register(swaggerUi, { routePrefix: '/docs' })
  })
  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger())
}, { name: 'openapi', fastify: '5.x' })
