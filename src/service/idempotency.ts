// Idempotency-Key for writes (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): the first
// final outcome per (consumer, key) is kept 24 h and replayed to retries with the same key; the same key
// on a different request is a 422, and a retry while the first request still runs waits for it
// (bounded by IDEMPOTENCY_WAIT_MS) and then gets a 409. Requests without the header never reach the store.
import { createHash, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { RedisGuard } from '../lib/redis-health.js'
import { createResendQueue } from '../lib/resend-queue.js'
import {
  IdempotencyInProgressError, IdempotencyKeyReusedError, IdempotencyKeyUnreadableError, invalidFields, UnavailableError, withRetryAfter
} from '../errors.js'
import { OUTCOME_TTL_MS, type DoneEntry, type IdempotencyStore, type RunningEntry } from './idempotency-store.js'

export const IDEMPOTENCY_HEADER = 'idempotency-key'
/** Set on an answer replayed from the first request's outcome (the name Stripe's API uses). */
export const REPLAYED_HEADER = 'idempotent-replayed'
export const MAX_KEY_LENGTH = 255
// An in-progress marker lapses this long after its request last renewed it (every third of it).
const LEASE_MS = 30_000
const RENEW_EVERY_MS = LEASE_MS / 3
const POLL_FIRST_MS = 20
const POLL_MAX_MS = 250
// Failures that are not final: a retry with the same key must run again.
const TRANSIENT_4XX = new Set([408, 409, 425, 429])
// A write the gateway sent but could not confirm: sending it again might apply it twice.
const KEPT_5XX_CODES = new Set(['GW_WRITE_OUTCOME_UNKNOWN'])

// The draft makes the value a Structured Field String (RFC 8941: printable ASCII in quotes, with \" and
// \\ escaped). Many clients send a bare value (a UUID); that is read as the same key when it holds no
// space and none of the characters that delimit structured fields (" , ; \).
const SF_STRING = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/
const BARE = /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/

/** The key sent, unquoted; undefined when there is none. Throws a 400 naming the header when malformed. */
export function parseIdempotencyKey (value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  const text = Array.isArray(value) ? value.join(', ') : value
  const quoted = SF_STRING.exec(text)
  const key = quoted === null ? (BARE.test(text) ? text : undefined) : (quoted[1] ?? '').replace(/\\(.)/g, '$1')
  const rule = `must be one string of 1 to ${MAX_KEY_LENGTH} printable ASCII characters, e.g. "8e03978e-40d5-43e8-bc93-6894a57f9324"`
  if (key === undefined || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw invalidFields(`The Idempotency-Key header ${rule}.`, [{ path: `/headers/${IDEMPOTENCY_HEADER}`, message: rule }])
  }
  return key
}

function canonical (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
  }
  return value
}

/**
 * What makes two requests "the same request": method, route, path parameters and the body as parsed
 * (so key order and an id sent as a number or as a string do not matter).
 */
export function requestFingerprint (parts: { method: string, route: string, params: unknown, body: unknown }): string {
  const text = JSON.stringify(canonical([parts.method, parts.route, parts.params ?? null, parts.body ?? null]))
  return createHash('sha256').update(text).digest('base64url')
}

/** Whether an answer is the request's final outcome, to be kept and replayed. */
export function isFinalOutcome (status: number, code: string | undefined): boolean {
  if (status >= 500) return code !== undefined && KEPT_5XX_CODES.has(code)
  return !TRANSIENT_4XX.has(status)
}

/** A key this request holds while it runs; finish() ends it. */
export interface Claim { key: string, marker: RunningEntry, timer: NodeJS.Timeout }

export type Begun = { kind: 'run', claim: Claim } | { kind: 'replay', outcome: DoneEntry }

export type Outcome = Omit<DoneEntry, 'state' | 'fingerprint'>

export interface IdempotencyOptions {
  store: IdempotencyStore
  prefix: string
  /** How long a retry waits for a request with the same key that is still running. */
  waitMs: number
  log: FastifyBaseLogger
  /** The shared view of Redis health, for a Redis store: a stalled Redis is skipped like by every other user. */
  guard?: RedisGuard
}

export type Idempotency = ReturnType<typeof createIdempotency>

export function createIdempotency ({ store, prefix, waitMs, log, guard }: IdempotencyOptions) {
  const storeKey = (consumerId: string, key: string): string =>
    `${prefix}idem:${consumerId}:${createHash('sha256').update(key).digest('base64url')}`

  // Outcomes the store did not take as their request finished (Redis stalled or skipped): kept and sent
  // again until it does. Sent within the marker's lease, the outcome replaces the marker; later, it
  // fills the key if no retry has claimed it since. A retry reaching this replica meanwhile is answered
  // from here. Without it, a retry after the lease ran the write a second time.
  const unkept = createResendQueue<string, { marker: RunningEntry, outcome: DoneEntry }>({
    send: async (entries) => {
      const tries = await Promise.allSettled(entries.map(async ([key, { marker, outcome }]) => call(() => store.complete(key, marker, outcome, OUTCOME_TTL_MS))))
      // Taken, or refused because another request holds the key (nothing more to do): settled.
      return entries.filter((_, i) => tries[i]?.status === 'fulfilled').map(([key]) => key)
    },
    onChange: (event, count) => {
      if (event === 'sent') log.info({ outcomes: count }, 'idempotency outcomes kept after Redis came back')
      else if (event === 'dropped') log.error({ outcomes: count }, 'idempotency outcomes dropped unkept; a retry with their keys may run again')
    }
  })

  // Markers no request owns: a claim that timed out (Redis ran it late, as it thawed) or a release that
  // failed. Each is dropped once Redis answers (only that exact marker: the release compares its owner),
  // and at once by the next request with its key. Without it, the advised retry got 409 for up to the
  // marker's 30 s lease.
  const orphans = createResendQueue<string, RunningEntry[]>({
    send: async (entries) => {
      const tries = await Promise.allSettled(entries.map(async ([key, markers]) => release(key, markers)))
      return entries.filter((_, i) => tries[i]?.status === 'fulfilled').map(([key]) => key)
    },
    onChange: (event, count) => {
      if (event === 'dropped') log.warn({ keys: count }, 'idempotency markers left to lapse with their lease')
    }
  })

  async function release (key: string, markers: readonly RunningEntry[]): Promise<void> {
    await call(async () => { await Promise.all(markers.map(async (marker) => store.release(key, marker))) })
  }

  function orphan (key: string, marker: RunningEntry): void {
    orphans.keep([[key, [...orphans.get(key) ?? [], marker]]])
  }

  /** One store call, through the Redis guard when there is one (skipped while Redis is cooling down). */
  async function call<T> (op: () => Promise<T>): Promise<T> {
    return guard === undefined ? await op() : await guard.call(op)
  }

  /** Store failures with a key are not served blind: a retry without the first outcome could write twice. */
  async function guarded<T> (op: () => Promise<T>): Promise<T> {
    try {
      return await call(op)
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'idempotency store unavailable')
      throw withRetryAfter(Object.assign(new UnavailableError(
        'The gateway cannot check the Idempotency-Key now; send the request again shortly with the same key.'
      ), { cause: err }), 1)
    }
  }

  const reused = (): Error => new IdempotencyKeyReusedError('This Idempotency-Key was used for a different request (method, path or body); use a new key for a new request.')

  /**
   * The key holds a record this version cannot read (another version's form during a rolling update or
   * a rollback, or a damaged value): the request under it may have been applied upstream, so this one is
   * refused (409, not kept) rather than run again on a guess; the record stays until its TTL. Until
   * 2026-12-02 a truncated record answered 503 and marked Redis down for every user, and a record without
   * `headers` answered 500.
   */
  function unreadable (key: string, reason: string): Error {
    log.warn({ key, reason }, 'idempotency record does not decode; the request is refused (409) rather than run again')
    return new IdempotencyKeyUnreadableError(
      'What is kept under this Idempotency-Key cannot be read here (kept by another version of the gateway, or damaged), so whether ' +
      'the first request with it was applied is not known; it is not sent again. Check its effect (for a score, GET /v1/vra/scores?ids=) ' +
      'and send the request under a new key if it was not applied.'
    )
  }

  /** A kept outcome answers a request with the same fingerprint; another request under the key is a 422. */
  function answerFrom (outcome: DoneEntry, fingerprint: string): Begun {
    if (outcome.fingerprint !== fingerprint) throw reused()
    return { kind: 'replay', outcome }
  }

  function hold (key: string, marker: RunningEntry): Claim {
    const timer = setInterval(() => {
      call(() => store.renew(key, marker, LEASE_MS)).then((isHeld) => {
        if (!isHeld) log.warn('idempotency marker lost while its request runs')
      }, (err: unknown) => { log.warn({ err: { message: (err as Error).message } }, 'idempotency marker not renewed') })
    }, RENEW_EVERY_MS)
    timer.unref()
    return { key, marker, timer }
  }

  return {
    store,
    storeKey,

    /**
     * Claims (consumer, key) for a request with `fingerprint`, or answers from what holds it: the kept
     * outcome (replay), 422 for another request under the key, 409 when the first still runs after the wait.
     */
    async begin (consumerId: string, key: string, fingerprint: string): Promise<Begun> {
      const k = storeKey(consumerId, key)
      const deadline = Date.now() + waitMs
      let pause = POLL_FIRST_MS
      const local = unkept.get(k)?.outcome
      if (local !== undefined) return answerFrom(local, fingerprint)
      const stale = orphans.get(k)
      // Dropped again when the queue sends it: harmless, a release only removes its own marker.
      if (stale !== undefined) await release(k, stale).catch(() => {})
      for (;;) {
        const marker: RunningEntry = { state: 'running', owner: randomUUID(), fingerprint }
        let isSent = false
        const held = await guarded(async () => {
          isSent = true
          return await store.claim(k, marker, LEASE_MS)
        }).catch((err: unknown) => {
          // Sent but unanswered: Redis may still set the marker when it answers again.
          if (isSent) orphan(k, marker)
          throw err
        })
        if (held === undefined) return { kind: 'run', claim: hold(k, marker) }
        if (held.state === 'unreadable') throw unreadable(k, held.reason)
        if (held.state === 'done') return answerFrom(held, fingerprint)
        if (held.fingerprint !== fingerprint) throw reused()
        if (Date.now() + pause > deadline) {
          throw withRetryAfter(new IdempotencyInProgressError(
            'A request with this Idempotency-Key is still running; send it again with the same key to get its outcome.'
          ), 1)
        }
        await sleep(pause)
        pause = Math.min(POLL_MAX_MS, pause * 2)
      }
    },

    /** Keeps `outcome` for 24 h under the claim, or (undefined) drops the claim so a retry runs again. */
    async finish (claim: Claim, outcome: Outcome | undefined): Promise<void> {
      clearInterval(claim.timer)
      const done: DoneEntry | undefined = outcome === undefined ? undefined : { ...outcome, state: 'done', fingerprint: claim.marker.fingerprint }
      try {
        if (done === undefined) {
          await call(() => store.release(claim.key, claim.marker))
        } else if (!await call(() => store.complete(claim.key, claim.marker, done, OUTCOME_TTL_MS))) {
          log.warn('idempotency marker taken over before the outcome was kept')
        }
      } catch (err) {
        if (done === undefined) {
          orphan(claim.key, claim.marker)
          return
        }
        log.warn({ err: { message: (err as Error).message } }, 'idempotency outcome not kept yet; sent again once Redis answers')
        unkept.keep([[claim.key, { marker: claim.marker, outcome: done }]])
      }
    },

    /** At close: one last try for the outcomes Redis has not taken. */
    async close (): Promise<void> {
      await Promise.all([unkept.close(), orphans.close()])
    }
  }
}
