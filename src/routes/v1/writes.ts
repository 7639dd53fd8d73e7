// A v1 write through the service, and what its outcome means in v1: the upstream reports failures with
// success codes, so the service reads the `info` text; an outcome it cannot name becomes an error here.
// A write whose reply was lost is read back where the upstream allows it, and answered from what that
// shows; write routes marked `idempotent` honour the Idempotency-Key header (service/idempotency.ts).
import { Type } from '@sinclair/typebox'
import type {
  FastifyInstance, FastifyReply, FastifyRequest, onErrorHookHandler, onResponseHookHandler, onSendHookHandler,
  preHandlerHookHandler, preValidationHookHandler, RouteOptions
} from 'fastify'
import {
  UpstreamAuthError, UpstreamError, UpstreamTimeoutError, ValidationError, WriteOutcomeUnknownError
} from '../../errors.js'
import type { WriteKind, WriteTarget } from '../../cache/tags.js'
import {
  IDEMPOTENCY_HEADER, isFinalOutcome, MAX_KEY_LENGTH, parseIdempotencyKey, REPLAYED_HEADER, requestFingerprint, type Claim
} from '../../service/idempotency.js'
import { mayHaveApplied, replyStatusOf } from '../../service/read-back.js'
import type { WriteResult } from '../../service/index.js'
import type { Fields, WriteOutcome } from '../../upstream/endpoints.js'
import { routeOf } from '../../lib/route.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A write that honours Idempotency-Key; idempotentWrites() adds the hooks. */
    idempotent?: boolean
    /**
     * The status a write answers when a read-back found it in effect after its reply was lost, with
     * Write-Read-Back: applied (documented from this); absent on writes that cannot be read back.
     */
    readBack?: number
  }
}

/** Set when a write's outcome comes from a read-back after its reply was lost. */
export const READ_BACK_HEADER = 'write-read-back'
// What a replay sends again besides the status and the body.
const KEPT_HEADERS = ['content-type', READ_BACK_HEADER]

/** The header as the OpenAPI document shows it; checkKey() below does the checking. */
const IdempotencyHeadersSchema = Type.Object({
  [IDEMPOTENCY_HEADER]: Type.Optional(Type.String({
    maxLength: MAX_KEY_LENGTH + 2,
    description: 'A retry with the same key gets the first answer again (kept 24 h) and is never sent upstream twice; ' +
      'e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324"'
  }))
})

/** The outcome a read-back that found the write in effect stands for. */
const APPLIED: Readonly<Partial<Record<WriteKind, WriteOutcome>>> = {
  objectgroups: 'created',
  objectgroupsdelete: 'removed',
  vratodo: 'created',
  objectdetectionlist: 'created'
}

/** How each write changes the upstream, as the answers to a lost reply say it. */
const EFFECT: Readonly<Record<WriteKind, string>> = {
  vrascores: 'the score row may have been appended',
  vrarank: 'the rank may have been set',
  vratodo: 'the object may have been queued',
  objectgroups: 'the object may have been added',
  objectgroupsdelete: 'the object may have been removed',
  objectdetectionlist: 'the object may have been moved'
}

/** Per-request state of the write hooks; requests without the header or a read-back have none. */
interface WriteState { key?: string, claim?: Claim, errorCode?: string, isReadBack?: boolean }
const states = new WeakMap<FastifyRequest, WriteState>()

function stateOf (request: FastifyRequest): WriteState {
  let state = states.get(request)
  if (state === undefined) states.set(request, state = {})
  return state
}

/** What happened to a write's reply: none in time, a broken connection, or one that tells nothing. */
function whatWasLost (kind: WriteKind, err: unknown): string {
  if ((err as { code?: unknown }).code === 'GW_UPSTREAM_TIMEOUT') return `The upstream did not answer ${kind}/ in time`
  const status = replyStatusOf(err)
  if (status === undefined) return `The connection to the upstream broke during ${kind}/`
  const cause = (err as { cause?: { contentType?: unknown, parseError?: unknown } }).cause
  const type = String(cause?.contentType ?? '')
  const what = type.includes('html')
    ? 'an HTML page'
    : !type.includes('json') ? 'a body that is not JSON' : cause?.parseError !== undefined ? 'malformed JSON' : 'JSON with no known outcome'
  return `The upstream answered ${kind}/ with status ${status} and ${what}`
}

/** The error for a lost reply that a read-back did not resolve: `err`'s class and code, and what is known. */
function lostReply (kind: WriteKind, id: string, err: unknown, known: string): Error {
  const isTimeout = (err as { code?: unknown }).code === 'GW_UPSTREAM_TIMEOUT'
  const detail = `${whatWasLost(kind, err)} after the request was sent; ${known}`
  return Object.assign(isTimeout ? new UpstreamTimeoutError(detail) : new UpstreamError(detail), { cause: err })
}

/** VRA scores and ranks cannot be read back: say so, and what a retry would do. */
function unknownOutcome (kind: WriteKind, id: string, err: unknown): Error {
  const lost = whatWasLost(kind, err)
  const [table, retry] = kind === 'vrascores'
    ? ['scores', 'Scores append rows, so sending it again may add a second row']
    : ['ranks', 'Ranks are upserts, so sending it again sets the same values']
  return Object.assign(new WriteOutcomeUnknownError(
    `${lost} after the request was sent: ${EFFECT[kind]}, and the upstream offers no read that tells. ` +
    `${retry}; check GET /v1/vra/${table}?ids=${id} first. Send writes with an Idempotency-Key header: ` +
    'a retry with the same key gets the first outcome and is never sent upstream twice.'
  ), { cause: err })
}

/** A write's reply was lost: read back what the upstream shows, and answer with it. */
async function afterLostReply (
  app: FastifyInstance, request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget, err: unknown
): Promise<WriteOutcome> {
  const found = await app.atlas.readBack(request, kind, fields, target)
  request.log.warn({ kind, readBack: found.state, err: { message: (err as Error).message, code: (err as { code?: unknown }).code } }, 'write reply lost; read back')
  const applied = APPLIED[kind]
  const id = target.objectId
  switch (found.state) {
    case 'applied':
      if (applied === undefined) break
      stateOf(request).isReadBack = true
      return applied
    case 'not_applied':
      throw lostReply(kind, id, err, `a read-back shows that ${EFFECT[kind].replace('may have been', 'was not')}, so sending it again is safe.`)
    case 'failed':
      throw lostReply(kind, id, err, `${EFFECT[kind]} and reading it back failed (${String((found.err as { message?: unknown }).message)}). ` +
        'It cannot take effect twice, so sending it again is safe.')
  }
  throw unknownOutcome(kind, id, err)
}

// What each write answers; any other known text on a 2xx is as unreadable as an unknown one (it was
// taken as the write's own, e.g. 201 "Error updating row." as a membership add rejected, or 200
// "Duplicate row." as a move: a 200 for a write that did not happen). The detection list answers
// "Error updating row." to a list number it does not take.
const OUTCOMES: Readonly<Record<WriteKind, readonly WriteOutcome[]>> = {
  vrascores: ['created', 'unknown_object'],
  vrarank: ['created', 'unknown_object'],
  vratodo: ['created', 'duplicate', 'unknown_object'],
  objectgroups: ['created', 'duplicate', 'unknown_object', 'unknown_list'],
  objectgroupsdelete: ['removed', 'not_member', 'unknown_object', 'unknown_list'],
  objectdetectionlist: ['created', 'unknown_object', 'rejected']
}
// Outcomes that say the write took effect (or already had): only a 2xx says that, never a 400.
const SUCCESSES: ReadonlySet<WriteOutcome> = new Set(['created', 'duplicate', 'removed'])

/** Whether `outcome` is one `kind` answers, with a status that can carry it. */
function isKnownOutcome (kind: WriteKind, status: number, outcome: WriteOutcome | undefined): outcome is WriteOutcome {
  if (outcome === undefined || !OUTCOMES[kind].includes(outcome)) return false
  return !SUCCESSES.has(outcome) || (status >= 200 && status < 300)
}

export async function upstreamWrite (
  app: FastifyInstance, request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget
): Promise<WriteOutcome> {
  // Settled inside the write, so that its audit record holds the outcome answered (or its error).
  const { outcome } = await app.atlas.write(request, kind, fields, target, async (send) => ({ outcome: await settle(app, request, kind, fields, target, send) }))
  return outcome
}

/** What a write's reply (or its loss) answers in v1: a known outcome, a read-back's, or an error. */
async function settle (
  app: FastifyInstance, request: FastifyRequest, kind: WriteKind, fields: Fields, target: WriteTarget, send: () => Promise<WriteResult>
): Promise<WriteOutcome> {
  let result
  try {
    result = await send()
  } catch (err) {
    if (!mayHaveApplied(err)) throw err
    return await afterLostReply(app, request, kind, fields, target, err)
  }
  const { reply, outcome } = result
  if (isKnownOutcome(kind, reply.status, outcome)) return outcome
  if (reply.status === 403) {
    throw new UpstreamAuthError('The gateway\'s upstream account has no write access; the operator must grant it.')
  }
  if (reply.status === 400) {
    // Field errors the facade's own validation should have caught: report them, not a crash.
    throw Object.assign(new ValidationError(`The upstream rejected the ${kind}/ fields: ${reply.text.slice(0, 300)}`), { cause: reply.text })
  }
  const unknown = Object.assign(new UpstreamError(`The upstream answered ${kind}/ with status ${reply.status} and no known outcome.`), {
    cause: { status: reply.status, contentType: reply.contentType, snippet: reply.text.slice(0, 200) }
  })
  // A 2xx came from past the view: the write may have been applied, so it is read back, not resent.
  if (mayHaveApplied(unknown)) return await afterLostReply(app, request, kind, fields, target, unknown)
  throw unknown
}

function bodyText (payload: unknown): string | undefined {
  if (typeof payload === 'string') return payload
  if (payload === null || payload === undefined) return ''
  return Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined
}

function keptHeaders (reply: FastifyReply): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const name of KEPT_HEADERS) {
    const value = reply.getHeader(name)
    if (value !== undefined) headers[name] = String(value)
  }
  return headers
}

/**
 * Adds the Idempotency-Key hooks to this context's routes marked `idempotent`. They go after the route
 * guard's (whose onRoute hook, registered on the root, has run by then): the header is checked with the
 * input, before authorisation charges anything; the key is claimed after authorisation, so a refused
 * request holds no key; the outcome is kept as it is sent.
 */
export function idempotentWrites (app: FastifyInstance): void {
  const { idempotency } = app.atlas

  const checkKey: preValidationHookHandler = async (request) => {
    const key = parseIdempotencyKey(request.headers[IDEMPOTENCY_HEADER])
    if (key !== undefined) stateOf(request).key = key
  }

  const claimKey: preHandlerHookHandler = async (request, reply) => {
    const state = states.get(request)
    const consumer = request.consumer
    if (state?.key === undefined || consumer === null) return
    const fingerprint = requestFingerprint({
      method: request.method, route: routeOf(request).url ?? request.url, params: request.params, body: request.body
    })
    const begun = await idempotency.begin(consumer.id, state.key, fingerprint)
    if (begun.kind === 'run') {
      state.claim = begun.claim
      return
    }
    // A replay does no work: the object units it was charged go back.
    if (request.chargedUnits > 0) await app.auth.refund(request)
    const { status, headers, body } = begun.outcome
    return reply.code(status).headers(headers).header(REPLAYED_HEADER, 'true').send(body === '' ? undefined : body)
  }

  const noteError: onErrorHookHandler = async (request, _reply, err) => {
    const state = states.get(request)
    if (state !== undefined) state.errorCode = err.code
  }

  const keepOutcome: onSendHookHandler = async (request, reply, payload) => {
    const state = states.get(request)
    if (state === undefined) return payload
    if (state.isReadBack === true) reply.header(READ_BACK_HEADER, 'applied')
    const claim = state.claim
    if (claim === undefined) return payload
    state.claim = undefined
    const body = bodyText(payload)
    const isKept = body !== undefined && isFinalOutcome(reply.statusCode, state.errorCode)
    await idempotency.finish(claim, isKept ? { status: reply.statusCode, headers: keptHeaders(reply), body } : undefined)
    return payload
  }

  // A request that ended without sending (nothing else reaches here) lets its key go.
  const releaseKey: onResponseHookHandler = async (request) => {
    const state = states.get(request)
    if (state?.claim === undefined) return
    const claim = state.claim
    state.claim = undefined
    await idempotency.finish(claim, undefined)
  }

  const append = <H>(hooks: H | H[] | undefined, hook: H): H[] => [...(hooks === undefined ? [] : [hooks].flat() as H[]), hook]

  app.addHook('onRoute', (route: RouteOptions) => {
    if (route.config?.idempotent !== true) return
    route.schema = { ...route.schema, headers: route.schema?.headers ?? IdempotencyHeadersSchema }
    route.preValidation = append(route.preValidation, checkKey)
    route.preHandler = append(route.preHandler, claimKey)
    route.onError = append(route.onError, noteError)
    route.onSend = append(route.onSend, keepOutcome)
    route.onResponse = append(route.onResponse, releaseKey)
  })
}
