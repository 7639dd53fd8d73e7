// The v1 facade, mounted at /v1, in a context of its own: strict input (routes/v1/input.ts) applies to
// every v1 route and to nothing else. Every route declares the scope it needs (auth/plugin.ts).
import type { FastifyPluginAsync } from 'fastify'
import { strictInput } from './input.js'
import { objectRoutes } from './objects.js'
import { coneRoutes } from './cone.js'
import { listRoutes } from './lists.js'
import { customListRoutes } from './custom-lists.js'
import { vraRoutes } from './vra.js'
import { crossmatchRoutes } from './crossmatches.js'
import { detectionListRoutes } from './detection-list.js'
import { meRoutes } from './me.js'
import { lightCurveRoutes } from './lightcurve.js'
import { eventRoutes } from './events.js'
import { adminRoutes } from './admin.js'

export const v1Routes: FastifyPluginAsync = async (app) => {
  strictInput(app)
  await app.register(objectRoutes)
  await app.register(coneRoutes)
  await app.register(listRoutes)
  await app.register(customListRoutes)
  await app.register(vraRoutes)
  await app.register(crossmatchRoutes)
  await app.register(detectionListRoutes)
  await app.register(meRoutes)
  await app.register(lightCurveRoutes)
  await app.register(eventRoutes)
  await app.register(adminRoutes)
}
