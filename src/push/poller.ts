// One poll per source per interval across every replica. Each replica with subscribers to a source
// (event streams open here, or webhooks naming it) runs a loop for it that ticks every third of
// PUSH_LEADER_TTL_MS: it takes or renews the source's lead (store.ts), and the leader starts a poll when
// the interval since the last poll (of any leader: the snapshot records it) has passed. The ticks go on
// while a poll runs: a poll slower than PUSH_LEADER_TTL_MS must not let the lead lapse while this replica
// still acts on it (delivers webhooks). A replica that dies stops renewing; within PUSH_LEADER_TTL_MS
// another one with subscribers takes over and carries on from the stored snapshot. This one counts the
// lead as lost once PUSH_LEADER_TTL_MS has passed since its last renewal was sent without one coming
// back (Redis slow or away), as another may hold it by then. Each take of the lead has a token of its
// own, so a poll started under an earlier take cannot commit under a later one. No subscribers on a
// replica, no loop there; none anywhere, no polling.
//
// The interval adapts to the upstream budget: PUSH_POLL_INTERVAL_MS while the budget is full, growing as
// it empties (interval × capacity above the headroom / tokens above the headroom, up to
// PUSH_POLL_MAX_INTERVAL_MS), and no poll at all while background work may not spend (priorities.ts):
// the tokens left go to consumers' misses.
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { backgroundAllowed, backgroundHeadroom, estimatedRemaining } from '../service/priorities.js'
import { parseRate } from '../upstream/budget.js'
import { diffRows, keyedRows, pollRequest, SNAPSHOT_UNDECODABLE, snapshotRows, snapshotText, type Row, type SourceSpec } from './sources.js'
import { SNAPSHOT_MISSING, type PushStore } from './store.js'

// After a poll answered by a stale entry whose refresh runs in the background, the next poll comes this
// soon (it reads the refreshed entry from the cache, at no upstream cost). Once per interval: when the
// refresh failed, the re-poll finds the entry stale again and starts another refresh, an upstream call.
const AFTER_REFRESH_MS = 1000

export interface PollerOptions {
  app: FastifyInstance
  store: PushStore
  /** Whether anyone on this replica still subscribes to the source. */
  hasInterest: (source: string) => boolean
  /** Events were written (this replica led): deliver them now rather than at the next read. */
  onCommit: (source: string) => void
  /** Runs while this replica leads a source (webhook deliveries). */
  whileLeading: (source: string) => void
}

/** The poll interval for the budget as this replica sees it, or null when no poll may spend now. */
export function pollInterval (app: FastifyInstance): number | null {
  const { PUSH_POLL_INTERVAL_MS: base, PUSH_POLL_MAX_INTERVAL_MS: max } = app.config
  if (!backgroundAllowed(app)) return null
  const remaining = estimatedRemaining(app)
  if (!Number.isFinite(remaining)) return base
  const headroom = backgroundHeadroom(app.config)
  const above = parseRate(app.config.UPSTREAM_RATE).capacity - headroom
  return Math.min(max, Math.max(base, Math.round(base * above / Math.max(1, remaining - headroom))))
}

interface Loop {
  spec: SourceSpec
  timer: NodeJS.Timeout | undefined
  /** A tick (the lead's renewal) is under way. */
  running: boolean
  isPolling: boolean
  leading: boolean
  /** This take of the lead's token (a new one for each take). */
  token: string
  /** When the lead lapses unless renewed: PUSH_LEADER_TTL_MS after the last renewal was sent. */
  leaseUntil: number
  rows: Record<string, Row> | null
  nextAt: number
  /** Whether the next poll is the early re-poll after a background refresh (see AFTER_REFRESH_MS). */
  isRecheck: boolean
  /** The loop's last step failed: an outage is logged as it starts and ends, not at every tick. */
  isFailing: boolean
  /** The stored snapshot did not decode and that was logged; cleared once a poll has stored its own. */
  isSnapshotBad: boolean
}

export function createPoller (opts: PollerOptions) {
  const { app, store } = opts
  const tickMs = Math.max(50, Math.floor(app.config.PUSH_LEADER_TTL_MS / 3))
  const log = app.log.child({ component: 'push' })
  const loops = new Map<string, Loop>()
  let isClosed = false

  /** Whether `loop` holds its lead now, as far as this replica can know. */
  const holds = (loop: Loop) => loop.leading && Date.now() < loop.leaseUntil

  async function poll (loop: Loop): Promise<void> {
    const source = loop.spec.name
    const token = loop.token
    const stored = loop.leading && loop.rows !== null ? null : await store.snapshot(source)
    if (stored !== null) {
      loop.nextAt = stored.at + (pollInterval(app) ?? app.config.PUSH_POLL_INTERVAL_MS)
      // '' is no snapshot (not a source without rows): the next poll is a baseline. So is one that does
      // not decode, which that baseline then replaces; it is logged once, not at each tick until then.
      const rows = stored.rows === '' ? null : snapshotRows(stored.rows, loop.spec.rowKey)
      if (rows === SNAPSHOT_UNDECODABLE) {
        if (!loop.isSnapshotBad) log.warn({ source, bytes: stored.rows.length }, 'push: the stored snapshot does not decode; the next poll takes a fresh baseline (changes until then are not announced)')
        loop.isSnapshotBad = true
      }
      loop.rows = rows === SNAPSHOT_UNDECODABLE ? null : rows
      if (Date.now() < loop.nextAt) return
    }
    // Whether this poll is the early re-poll after a background refresh (see AFTER_REFRESH_MS).
    const isRecheck = loop.isRecheck
    loop.isRecheck = false
    const interval = pollInterval(app)
    if (interval === null) {
      app.metrics.pushPolls.inc({ source, result: 'budget_low' })
      loop.nextAt = Date.now() + app.config.PUSH_POLL_INTERVAL_MS
      return
    }
    const request = pollRequest(app, source)
    const at = Date.now()
    let read
    try {
      read = await loop.spec.read(app, request)
    } catch (err) {
      app.metrics.pushPolls.inc({ source, result: 'error' })
      log.warn({ err, source }, 'push: poll failed; trying again at the next interval')
      loop.nextAt = at + interval
      return
    }
    const after = keyedRows(read.value, loop.spec.rowKey)
    const before = loop.rows
    const events = before === null ? [] : diffRows(loop.spec, before, after, new Date(at).toISOString())
    const rows = before === null || events.length > 0 ? snapshotText(after, loop.spec.rowKey) : ''
    let ids = await store.commit({ source, token, rows, at, events: events.map((e) => JSON.stringify(e)) })
    // Nothing changed, but the stored snapshot is gone (expired or evicted): store these rows again, or
    // the next leader would have nothing to compare with.
    if (ids === SNAPSHOT_MISSING) ids = await store.commit({ source, token, rows: snapshotText(after, loop.spec.rowKey), at, events: [] })
    if (ids === null || ids === SNAPSHOT_MISSING) {
      // The lead moved while this poll ran: what it saw is for the new leader to announce.
      app.metrics.pushPolls.inc({ source, result: 'lost_lead' })
      if (loop.token === token) loop.leading = false
      loop.rows = null
      return
    }
    // Taken anew since (the next poll starts from the stored snapshot).
    if (loop.token !== token) return
    app.metrics.pushPolls.inc({ source, result: before === null ? 'baseline' : 'ok' })
    loop.isSnapshotBad = false
    for (const e of events) app.metrics.pushEvents.inc({ source, type: e.type })
    loop.rows = after
    loop.isRecheck = !isRecheck && read.status === 'STALE' && read.reason === undefined
    loop.nextAt = at + (loop.isRecheck ? Math.min(interval, AFTER_REFRESH_MS) : interval)
    if (events.length > 0) opts.onCommit(source)
  }

  /** The next tick in `wait` ms (the one timer of the loop). */
  function schedule (loop: Loop, wait: number): void {
    clearTimeout(loop.timer)
    if (isClosed || loops.get(loop.spec.name) !== loop) return
    loop.timer = setTimeout(() => { tick(loop.spec.name).catch(() => {}) }, wait)
    loop.timer.unref()
  }

  /** Runs a poll beside the ticks, which keep renewing the lead meanwhile. */
  function startPoll (loop: Loop): void {
    loop.isPolling = true
    poll(loop).then(() => { failed(loop, null) }, (err: unknown) => {
      // A commit that failed may or may not have been written: the next poll reads the snapshot.
      loop.rows = null
      failed(loop, err)
    }).finally(() => {
      loop.isPolling = false
      // The tick under way (renewing) schedules the next one itself.
      if (!loop.running) schedule(loop, Math.max(0, Math.min(tickMs, loop.nextAt - Date.now())))
    })
  }

  /** Logs an outage of the loop as it starts and as it ends (err null: the step worked). */
  function failed (loop: Loop, err: unknown): void {
    const source = loop.spec.name
    if (err === null) {
      if (loop.isFailing) log.info({ source }, 'push: poll loop works again')
      loop.isFailing = false
      return
    }
    if (loop.isFailing) log.debug({ err: { message: (err as Error).message }, source }, 'push: poll loop failed again')
    else log.warn({ err, source }, 'push: poll loop failed; retrying quietly until it works')
    loop.isFailing = true
  }

  async function tick (source: string): Promise<void> {
    const loop = loops.get(source)
    if (loop === undefined || loop.running || isClosed) return
    if (!opts.hasInterest(source)) {
      loops.delete(source)
      clearTimeout(loop.timer)
      if (loop.leading) await store.resign(source, loop.token).catch(() => {})
      return
    }
    loop.running = true
    try {
      const wasLeading = loop.leading
      if (!wasLeading) loop.token = randomUUID()
      const sentAt = Date.now()
      loop.leading = await store.lead(source, loop.token, app.config.PUSH_LEADER_TTL_MS)
      if (loop.leading) loop.leaseUntil = sentAt + app.config.PUSH_LEADER_TTL_MS
      // A lead taken (anew) starts from the stored snapshot: another leader may have written since.
      if (!loop.leading || !wasLeading) loop.rows = null
      if (holds(loop)) {
        opts.whileLeading(source)
        if (!loop.isPolling && Date.now() >= loop.nextAt) startPoll(loop)
      }
      if (!loop.isPolling) failed(loop, null)
    } catch (err) {
      loop.leading = false
      loop.rows = null
      failed(loop, err)
    } finally {
      loop.running = false
      // While a poll runs, it schedules the tick after it (at its next interval) when it ends.
      schedule(loop, loop.leading && !loop.isPolling ? Math.max(0, Math.min(tickMs, loop.nextAt - Date.now())) : tickMs)
    }
  }

  return {
    /** Starts the loop of a source with subscribers here (no-op when it runs). */
    ensure (spec: SourceSpec): void {
      if (isClosed || loops.has(spec.name)) return
      const loop: Loop = { spec, timer: undefined, running: false, isPolling: false, leading: false, token: '', leaseUntil: 0, rows: null, nextAt: 0, isRecheck: false, isFailing: false, isSnapshotBad: false }
      loops.set(spec.name, loop)
      // On the next turn: the caller registers its subscriber first.
      loop.timer = setTimeout(() => { tick(spec.name).catch(() => {}) }, 0)
    },
    /** The token of the lead of `source` this replica holds now, or undefined. */
    leadOf (source: string): string | undefined {
      const loop = loops.get(source)
      return loop !== undefined && holds(loop) ? loop.token : undefined
    },
    /** Sources this replica leads now (its last renewal is less than PUSH_LEADER_TTL_MS old). */
    leading (): string[] {
      return [...loops].filter(([, l]) => holds(l)).map(([name]) => name)
    },
    /** Stops every loop and gives up the leads held, so another replica takes over at once. */
    async close (): Promise<void> {
      isClosed = true
      const held = [...loops.values()].filter((l) => l.leading)
      for (const loop of loops.values()) clearTimeout(loop.timer)
      loops.clear()
      await Promise.all(held.map(async (l) => store.resign(l.spec.name, l.token).catch(() => {})))
    }
  }
}
