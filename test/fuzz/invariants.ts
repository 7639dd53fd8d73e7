// What every answer must satisfy (issue 11 item 10), and what each generated request expects beyond that.
import type { ForwardedRequest } from '../fixtures/counting-proxy.js'
import type { FuzzResponse } from './client.js'
import type { FuzzRequest } from './model.js'

/** Statuses that say "refused before doing anything": none of them may follow an upstream call. */
export const REFUSAL_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 405, 406, 408, 413, 415])

export interface Observation {
  req: FuzzRequest
  res: FuzzResponse
  /** Upstream calls counted by the proxy while the request ran. */
  upstreamCalls: number
  forwarded: ForwardedRequest[]
}

export interface Violation {
  /** Which invariant (stable text; violations are grouped by it and the request family). */
  invariant: string
  detail: string
}

export interface NamedSecret { name: string, value: string }

export type Dialect = 'v1' | 'compat' | 'other'

export function dialectOf (target: string): Dialect {
  let path = target
  if (/^[a-z]+:\/\//i.test(target)) {
    try {
      path = new URL(target).pathname
    } catch {
      return 'other'
    }
  }
  if (/^\/v1(?:[/?#;]|$)/.test(path)) return 'v1'
  if (path.startsWith('/atlas/api')) return 'compat'
  return 'other'
}

const header = (res: FuzzResponse, name: string) => res.headers[name]?.join(', ')

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** What a float64 reading of an id turns into: exact digits of the double, and JavaScript's shortest form. */
export function roundedForms (id: string): string[] {
  const n = Number(id)
  return [...new Set([BigInt(n).toString(), String(n)])].filter((form) => form !== id)
}

function checkV1Error (obs: Observation, out: Violation[]): void {
  const { res, req } = obs
  const type = header(res, 'content-type') ?? ''
  const body = parseJson(res.body) as { code?: unknown } | undefined
  const isProblem = type.startsWith('application/problem+json') && typeof body?.code === 'string' && body.code.startsWith('GW_')
  if (isProblem || (req.method === 'HEAD' && type.startsWith('application/problem+json'))) return
  const shape = body === undefined ? `non-JSON ${JSON.stringify(res.body.slice(0, 80))}` : `JSON ${res.body.slice(0, 120)}`
  out.push({ invariant: 'v1 error is not problem+json with a GW_ code', detail: `${res.status} ${type || '(no content-type)'}: ${shape}` })
}

function checkCompatError (obs: Observation, out: Violation[]): void {
  const { res } = obs
  if (res.status === 301 || res.status === 304) return
  const type = header(res, 'content-type') ?? ''
  const body = parseJson(res.body)
  const isFastifyDefault = body !== null && typeof body === 'object' && 'statusCode' in body && 'error' in body
  if (obs.req.method === 'HEAD' || (type.startsWith('application/json') && body !== undefined && !isFastifyDefault)) return
  out.push({ invariant: 'compat error is not an upstream-shaped JSON body', detail: `${res.status} ${type || '(no content-type)'}: ${res.body.slice(0, 120)}` })
}

/**
 * Ids sent as JSON numbers: neither the upstream nor the answer may see a float64-rounded copy. (The id
 * itself need not reach the upstream: tables are fetched wide and filtered, misses may be cached.)
 */
function checkIds (obs: Observation, ids: readonly string[], out: Violation[]): void {
  const { res, forwarded } = obs
  const sent = forwarded.map((f) => `${f.url} ${f.body}`).join('\n')
  for (const id of ids) {
    for (const form of roundedForms(id)) {
      if (sent.includes(form)) {
        out.push({ invariant: 'an id sent as a JSON number reached the upstream rounded', detail: `sent ${id}, the upstream got ${form}` })
        return
      }
      if (res.body.includes(form)) {
        out.push({ invariant: 'an id sent as a JSON number came back rounded', detail: `sent ${id}, the answer says ${form}` })
        return
      }
    }
  }
}

/**
 * The compat path relays the upstream's own business answers, and objectgroupsdelete/ says "not a
 * member" with a 400 `{…,"info":…}` that only the upstream can know. That 400 is not a
 * refusal of invalid input, so the refusal rule does not apply to it (expectations still do).
 */
function isUpstreamBusiness400 (obs: Observation): boolean {
  if (dialectOf(obs.req.target) !== 'compat' || obs.res.status !== 400) return false
  const body = parseJson(obs.res.body)
  return body !== null && typeof body === 'object' && !Array.isArray(body) && typeof (body as { info?: unknown }).info === 'string'
}

/** Violations of one answer; `logs` is what the gateway logged for it. */
export function checkObservation (obs: Observation, secrets: readonly NamedSecret[]): Violation[] {
  const { req, res, upstreamCalls } = obs
  const out: Violation[] = []
  const dialect = dialectOf(req.target)
  if (res.status === 0) {
    out.push({ invariant: 'no answer', detail: res.error ?? 'no answer' })
  } else if (res.status >= 500) {
    out.push({ invariant: 'answer >= 500', detail: `${res.status}: ${res.body.slice(0, 160)}` })
  }
  const e = req.expect
  if (e.refused !== undefined) {
    if (upstreamCalls > 0) out.push({ invariant: 'invalid input reached the upstream', detail: `${e.refused}: ${upstreamCalls} upstream call(s), answered ${res.status}` })
    if (res.status !== 0 && (res.status < 400 || res.status >= 500)) out.push({ invariant: 'invalid input was not refused', detail: `${e.refused}: answered ${res.status} ${res.body.slice(0, 120)}` })
  } else if (REFUSAL_STATUSES.has(res.status) && upstreamCalls > 0 && !isUpstreamBusiness400(obs)) {
    out.push({ invariant: 'a refusal came after an upstream call', detail: `${res.status} after ${upstreamCalls} upstream call(s)` })
  } else if (e.noUpstream !== undefined && upstreamCalls > 0) {
    out.push({ invariant: 'an upstream call that nothing needed', detail: `${e.noUpstream}: ${upstreamCalls} call(s), answered ${res.status}` })
  }
  if (e.statuses !== undefined && res.status !== 0 && res.status < 500 && !e.statuses.codes.includes(res.status)) {
    out.push({ invariant: `expected ${e.statuses.codes.join('/')}`, detail: `${e.statuses.why}: answered ${res.status} ${res.body.slice(0, 100)}` })
  }
  if (res.status === 405 && header(res, 'allow') === undefined) out.push({ invariant: '405 without Allow', detail: 'no Allow header' })
  if (res.status >= 400 && dialect === 'v1') checkV1Error(obs, out)
  if (res.status >= 400 && dialect === 'compat' && req.isMalformedHttp !== true) checkCompatError(obs, out)
  if (e.exactIds !== undefined) checkIds(obs, e.exactIds, out)
  const answer = Object.entries(res.headers).map(([k, v]) => `${k}: ${v.join(', ')}`).join('\n') + '\n' + res.body
  for (const s of secrets) {
    if (answer.includes(s.value)) out.push({ invariant: 'secret in the answer', detail: `${s.name} in the ${res.body.includes(s.value) ? 'body' : 'headers'}` })
  }
  return out
}

/** Secrets found in log text, with the first line that holds each. */
export function secretsInLogs (text: string, secrets: readonly NamedSecret[]): Array<{ name: string, line: string }> {
  const found: Array<{ name: string, line: string }> = []
  for (const s of secrets) {
    const at = text.indexOf(s.value)
    if (at === -1) continue
    const start = text.lastIndexOf('\n', at) + 1
    const end = text.indexOf('\n', at)
    found.push({ name: s.name, line: text.slice(start, end === -1 ? undefined : end).replaceAll(s.value, `<${s.name}>`).slice(0, 300) })
  }
  return found
}
