// Who may spend the upstream budget. Foreground misses (a consumer waits and nothing cached can answer)
// may take every token; background work (the cache's stale-while-revalidate refreshes, refresh ahead,
// list prefetch) only while the budget is above the headroom UPSTREAM_BACKGROUND_HEADROOM keeps for
// foreground misses. Below it the budget counts as low: the cache also answers entries past their
// freshness without a load, up to CACHE_MAX_STALE_S (cache.ts, the budget policy).
//
// The check costs no store round trip: it starts from the tokens left as the last upstream call of this
// replica saw them and adds what the bucket has refilled since, so background work resumes after a quiet
// spell without a foreground call to update the figure. It can be optimistic (other replicas spend from
// the same bucket meanwhile); the budget itself still refuses a spent bucket.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { parseRate } from '../upstream/budget.js'

/**
 * The headroom in whole tokens: UPSTREAM_BACKGROUND_HEADROOM as a count (`20`) or as a share of the
 * bucket's capacity (`20%`, rounded up), never above the capacity.
 */
export function backgroundHeadroom (config: Pick<Config, 'UPSTREAM_RATE' | 'UPSTREAM_BACKGROUND_HEADROOM'>): number {
  const { capacity } = parseRate(config.UPSTREAM_RATE)
  const text = config.UPSTREAM_BACKGROUND_HEADROOM.trim()
  const tokens = text.endsWith('%')
    ? Math.ceil(capacity * Number(text.slice(0, -1)) / 100)
    : Number(text)
  return Math.min(capacity, tokens)
}

interface Sighting { remaining: number, at: number }

// Per app: the last figure the client reported and when this module first saw it.
const sightings = new WeakMap<FastifyInstance, Sighting>()

/**
 * Whole tokens the bucket holds now, as far as this replica can tell without asking the store: the
 * figure of the last upstream call plus the refill since this module first saw that figure (a new
 * figure restarts the count). Infinity before the first call.
 */
export function estimatedRemaining (app: FastifyInstance): number {
  const remaining = app.upstream.client.budgetRemaining
  if (!Number.isFinite(remaining)) return remaining
  const now = app.cache.now()
  let seen = sightings.get(app)
  if (seen === undefined || seen.remaining !== remaining || now < seen.at) {
    seen = { remaining, at: now }
    sightings.set(app, seen)
  }
  const { capacity, windowMs } = parseRate(app.config.UPSTREAM_RATE)
  return Math.min(capacity, Math.floor(remaining + (now - seen.at) * capacity / windowMs))
}

/**
 * May background work spend an upstream token now? True while the budget is above the headroom (always
 * before the first upstream call). Refresh ahead, prefetch and the cache's background revalidation ask
 * this before loading; a foreground miss never does. False also means the budget is low: cached entries
 * answer past their freshness (up to CACHE_MAX_STALE_S) instead of loading.
 */
export function backgroundAllowed (app: FastifyInstance): boolean {
  return estimatedRemaining(app) > backgroundHeadroom(app.config)
}
