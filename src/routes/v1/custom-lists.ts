// Custom lists (object groups): members, the lists of an object, and membership writes
// (scope write:custom-lists and the list among the consumer's `lists`).
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { views } from '../../cache/tags.js'
import { invalidFields, NotFoundError } from '../../errors.js'
import { stringifyV1 } from '../../lib/json.js'
import { AtlasIdSchema, passthrough, problems } from '../../schemas/common.js'
import { fields, replyFields, type WriteOutcome } from '../../upstream/endpoints.js'
import { sendDerived } from './send.js'
import { rowsOf } from './tables.js'
import { idempotentWrites, upstreamWrite } from './writes.js'

const MAX_MEMBER_CHANGES = 1000
const listParam = (request: FastifyRequest) => (request.params as { name?: string }).name

const MembershipSchema = Type.Object({ list: Type.String(), id: AtlasIdSchema, outcome: Type.String() })

async function changeMembership (app: FastifyInstance, request: FastifyRequest, name: string, id: string, isAdd: boolean): Promise<WriteOutcome> {
  const list = app.lists.resolveCustom(name)
  const kind = isAdd ? 'objectgroups' : 'objectgroupsdelete'
  return upstreamWrite(app, request, kind, fields.listMembership(id, list.id), { objectId: id, groupId: list.id })
}

interface ChangeSet { add?: string[], remove?: string[] }

/** Distinct ids in first-seen order: an id sent twice is one change (as GET /v1/objects answers it once). */
function distinct (ids: readonly string[] = []): string[] {
  return [...new Set(ids)]
}

/** A 400 for each removal of an id the same change set adds: the two cannot both be meant. */
function refuseAddedAndRemoved (body: ChangeSet): void {
  const added = new Set(body.add)
  const errors = (body.remove ?? []).flatMap((id, i) => added.has(id)
    ? [{ path: `/body/remove/${i}`, message: 'is also in add; send each id in one of add and remove' }]
    : [])
  if (errors.length > 0) throw invalidFields(errors.map((e) => `${e.path.slice(1)} ${e.message}`).join('; '), errors)
}

interface MembershipResult { status: number, outcome: string }
const UNKNOWN_OBJECT: MembershipResult = { status: 404, outcome: 'unknown_object' }
const UNKNOWN_LIST: MembershipResult = { status: 404, outcome: 'unknown_list' }
// v1 status and outcome word of each outcome of an add and of a removal. upstreamWrite() lets through
// only the outcomes each endpoint answers, so another one is a bug here, never a success status.
const ADD_RESULTS: Partial<Record<WriteOutcome, MembershipResult>> = {
  created: { status: 201, outcome: 'added' },
  duplicate: { status: 200, outcome: 'already_member' },
  unknown_object: UNKNOWN_OBJECT,
  unknown_list: UNKNOWN_LIST
}
const REMOVE_RESULTS: Partial<Record<WriteOutcome, MembershipResult>> = {
  removed: { status: 204, outcome: 'removed' },
  not_member: { status: 404, outcome: 'not_member' },
  unknown_object: UNKNOWN_OBJECT,
  unknown_list: UNKNOWN_LIST
}

function membershipResult (outcome: WriteOutcome, isAdd: boolean): MembershipResult {
  const result = (isAdd ? ADD_RESULTS : REMOVE_RESULTS)[outcome]
  if (result === undefined) throw new Error(`A membership ${isAdd ? 'add' : 'removal'} came back with outcome ${outcome}.`)
  return result
}

export const customListRoutes: FastifyPluginAsyncTypebox = async (app) => {
  idempotentWrites(app)
  app.get('/custom-lists/:name/objects', {
    config: { scope: 'read', cached: 'validated' },
    schema: {
      summary: 'Members of a custom list',
      tags: ['custom lists'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }) }),
      response: {
        200: Type.Object({ list: Type.String(), count: Type.Integer(), objects: Type.Array(passthrough('membership row: id, transient_object_id (string), object_group_id')) }),
        304: Type.Null(),
        ...problems(404)
      }
    }
  }, async (request, reply) => {
    const list = app.lists.resolveCustom(request.params.name)
    const read = await app.atlas.table(request, 'custom-lists', 'objectgroupslist', fields.customListMembers(list.id), [views.groupMembers(list.id)])
    const rows = rowsOf(read.value)
    return sendDerived(request, reply, read, stringifyV1({ list: list.name, count: rows.length, objects: rows }))
  })

  app.get('/objects/:id/custom-lists', {
    config: { scope: 'read', cached: 'validated' },
    schema: {
      summary: 'The custom lists that contain an object',
      tags: ['custom lists'],
      params: Type.Object({ id: AtlasIdSchema }),
      response: {
        200: Type.Object({ id: AtlasIdSchema, lists: Type.Array(Type.Object({ name: Type.Union([Type.String(), Type.Null()]), group_id: Type.Integer() })) }),
        304: Type.Null(),
        ...problems()
      }
    }
  }, async (request, reply) => {
    const { id } = request.params
    const read = await app.atlas.table(request, 'object-custom-lists', 'objectgroupslist', fields.objectCustomLists(id), [views.objectGroups(id)])
    const lists = rowsOf(read.value).map((r) => {
      const groupId = Number(r[replyFields.groupId])
      return { name: app.lists.customName(groupId) ?? null, group_id: groupId }
    })
    return sendDerived(request, reply, read, stringifyV1({ id, lists }))
  })

  app.put('/custom-lists/:name/objects/:id', {
    config: { scope: 'write:custom-lists', list: listParam, idempotent: true, readBack: 201 },
    schema: {
      summary: 'Add an object to a custom list (201 added, 200 already a member)',
      tags: ['custom lists'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }), id: AtlasIdSchema }),
      response: { 200: MembershipSchema, 201: MembershipSchema, ...problems(404, 409, 422) }
    }
  }, async (request, reply) => {
    const { name, id } = request.params
    const r = membershipResult(await changeMembership(app, request, name, id, true), true)
    if (r.status === 404) throw new NotFoundError(r.outcome === 'unknown_list' ? `The upstream has no custom list "${name}".` : `No ATLAS object ${id}.`)
    return reply.code(r.status === 201 ? 201 : 200).send({ list: name, id, outcome: r.outcome })
  })

  app.delete('/custom-lists/:name/objects/:id', {
    config: { scope: 'write:custom-lists', list: listParam, idempotent: true, readBack: 204 },
    schema: {
      summary: 'Remove an object from a custom list (204 removed, 404 not a member)',
      tags: ['custom lists'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }), id: AtlasIdSchema }),
      response: { 204: Type.Null(), ...problems(404, 409, 422) }
    }
  }, async (request, reply) => {
    const { name, id } = request.params
    const r = membershipResult(await changeMembership(app, request, name, id, false), false)
    if (r.status !== 204) throw new NotFoundError(`Object ${id} is not a member of "${name}" (${r.outcome}).`)
    return reply.code(204).send(null)
  })

  app.post('/custom-lists/:name/members', {
    config: {
      scope: 'write:custom-lists',
      list: listParam,
      idempotent: true,
      // Any membership change of the batch read back marks the whole answer.
      readBack: 200,
      // 1 per distinct requested id (an id is in add or in remove, not both: see the preHandler).
      units: (request) => {
        const b = request.body as ChangeSet
        return distinct(b.add).length + distinct(b.remove).length
      }
    },
    schema: {
      summary: 'Add and remove many objects (one upstream call per distinct id; one result per distinct id)',
      description: 'Applied in order, adds first. An id sent twice is one change, answered once; an id in both add and remove is a 400. When the upstream budget runs out, the remaining ids are reported with code GW_UPSTREAM_BUDGET and not attempted: nothing is lost silently.',
      tags: ['custom lists'],
      params: Type.Object({ name: Type.String({ maxLength: 64 }) }),
      body: Type.Object({
        add: Type.Optional(Type.Array(AtlasIdSchema, { maxItems: MAX_MEMBER_CHANGES })),
        remove: Type.Optional(Type.Array(AtlasIdSchema, { maxItems: MAX_MEMBER_CHANGES }))
      }, { additionalProperties: false, minProperties: 1 }),
      response: {
        200: Type.Object({
          list: Type.String(),
          results: Type.Array(Type.Object({ id: AtlasIdSchema, op: Type.String(), status: Type.Integer(), outcome: Type.String(), code: Type.Optional(Type.String()) }))
        }),
        ...problems(404, 409, 413, 422)
      }
    },
    // An unknown list (404) and an id both added and removed (400) are refused before authorisation
    // charges the units.
    preHandler: async (request) => {
      app.lists.resolveCustom(request.params.name)
      refuseAddedAndRemoved(request.body)
    }
  }, async (request) => {
    const { name } = request.params
    const ops = [
      ...distinct(request.body.add).map((id) => ({ id, isAdd: true })),
      ...distinct(request.body.remove).map((id) => ({ id, isAdd: false }))
    ]
    const results: Array<{ id: string, op: string, status: number, outcome: string, code?: string }> = []
    let stopped: { status: number, code: string } | undefined
    for (const { id, isAdd } of ops) {
      const op = isAdd ? 'add' : 'remove'
      if (stopped !== undefined) {
        results.push({ id, op, status: stopped.status, outcome: 'not_attempted', code: stopped.code })
        continue
      }
      try {
        const r = membershipResult(await changeMembership(app, request, name, id, isAdd), isAdd)
        results.push({ id, op, status: r.status, outcome: r.outcome })
      } catch (err) {
        const e = err as { statusCode?: number, code?: string }
        const code = e.code?.startsWith('GW_') === true ? e.code : 'GW_UPSTREAM_ERROR'
        results.push({ id, op, status: e.statusCode ?? 502, outcome: 'failed', code })
        // Budget, auth and share failures will fail every later id the same way: stop calling upstream.
        if (code === 'GW_UPSTREAM_BUDGET' || code === 'GW_UPSTREAM_AUTH' || code === 'GW_QUOTA_EXHAUSTED') stopped = { status: e.statusCode ?? 503, code }
      }
    }
    return { list: name, results }
  })
}
