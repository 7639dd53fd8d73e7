// Priorities for the upstream budget: misses a consumer waits for come first; work that can wait
// (stale-while-revalidate refreshes, refresh ahead, list prefetch, loads of entries a stale answer could
// serve) spends a token only while two things hold:
//
// - the bucket is above the headroom UPSTREAM_BACKGROUND_HEADROOM keeps for foreground misses, and
// - the pace allows it (upstream/budget.ts): every call takes one from a small bucket of `headroom`
//   tokens refilled at (capacity - headroom) per window, and work that can wait needs one there. So what
//   the gateway spends in any rolling window stays within UPSTREAM_RATE (the bucket alone starts full and
//   would let a first hour spend twice that), spread over the window instead of spent in a burst, and
//   only misses nothing cached can answer go beyond it.
//
// When either says no, the budget counts as low: the cache answers entries past their freshness without
// a load, up to CACHE_MAX_STALE_S (cache.ts, the budget policy), so polled tables are refreshed only as
// often as the budget sustains, and the object loader gathers misses for longer (object-loader.ts).
//
// The check costs no store round trip: it starts from the figures the last upstream call of this replica
// saw and adds what has refilled since, so background work resumes after a quiet spell without a
// foreground call to update them. It can be optimistic (other replicas spend from the same bucket
// meanwhile); the budget itself still refuses a spent bucket. A replica that has made no call yet has no
// figure (other replicas may have spent the bucket to its headroom already): its work that can wait gets
// one token, and one more for each the bucket earns meanwhile, until a call brings the first figure.
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { paceBurst, parseHeadroom, parseRate } from '../upstream/budget.js'

/**
 * The headroom in whole tokens: UPSTREAM_BACKGROUND_HEADROOM as a count (`20`) or as a share of the
 * bucket's capacity (`20%`, rounded up), never above the capacity.
 */
export function backgroundHeadroom (config: Pick<Config, 'UPSTREAM_RATE' | 'UPSTREAM_BACKGROUND_HEADROOM'>): number {
  return parseHeadroom(config.UPSTREAM_RATE, config.UPSTREAM_BACKGROUND_HEADROOM)
}

// Claims: when each outstanding one was made (performance.now(): the batching windows run on real time).
interface Sighting { seen: number, at: number, claims: number[] }

// Per app: the last budget figure the client reported and when this module first saw it.
const sightings = new WeakMap<FastifyInstance, Sighting>()

// Beyond the widest batching window, what a claimed load may wait before its take: the fill lock, the
// consumer's share.
const CLAIM_SLACK_MS = 250

/**
 * How long a claim counts once a new figure arrives: a figure from any other call (a foreground miss)
 * does not show a claimed load that still waits in the object loader's batching window.
 */
const claimHoldMs = (app: FastifyInstance): number => app.config.UPSTREAM_BATCH_WINDOW_MAX_MS + CLAIM_SLACK_MS

/** Ms since this module first saw the client's current budget figures (0 for a new figure). */
function sinceFigure (app: FastifyInstance): number {
  const seen = app.upstream.client.budgetSeen
  const now = app.cache.now()
  let s = sightings.get(app)
  if (s === undefined || s.seen !== seen || now < s.at) {
    const since = performance.now() - claimHoldMs(app)
    s = { seen, at: now, claims: s?.claims.filter((at) => at > since) ?? [] }
    sightings.set(app, s)
  }
  return now - s.at
}

/**
 * Tokens promised to work that can wait and not yet shown by a figure: those since the last figure and
 * those too recent for it to show (their loads may still wait for a window; counting one twice for a
 * moment only delays background work).
 */
const claimed = (app: FastifyInstance): number => sightings.get(app)?.claims.length ?? 0

/**
 * Whole tokens the bucket holds now, as far as this replica can tell without asking the store: the
 * figure of the last upstream call plus the refill since this module first saw that figure (a new
 * figure restarts the count), less the tokens claimed since. Infinity before the first call.
 */
export function estimatedRemaining (app: FastifyInstance): number {
  const remaining = app.upstream.client.budgetRemaining
  if (!Number.isFinite(remaining)) return remaining
  const { capacity, windowMs } = parseRate(app.config.UPSTREAM_RATE)
  // Claims come off the bucket too, not only off the pace: with a headroom above half the bucket, the
  // pace's burst (the headroom) holds more tokens than lie above the headroom.
  return Math.min(capacity, Math.floor(remaining + sinceFigure(app) * capacity / windowMs)) - claimed(app)
}

/** The pace now, likewise: the last call's figure plus its refill since (never above its burst). */
export function estimatedPace (app: FastifyInstance): number {
  const pace = app.upstream.client.budgetPace
  if (!Number.isFinite(pace)) return pace
  const { capacity, windowMs } = parseRate(app.config.UPSTREAM_RATE)
  const burst = paceBurst(capacity, backgroundHeadroom(app.config))
  return Math.min(burst, pace + sinceFigure(app) * (capacity - burst) / windowMs) - claimed(app)
}

// An entry this long past its freshness (or longer) needs just one token of the pace.
const URGENT_OVERDUE_MS = 120_000

/**
 * The pace a load that can wait needs, by how overdue its entry is (ms past its freshness): one token
 * for an entry URGENT_OVERDUE_MS past or more (and for work with no entry, such as a prefetch), up to
 * the whole burst for one just past its freshness. The pace refills a token at a time,
 * so the most overdue entries asking get the tokens first, and entries barely stale are refreshed only
 * from a surplus: tables polled often cannot take every token from those polled less.
 */
export function paceNeeded (app: FastifyInstance, overdue: number): number {
  const burst = paceBurst(parseRate(app.config.UPSTREAM_RATE).capacity, backgroundHeadroom(app.config))
  return 1 + (burst - 1) * Math.min(1, Math.max(0, 1 - overdue / URGENT_OVERDUE_MS))
}

/**
 * Before the first figure: whether the tokens claimed since this module first looked are fewer than one
 * plus those the bucket has earned meanwhile (the claimed one's call brings the figure).
 */
function allowedWithoutFigure (app: FastifyInstance): boolean {
  const { capacity, windowMs } = parseRate(app.config.UPSTREAM_RATE)
  return claimed(app) < 1 + Math.floor(sinceFigure(app) * capacity / windowMs)
}

/**
 * May work that can wait spend an upstream token now? True while the bucket is above the headroom and
 * the pace holds a token (before the first upstream call: for one token, see allowedWithoutFigure). Refresh ahead, prefetch and the
 * cache's revalidation ask this before loading; a foreground miss never does. False also means the
 * budget is low: cached entries answer past their freshness (up to CACHE_MAX_STALE_S) instead of loading.
 * `overdue` (ms past the entry's freshness) sets how much of the pace it needs (paceNeeded).
 * With `claim`, a yes promises the token: until the next budget figure arrives, the estimate counts it
 * as spent, so concurrent requests that find stale entries do not all refresh on the same token.
 */
export function backgroundAllowed (app: FastifyInstance, claim = false, overdue = Infinity): boolean {
  const allowed = Number.isFinite(app.upstream.client.budgetRemaining)
    ? estimatedRemaining(app) > backgroundHeadroom(app.config) && estimatedPace(app) >= paceNeeded(app, overdue)
    : allowedWithoutFigure(app)
  const s = sightings.get(app)
  if (allowed && claim && s !== undefined) s.claims.push(performance.now())
  return allowed
}

// The spend rate: this replica's calls, decayed with this time constant.
const RATE_TAU_MS = 60_000
interface SpendRate { takes: number, value: number, at: number }
const rates = new WeakMap<FastifyInstance, SpendRate>()

/**
 * This replica's recent calls: each counts 1 when made and decays by e every RATE_TAU_MS, so the value is
 * about the calls of the last minute (a burst shows at once, a steady trickle stays small).
 */
export function recentCalls (app: FastifyInstance): number {
  const takes = app.upstream.client.budgetTakes
  const now = app.cache.now()
  const r = rates.get(app) ?? { takes: 0, value: 0, at: now }
  const value = r.value * Math.exp(-Math.max(0, now - r.at) / RATE_TAU_MS) + (takes - r.takes)
  rates.set(app, { takes, value, at: now })
  return value
}

/**
 * How pressed the budget is, 0 to 1, from the larger of two signs: the pace running down (0 with its
 * whole burst, 1 when spent; 1 too when the bucket is at the headroom), and the spend rate above the
 * pace (the calls of about the last minute against the pace's refill over that minute: at the pace or
 * below 0, at twice it 1). The object loader widens its batching window by it, so a burst of
 * misses (a cold start, a crowd) shares calls before the pace is gone.
 */
export function budgetPressure (app: FastifyInstance): number {
  const pace = estimatedPace(app)
  if (!Number.isFinite(pace)) return 0
  if (estimatedRemaining(app) <= backgroundHeadroom(app.config)) return 1
  const { capacity, windowMs } = parseRate(app.config.UPSTREAM_RATE)
  const burst = paceBurst(capacity, backgroundHeadroom(app.config))
  const perTau = Math.max(1e-9, (capacity - burst) * RATE_TAU_MS / windowMs)
  const byRate = (recentCalls(app) - perTau) / perTau
  return Math.min(1, Math.max(0, 1 - pace / burst, byRate))
}
