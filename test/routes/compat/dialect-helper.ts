// Sends one upstream-dialect request two ways: through the gateway's compatibility path (to a sandbox
// behind it) and straight to an identical sandbox, so a test can compare statuses and bytes and count
// the calls that reached the upstream behind the gateway.
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildTestApp, startTestSandbox } from '../../helper.js'
import type { Sandbox } from '../../../src/sandbox/index.js'

export interface Exchange { status: number, body: string, contentType: string | undefined }

/** A form (the official client's encoding), a raw JSON text, or a query string for GET (built, or sent as written). */
export type Payload =
  | { form: Record<string, string> }
  | { json: string }
  | { query: Record<string, string> }
  | { rawQuery: string }

export interface Dialects {
  app: FastifyInstance
  /** The sandbox the gateway calls. */
  behind: Sandbox
  /** An identical sandbox, called straight. */
  direct: Sandbox
  gateway: (endpoint: string, payload: Payload) => Promise<Exchange>
  upstream: (endpoint: string, payload: Payload) => Promise<Exchange>
}

function requestParts (payload: Payload): { method: 'GET' | 'POST', query: string, body?: string, type?: string } {
  if ('query' in payload) return { method: 'GET', query: `?${new URLSearchParams(payload.query).toString()}` }
  if ('rawQuery' in payload) return { method: 'GET', query: `?${payload.rawQuery}` }
  if ('json' in payload) return { method: 'POST', query: '', body: payload.json, type: 'application/json' }
  return { method: 'POST', query: '', body: new URLSearchParams(payload.form).toString(), type: 'application/x-www-form-urlencoded' }
}

export async function startDialects (t: Test): Promise<Dialects> {
  const direct = await startTestSandbox(t)
  const behind = await startTestSandbox(t)
  // The in-memory demo consumer holds every scope and every list.
  const { app } = await buildTestApp(t, { upstream: behind })
  const key = app.consumers.demoKey ?? ''
  const gateway = async (endpoint: string, payload: Payload): Promise<Exchange> => {
    const { method, query, body, type } = requestParts(payload)
    const res = await app.inject({
      method,
      url: `/atlas/api/${endpoint}/${query}`,
      headers: { authorization: `Token ${key}`, accept: 'application/json', ...(type === undefined ? {} : { 'content-type': type }) },
      ...(body === undefined ? {} : { payload: body })
    })
    return { status: res.statusCode, body: res.body, contentType: res.headers['content-type'] as string | undefined }
  }
  const upstream = async (endpoint: string, payload: Payload): Promise<Exchange> => {
    const { method, query, body, type } = requestParts(payload)
    const res = await fetch(`${direct.baseUrl}${endpoint}/${query}`, {
      method,
      headers: { authorization: `Token ${direct.tokens.write}`, accept: 'application/json', ...(type === undefined ? {} : { 'content-type': type }) },
      ...(body === undefined ? {} : { body })
    })
    return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? undefined }
  }
  return { app, behind, direct, gateway, upstream }
}

/** The `transient_object_id` of each row of a VRA table reply, in order. */
export function rowIds (body: string): string[] {
  return [...body.matchAll(/"transient_object_id":(-?\d+)/g)].map((m) => m[1] as string)
}
