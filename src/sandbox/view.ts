// What an endpoint is to the DRF-like pipeline (api-view.ts): a permission class and a handler per
// method. Read views validate the query string on GET and the body on POST with the same serializer.
import type { SandboxUser, UserStore } from './auth.js'
import { validate, type DataSource, type FieldSpec, type FieldValue } from '../drf/fields.js'
import type { Store } from './store.js'
import type { EndpointName } from './types.js'
import { GET_STUB } from '../upstream/endpoints.js'

export interface ViewContext {
  method: string
  /** request.GET */
  query: DataSource
  /** request.data, parsed on first use (so parse errors come after auth and throttling, as in DRF). */
  data: () => Promise<DataSource>
  user: SandboxUser | null
  store: Store
  users: UserStore
  maxObjectsPerCall: () => number
  nowUs: () => number
}

/** `data` is rendered as JSON; `raw` is already JSON text; neither means an empty body (204). */
export interface ViewResult {
  status: number
  data?: unknown
  raw?: string
}

export type Handler = (ctx: ViewContext) => Promise<ViewResult>

export interface EndpointDef {
  name: EndpointName
  /** read: any authenticated user; write: non-safe methods need write access; anon: auth-token. */
  access: 'read' | 'write' | 'anon'
  get?: Handler
  post?: Handler
}

export type Values = Record<string, FieldValue>

/** Pre-rendered JSON text, for replies too big to build as objects (objects/). */
export class RawJson {
  constructor (readonly text: string) {}
}

/** The read views' retcode(): a top-level `error` key turns the reply into a 400. */
function retcode (message: unknown): number {
  return message !== null && typeof message === 'object' && !Array.isArray(message) && 'error' in message ? 400 : 200
}

function finish (specs: readonly FieldSpec[], data: DataSource, ctx: ViewContext, run: (v: Values, ctx: ViewContext) => unknown): ViewResult {
  const result = validate(specs, data)
  if (!result.ok) return { status: 400, data: result.errors }
  const message = run(result.values, ctx)
  if (message instanceof RawJson) return { status: 200, raw: message.text }
  return { status: retcode(message), data: message }
}

/** GET validates request.GET, POST validates request.data; both run the same serializer. */
export function readHandlers (specs: readonly FieldSpec[], run: (v: Values, ctx: ViewContext) => unknown): Pick<EndpointDef, 'get' | 'post'> {
  return {
    get: async (ctx) => finish(specs, ctx.query, ctx, run),
    post: async (ctx) => finish(specs, await ctx.data(), ctx, run)
  }
}

export { GET_STUB }

/** Write views: GET is a 200 stub with a capital-E "Error"; POST answers 201 whatever the outcome. */
export function writeHandlers (specs: readonly FieldSpec[], run: (v: Values, ctx: ViewContext) => unknown): Pick<EndpointDef, 'get' | 'post'> {
  return {
    get: async () => ({ status: 200, data: GET_STUB }),
    post: async (ctx) => {
      const result = validate(specs, await ctx.data())
      if (!result.ok) return { status: 400, data: result.errors }
      return { status: 201, data: run(result.values, ctx) }
    }
  }
}

// Typed reads of validated values. Required fields and fields with a default always hold their
// type after validation; the fallbacks only satisfy the type checker.

export function int (v: FieldValue | undefined): bigint {
  /* c8 ignore next -- an int field holds a bigint once validated */
  return typeof v === 'bigint' ? v : 0n
}

export function reqNum (v: FieldValue | undefined): number {
  /* c8 ignore next -- a required float field holds a number once validated */
  return typeof v === 'number' ? v : NaN
}

export function reqStr (v: FieldValue | undefined): string {
  /* c8 ignore next -- a required char field holds a string once validated */
  return typeof v === 'string' ? v : ''
}

export function num (v: FieldValue | undefined): number | null {
  return typeof v === 'number' ? v : null
}

export function str (v: FieldValue | undefined): string | null {
  return typeof v === 'string' ? v : null
}
