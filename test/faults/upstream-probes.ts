// Reading what the fault tests assert on: metric values from /metrics and a restart of the sandbox on
// the same port (an outage that ends, as a real upstream comes back at the same address).
import type { Test } from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { startTestSandbox } from '../helper.js'
import type { Sandbox } from '../../src/sandbox/index.js'

/** The value of one sample of `name` (with exactly `labels`, if given), or undefined when absent. */
export async function metricValue (app: FastifyInstance, name: string, labels = ''): Promise<number | undefined> {
  const text = (await app.inject({ url: '/metrics' })).body
  const escaped = labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const match = new RegExp(`^${name}${labels === '' ? '' : `\\{${escaped}\\}`} (\\S+)$`, 'm').exec(text)
  return match === null ? undefined : Number(match[1])
}

/**
 * Budget tokens spent since a full bucket, as the gauge shows them after the last take (or refund).
 * Exact while the test is short: a 100/hour bucket refills under one token in 36 s.
 */
export async function tokensSpent (app: FastifyInstance, capacity: number): Promise<number> {
  const remaining = await metricValue(app, 'gateway_upstream_budget_remaining')
  return capacity - (remaining ?? capacity)
}

/** A new sandbox on the port `old` listened on: same seed, same tokens, counters at zero. */
export async function restartSandbox (t: Test, old: Sandbox): Promise<Sandbox> {
  const port = Number(new URL(old.origin).port)
  return startTestSandbox(t, { port })
}

export interface Outcome { status: number, code?: string, retryAfter?: string, cache?: string }

export function outcomeOf (res: LightMyRequestResponse): Outcome {
  const body = res.headers['content-type']?.toString().includes('json') === true ? res.json<{ code?: string }>() : {}
  return {
    status: res.statusCode,
    ...(body.code === undefined ? {} : { code: body.code }),
    ...(res.headers['retry-after'] === undefined ? {} : { retryAfter: String(res.headers['retry-after']) }),
    ...(res.headers['x-cache'] === undefined ? {} : { cache: String(res.headers['x-cache']) })
  }
}

/** How many outcomes fall in each `status code` bucket, for a one-line summary in the test output. */
export function tally (outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) {
    const key = `${o.status} ${o.code ?? ''}`.trim()
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}
