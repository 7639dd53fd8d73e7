// Id batching and single flight for `objects/`: ids wanted by concurrent requests within a short window
// are fetched together in one upstream call (up to maxIds), identical in-flight ids are shared, and the
// reply is split back per id without parsing it (lib/json-scan.ts keeps every byte, so ids stay exact).
// A call costs one budget token whatever it carries, so a filler (set by the service) may top each call
// up with ids it predicts will be read soon: they ride after the requested ids, never delay the call,
// and their records go to the filler instead of a waiter.
//
// The window adapts to the budget (setPressure, from the service): at no pressure it is windowMs; as the
// budget is pressed it widens linearly up to maxWindowMs, so that misses arriving spread over time share
// one call instead of one each. A miss arriving while an objects/ call is in flight waits the whole
// maxWindowMs (as Nagle's algorithm holds small segments while one is unacknowledged): consumers are
// missing right now, and more misses are likely to follow. A requested id therefore waits at most
// maxWindowMs before its call leaves (or less: a window that reaches maxIds leaves at once); predicted
// ids never hold a call back.
// Waiting only pays while calls are scarce: no window is longer than the budget takes to earn one call
// (tokenMs, UPSTREAM_RATE's window over its capacity). At the upstream's 100 calls an hour that is 36 s,
// so the windows above apply in full; a budget that earns a call every few microseconds (a private
// upstream, a benchmark) sends each miss in the turn of the event loop it arrived in, unless maxCalls
// calls (the upstream connections) are already in flight: then misses gather until one of them returns
// (at most maxWindowMs), and go together (a call queued for a connection would wait as long, and carry
// one id).
// A call that left before a write to an id answers what the write replaced, so a request for that id
// made after the write does not join it: it waits for the next call (see WriteLog).
import { UpstreamError } from '../errors.js'
import { splitArray } from '../lib/json-scan.js'
import type { Metrics } from '../plugins/metrics.js'
import type { CallContext, UpstreamClient } from './client.js'
import { fields, isMaxObjectsInfo, isMissingRecord, maxObjectsStated } from './endpoints.js'

/** A record in the upstream dialect (ids as bare integers), or null for an unknown id. */
export type RecordText = string | null

interface Waiter {
  resolve: (value: RecordText) => void
  reject: (err: unknown) => void
}

export interface ObjectLoaderOptions {
  client: UpstreamClient
  windowMs: number
  /** The widest window, under full budget pressure (default windowMs: no widening). */
  maxWindowMs?: number
  maxIds: number
  metrics: Metrics
  /** How long the budget takes to earn one call (ms); caps every window (default: no cap). */
  tokenMs?: number
  /** With no window: calls in flight at which misses wait for one to return (default: no limit). */
  maxCalls?: number
}

/** Tops calls up with predicted ids (service/prefetch.ts). */
export interface CallFiller {
  /**
   * Up to `room` ids to add to a call of `requested` ids, most likely first; `isTaken(id)` is true for
   * ids already in this call, waiting for the next one or in flight. Must not block: the call is sent
   * right after.
   */
  pick: (room: number, requested: number, isTaken: (id: string) => boolean) => string[]
  /**
   * The records of the ids `pick` added, once their call answered (null for an unknown id); resolves
   * once they are stored.
   */
  deliver: (ids: string[], records: RecordText[]) => Promise<void> | void
  /**
   * Called as a call carrying the ids `pick` added leaves (must not block); what it returns is called
   * once they are delivered and stored, or will not come (the call failed or dropped them). The
   * service holds their cross-replica fill locks meanwhile, so other replicas wait for this call.
   */
  hold?: (ids: string[]) => () => void
  /** The reply of a call: its ids and body size (the filler estimates record sizes from them). */
  observe?: (ids: number, bytes: number) => void
}

/** What the loader knows of writes (the service: the cache's invalidation log, which hears every replica's). */
export interface WriteLog {
  /** A point in the log now. */
  mark: () => number
  /** Whether `id` was written since `mark`. */
  isWrittenSince: (id: string, mark: number) => boolean
}

/** An id's call in flight: its record (undefined for a prediction the call dropped), and the log's mark as it left. */
interface Flight {
  record: Promise<RecordText | undefined>
  mark: number
}

export type ObjectLoader = ReturnType<typeof createObjectLoader>

export function createObjectLoader (opts: ObjectLoaderOptions) {
  let maxIds = opts.maxIds
  // ids waiting for the current window, and ids whose upstream call is in flight
  // (with when each pending id was first asked for, performance.now(), for gateway_upstream_objects_wait_seconds;
  // an id in flight comes to undefined when it was a prediction its call dropped, see fetchChunk)
  let pending = new Map<string, { since: number, waiters: Waiter[] }>()
  const pendingCtx = new Set<CallContext>()
  const inFlight = new Map<string, Flight>()
  let timer: NodeJS.Timeout | undefined
  let windows = 0
  let isScheduled = false
  let filler: CallFiller | undefined
  let writes: WriteLog | undefined
  let callsInFlight = 0
  let pressure: () => number = () => 0
  const maxWindowMs = Math.max(opts.windowMs, opts.maxWindowMs ?? opts.windowMs)
  const tokenMs = Math.floor(opts.tokenMs ?? Infinity)
  const maxCalls = opts.maxCalls ?? Infinity
  // Misses wait for a call in flight to return (no window, maxCalls in flight).
  let isWaitingForCall = false

  /** The batching window now: windowMs widened towards maxWindowMs by the budget pressure (0…1). */
  function windowNow (): number {
    if (callsInFlight > 0) return Math.min(maxWindowMs, tokenMs)
    const p = Math.min(1, Math.max(0, pressure()))
    return Math.min(tokenMs, Math.round(opts.windowMs + (maxWindowMs - opts.windowMs) * (Number.isFinite(p) ? p : 0)))
  }

  /**
   * Records of `requested` then of `predicted`, in that order. undefined for predicted ids the call left
   * out: on the upstream's "Max number of objects" reply the predictions are dropped and the requested
   * ids sent again alone, so that predictions never split a call.
   */
  async function fetchChunk (requested: string[], predicted: string[], ctxs: CallContext[]): Promise<Array<RecordText | undefined>> {
    const ids = [...requested, ...predicted]
    // The call is counted on the request that paid for it (each attempt's payer), as the share was
    // charged: the others joined it, as a read joins another's single flight, and cost nothing more.
    let payer: CallContext | undefined
    callsInFlight++
    const reply = await opts.client.call('objects', fields.objects(ids), {
      beforeCall: async () => {
        const charged = await chargeOne(ctxs)
        payer = charged?.payer
        return charged?.isCharged ?? false
      },
      onUnsent: async () => { await payer?.onUnsent?.() },
      onCall: () => { payer?.onCall?.() }
    }).finally(() => {
      callsInFlight--
      if (isWaitingForCall) {
        isWaitingForCall = false
        setImmediate(flush)
      }
    })
    if (reply.status !== 200) {
      throw Object.assign(new UpstreamError(`The upstream refused an objects/ read (status ${reply.status}).`), { cause: reply.text.slice(0, 200) })
    }
    if (isMaxObjectsInfo(reply.text)) {
      // The upstream lowered its id limit: ours becomes the one it states (half this call's ids when it
      // states none, and below them whatever it states), and the requested ids go again in chunks of it.
      if (ids.length === 1) throw new UpstreamError('The upstream refused a single-id objects/ read.')
      maxIds = Math.min(ids.length - 1, maxObjectsStated(reply.text) ?? Math.ceil(ids.length / 2))
      const chunks: Array<Promise<Array<RecordText | undefined>>> = []
      for (let i = 0; i < requested.length; i += maxIds) chunks.push(fetchChunk(requested.slice(i, i + maxIds), [], ctxs))
      return (await Promise.all(chunks)).flat()
    }
    filler?.observe?.(ids.length, reply.text.length)
    let parts: string[]
    try {
      parts = splitArray(reply.text)
    } catch (err) {
      throw Object.assign(new UpstreamError('The upstream sent a malformed objects/ reply.'), { cause: err })
    }
    if (parts.length !== ids.length) {
      throw new UpstreamError(`The upstream sent ${parts.length} records for ${ids.length} ids.`)
    }
    return parts.map((p) => (isMissingRecord(p) ? null : p))
  }

  /**
   * A call that serves several requests is charged once, to the first of them (in arrival order) whose
   * consumer still has upstream share; it fails only when none has. A first one with nothing to charge
   * (no consumer: a prefetch) makes the call free for all, and is its payer.
   */
  async function chargeOne (ctxs: CallContext[]): Promise<{ payer: CallContext, isCharged: boolean } | undefined> {
    let refusal: unknown
    for (const c of ctxs) {
      if (c.beforeCall === undefined) return { payer: c, isCharged: false }
      try {
        return { payer: c, isCharged: await c.beforeCall() }
      } catch (err) {
        refusal ??= err
      }
    }
    if (refusal !== undefined) throw refusal
    return undefined
  }

  function flush (): void {
    clearTimeout(timer)
    timer = undefined
    isScheduled = false
    isWaitingForCall = false
    // A scheduled flush can find the window already sent by an early flush (maxIds reached).
    if (pending.size === 0) return
    windows++
    const batch = pending
    const ctxs = [...pendingCtx]
    const now = performance.now()
    for (const { since } of batch.values()) opts.metrics.objectsWait.observe((now - since) / 1000)
    pending = new Map()
    pendingCtx.clear()
    const ids = [...batch.keys()]
    for (let i = 0; i < ids.length; i += maxIds) {
      const chunk = ids.slice(i, i + maxIds)
      const predicted = fill(chunk)
      const mark = writes?.mark() ?? 0
      const promise = fetchChunk(chunk, predicted, ctxs)
      if (predicted.length > 0) track(predicted, chunk.length, promise, mark)
      chunk.forEach((id, k) => {
        const flight = { record: promise.then((records) => records[k] ?? null), mark }
        inFlight.set(id, flight)
        flight.record.then(
          (value) => { for (const w of batch.get(id)?.waiters ?? []) w.resolve(value) },
          (err: unknown) => { for (const w of batch.get(id)?.waiters ?? []) w.reject(err) }
        ).finally(() => { land(id, flight) })
      })
    }
  }

  /** An id's call has answered; a later call for it (after a write) stays in flight. */
  function land (id: string, flight: Flight): void {
    if (inFlight.get(id) === flight) inFlight.delete(id)
  }

  /** Predicted ids for the room a chunk leaves; requested ids stay first and decide when it goes. */
  function fill (chunk: string[]): string[] {
    if (filler === undefined || chunk.length >= maxIds) return []
    const inChunk = new Set(chunk)
    const taken = (id: string) => inChunk.has(id) || pending.has(id) || inFlight.has(id)
    const picked: string[] = []
    for (const id of filler.pick(maxIds - chunk.length, chunk.length, taken)) {
      if (picked.length >= maxIds - chunk.length) break
      if (taken(id)) continue
      inChunk.add(id)
      picked.push(id)
    }
    return picked
  }

  /** Predicted ids are in flight like requested ones (a request for one joins the call); the filler gets their records. */
  function track (predicted: string[], offset: number, promise: Promise<Array<RecordText | undefined>>, mark: number): void {
    const picker = filler
    const release = picker?.hold?.(predicted)
    const records = promise.then((all) => all.slice(offset))
    predicted.forEach((id, k) => {
      // Out of inFlight before a request that joined sees the outcome, so that it can ask again for a
      // dropped prediction (loadOne).
      const flight: Flight = { record: records.then((r) => r[k]).finally(() => { land(id, flight) }), mark }
      inFlight.set(id, flight)
      flight.record.catch(() => {})
    })
    // A failed call loses only predictions: the requested ids' waiters get the error. So does a call
    // that dropped them.
    records.then(async (r) => {
      if (r.length === predicted.length) await picker?.deliver(predicted, r.map((record) => record ?? null))
    }).catch(() => {}).finally(() => { release?.() })
  }

  /** The record of one id: joins its call in flight (unless the id was written since it left), or waits for the next. */
  function loadOne (id: string, ctx: CallContext): Promise<RecordText> {
    const flying = inFlight.get(id)
    if (flying !== undefined && writes?.isWrittenSince(id, flying.mark) !== true) {
      opts.metrics.coalesced.inc({ kind: 'single_flight' })
      return flying.record.then((record) => record === undefined ? loadOne(id, ctx) : record)
    }
    // The request shares the upstream calls of the window it joins (its access log line counts them;
    // the call is charged once, see chargeOne).
    pendingCtx.add(ctx)
    return enqueue(id)
  }

  function enqueue (id: string): Promise<RecordText> {
    return new Promise<RecordText>((resolve, reject) => {
      const waiters = pending.get(id)?.waiters
      if (waiters !== undefined) {
        opts.metrics.coalesced.inc({ kind: 'single_flight' })
        waiters.push({ resolve, reject })
        return
      }
      pending.set(id, { since: performance.now(), waiters: [{ resolve, reject }] })
      if (pending.size >= maxIds) {
        flush()
      } else if (!isScheduled) {
        // A zero window still gathers what arrives in the same turn of the event loop; setTimeout(0)
        // would wait a whole millisecond.
        isScheduled = true
        const windowMs = windowNow()
        if (windowMs > 0) timer = setTimeout(flush, windowMs)
        else if (callsInFlight < maxCalls) setImmediate(flush)
        else {
          // Until a call returns, but no longer than the widest window (calls can hang): then the call
          // queues for a connection like any other, for at most UPSTREAM_POOL_WAIT_MS.
          isWaitingForCall = true
          timer = setTimeout(flush, maxWindowMs)
        }
      }
    })
  }

  return {
    /** Records for `ids` (distinct), in the same order; null for unknown ids. */
    async load (ids: readonly string[], ctx: CallContext = {}): Promise<RecordText[]> {
      if (ids.length === 0) return []
      if (pending.size > 0) opts.metrics.coalesced.inc({ kind: 'id_batch' })
      return Promise.all(ids.map((id) => loadOne(id, ctx)))
    },
    /** Sets (or, with undefined, removes) what tops calls up with predicted ids. */
    setFiller (next: CallFiller | undefined): void { filler = next },
    /** Sets what tells the loader of writes (none: a request always joins its id's call in flight). */
    setWrites (next: WriteLog | undefined): void { writes = next },
    /** Sets how much budget pressure there is now (0 none … 1 full), which widens the batching window. */
    setPressure (next: (() => number) | undefined): void { pressure = next ?? (() => 0) },
    /** The batching window a miss arriving now would open (ms): maxWindowMs while a call is in flight. */
    get windowMs (): number { return windowNow() },
    /** Ids waiting for a call or in flight (tests wait for an idle loader). */
    get busy (): number { return pending.size + inFlight.size },
    /** Ids waiting for the next call or in flight (a prefetch leaves them alone). */
    isTaken (id: string): boolean { return pending.has(id) || inFlight.has(id) },
    get maxIds (): number { return maxIds },
    /** Batching windows flushed so far (each sends one objects/ call per UPSTREAM_MAX_IDS_PER_CALL ids). */
    get windows (): number { return windows }
  }
}
