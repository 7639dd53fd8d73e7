// Event streams (scope read, like the reads they follow): server-sent events of a list's members and
// of the VRA tables, polled once by the gateway for every subscriber (src/push/). Each event has an id;
// `Last-Event-ID` resumes after it, on any replica, for PUSH_RETENTION_S.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { problems } from '../../schemas/common.js'
import { listSource, tableSource, VRA_TABLES } from '../../push/sources.js'

const EVENT_STREAM = 'text/event-stream'
const description = 'An event stream (`text/event-stream`). Each event has `id:`, `event:` (its type) and `data:` (JSON: ' +
  '`{type, source, id, row?, changes?, detected_at}`; ids in it are strings). Send `Last-Event-ID` to resume after an event, ' +
  'on any replica; an `event: gap` says events after it were dropped (older than the retention window). A comment line ' +
  'comes every PUSH_HEARTBEAT_MS; at shutdown the stream ends with `retry:` and `event: shutdown`. 429 beyond ' +
  'PUSH_MAX_STREAMS_PER_CONSUMER open streams per consumer (over all its keys).'
const headers = Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 64 })) })

export const eventRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/lists/:name/events', {
    config: { scope: 'read', produces: [EVENT_STREAM], producesJson: false },
    schema: {
      summary: 'Changes of a list\'s members as server-sent events (member.added, member.removed, member.changed)',
      description,
      tags: ['events'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }) }),
      headers,
      response: { 200: Type.String({ description: EVENT_STREAM }), ...problems(404) }
    }
  }, async (request, reply) => app.push.open(request, reply, listSource(app, request.params.name)))

  app.get('/vra/:table/events', {
    config: { scope: 'read', produces: [EVENT_STREAM], producesJson: false },
    schema: {
      summary: `New and changed rows of a VRA table (${VRA_TABLES.join(', ')}) as server-sent events (row.added, row.changed)`,
      description,
      tags: ['events'],
      params: Type.Object({ table: Type.String({ maxLength: 64 }) }),
      headers,
      response: { 200: Type.String({ description: EVENT_STREAM }), ...problems(404) }
    }
  }, async (request, reply) => app.push.open(request, reply, tableSource(request.params.table)))
}
