// Webhooks: consumers name them in the consumers file (`webhooks:` — URL, sources, event types, and a
// secret held in a file or an environment variable, never inline). Deliveries follow Standard Webhooks:
// a JSON body `{type, timestamp, data}` posted with `webhook-id` (the event's id, the same on every
// retry), `webhook-timestamp` (seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
// "<id>.<timestamp>.<body>">` keyed with the secret `whsec_<base64>`.
//
// The replica that leads a source delivers its events, one target (consumer, webhook) at a time and in
// order, from a cursor kept in the store: a new leader carries on where the last one stopped (a message
// whose answer was lost with its replica may come twice; receivers deduplicate by webhook-id). A failed
// attempt (no 2xx within PUSH_WEBHOOK_TIMEOUT_MS) is retried after PUSH_WEBHOOK_BACKOFF_MS doubled per
// failure, with full jitter, up to an hour; after PUSH_WEBHOOK_MAX_ATTEMPTS the message goes to the
// consumer's dead-letter list and the next one is sent. Deliveries run beside the poll, never in it.
// A replica that shuts down finishes the post under way and records it before it gives up its leads
// (close()), so a clean shutdown sends nothing twice or out of order. A stored event that does not
// decode (damaged, cut short, or written in another form by another release sharing the stream) is not
// sent: it goes to the dead-letter list as the text it is, and the next one is sent.
import { createHash, createHmac, randomInt } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { request, type Dispatcher } from 'undici'
import { expiryOf } from '../consumers/expiry.js'
import { hasScope } from '../consumers/scopes.js'
import type { Consumer, Webhook } from '../consumers/schema.js'
import { decodeEvent, SUBSCRIBER_SCOPE, type PushEventBody } from './sources.js'
import { idBefore, type PushStore, type StoredEvent } from './store.js'

const MAX_BACKOFF_MS = 3_600_000
const DEAD_LETTERS_KEPT = 1000
const PAGE = 100
// Bytes of a receiver's answer read (and kept in a dead letter) at most.
const ANSWER_BYTES = 512
const UNDECODABLE_ERROR = 'the stored event does not decode (not a JSON object with a string type and source): it was not delivered; raw_event holds its text'
const GAP_ERROR = 'events after `after` up to `through` were trimmed (PUSH_RETENTION_S, PUSH_MAX_EVENTS) before they were delivered; read the source again to resynchronise'

export interface Target {
  /**
   * What its cursor and retry state are kept under: `<consumer>#<SHA-256 of the URL, 16 hex digits>`, with
   * `.<n>` for the n-th further webhook of the consumer with the same URL. Not its place in the list, so
   * that a reload removing an earlier webhook leaves the later ones on their own cursors.
   */
  key: string
  /** `<consumer>#<index>`: the webhook's place in the consumers file, as logs and dead letters name it. */
  label: string
  consumer: Consumer
  webhook: Webhook
}

/** The HMAC key of a `whsec_<base64>` secret; throws naming what is wrong (never the secret). */
export function secretKey (secret: string): Buffer {
  const text = secret.trim()
  if (!text.startsWith('whsec_')) throw new Error('the secret must start with whsec_')
  const key = Buffer.from(text.slice('whsec_'.length), 'base64')
  if (key.length < 16) throw new Error('the secret must hold at least 16 bytes (base64 after whsec_)')
  return key
}

/** `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. */
export function sign (key: Buffer, id: string, timestamp: number, body: string): string {
  return 'v1,' + createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')
}

/** Reads a webhook's secret from the file or environment variable it names. */
export function readSecret (webhook: Webhook): Buffer {
  const ref = webhook.secret
  const text = 'file' in ref ? readFileSync(ref.file, 'utf8') : process.env[ref.env]
  if (text === undefined || text.trim() === '') throw new Error('file' in ref ? `the secret file ${ref.file} is empty` : `the environment variable ${ref.env} is not set`)
  return secretKey(text)
}

/** Why a webhook URL may not be used, or undefined: https, or http to a host on the allow-list. */
export function urlProblem (url: string, allowedHosts: ReadonlySet<string>): string | undefined {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'not a URL'
  }
  if (parsed.username !== '' || parsed.password !== '') return 'credentials in the URL'
  if (parsed.protocol === 'https:') return undefined
  if (parsed.protocol === 'http:' && allowedHosts.has(parsed.hostname.replace(/^\[|\]$/g, ''))) return undefined
  return 'only https, or http to a host on PUSH_WEBHOOK_ALLOWED_HOSTS'
}

/** The wait before attempt `attempt + 1`: the base doubled per failure, capped, with full jitter. */
export function backoffMs (baseMs: number, attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.min(30, attempt - 1))
  return Math.max(1, randomInt(Math.max(2, Math.floor(ceiling)) + 1))
}

/**
 * The first ANSWER_BYTES of a receiver's answer, then the body is dropped (with its connection) unread:
 * the status decides the outcome, the start of the answer is only kept for a dead letter. An answer cut
 * by the attempt's deadline gives what came before it.
 */
async function answerStart (body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer)
      size += (chunk as Buffer).length
      if (size >= ANSWER_BYTES) break
    }
  } catch {
    // The deadline passed while the answer came in.
  } finally {
    body.destroy()
  }
  return Buffer.concat(chunks).subarray(0, ANSWER_BYTES).toString('utf8')
}

interface TargetState { isBusy: boolean, attempts: number, retryAt: number, timer: NodeJS.Timeout | undefined }

/** `leadOf`: the token of the lead of `source` this replica holds now, or undefined when it does not lead it. */
export function createWebhooks (app: FastifyInstance, store: PushStore, leadOf: (source: string) => string | undefined) {
  const config = app.config
  const allowed = new Set(config.PUSH_WEBHOOK_ALLOWED_HOSTS.split(',').map((h) => h.trim()).filter((h) => h !== ''))
  const log = app.log.child({ component: 'push-webhooks' })
  const states = new Map<string, TargetState>()
  const warned = new Set<string>()
  let isClosed = false
  // The runs under way (drain()s), for close() to wait for.
  const running = new Set<Promise<void>>()

  // A consumer's targets, made once per consumer object (a reload makes new ones): targets() runs for
  // every message delivered, and would hash every webhook's URL each time.
  const targetsOf = new WeakMap<Consumer, Target[]>()
  function consumerTargets (consumer: Consumer): Target[] {
    let list = targetsOf.get(consumer)
    if (list !== undefined) return list
    const repeats = new Map<string, number>()
    list = consumer.webhooks.map((webhook, index) => {
      const digest = createHash('sha256').update(webhook.url).digest('hex').slice(0, 16)
      const n = repeats.get(digest) ?? 0
      repeats.set(digest, n + 1)
      return { key: `${consumer.id}#${digest}${n === 0 ? '' : `.${n}`}`, label: `${consumer.id}#${index}`, consumer, webhook }
    })
    targetsOf.set(consumer, list)
    return list
  }

  /**
   * The webhooks of consumers whose keys would be let in now (neither disabled nor expired) and that
   * could open the matching stream (they hold its scope: `admin` or a write scope alone grants no reads).
   */
  function targets (): Target[] {
    const out: Target[] = []
    const now = app.auth.now()
    for (const consumer of app.consumers.list()) {
      if (consumer.disabled || expiryOf(consumer, now)?.isExpired === true || consumer.webhooks.length === 0) continue
      if (!hasScope(consumer, SUBSCRIBER_SCOPE)) {
        for (const target of consumerTargets(consumer)) warnOnce(target, `its consumer lacks the ${SUBSCRIBER_SCOPE} scope`)
        continue
      }
      out.push(...consumerTargets(consumer))
    }
    return out
  }

  /** The target `key` as configured now, when it still names `source`: a reload may have removed it. */
  function current (key: string, source: string): Target | undefined {
    return targets().find((t) => t.key === key && t.webhook.sources.includes(source))
  }

  function warnOnce (target: Target, reason: string): void {
    const key = `${target.key} ${reason}`
    if (warned.has(key)) return
    warned.add(key)
    log.error({ consumer: target.consumer.id, webhook: target.label, reason }, 'push: webhook not used')
  }

  /**
   * Posts one event; resolves with the outcome, never throws. The attempt has PUSH_WEBHOOK_TIMEOUT_MS in
   * all: an answer that trickles in (never idle long enough for an idle timeout) would hold every later
   * message of the target.
   */
  async function post (target: Target, key: Buffer, eventId: string, data: PushEventBody): Promise<{ ok: boolean, detail: string }> {
    const timestamp = Math.floor(Date.now() / 1000)
    const body = JSON.stringify({ type: data.type, timestamp: new Date(timestamp * 1000).toISOString(), data })
    const id = `${data.source}:${eventId}`
    const deadline = AbortSignal.timeout(config.PUSH_WEBHOOK_TIMEOUT_MS)
    try {
      const res = await request(target.webhook.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'atlas-gateway-webhooks',
          'webhook-id': id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': sign(key, id, timestamp, body)
        },
        body,
        signal: deadline
      })
      const text = await answerStart(res.body)
      return { ok: res.statusCode >= 200 && res.statusCode < 300, detail: `status ${res.statusCode}${text === '' ? '' : `: ${text}`}` }
    } catch (err) {
      return { ok: false, detail: deadline.aborted ? `no answer within ${config.PUSH_WEBHOOK_TIMEOUT_MS} ms` : (err as NodeJS.ErrnoException).code ?? (err as Error).message }
    }
  }

  /**
   * Delivers what target `targetKey` has pending on `source`, in order, until it is done or must wait.
   * Each attempt looks the target up again: a reload may have removed it, disabled its consumer or
   * changed it since (then the next run starts over with its new URL and secret).
   */
  async function drain (targetKey: string, source: string, state: TargetState): Promise<void> {
    const target = current(targetKey, source)
    // Every step below is under this lead: once it is lost (or taken anew) the run stops, and cursors are
    // written only while it is held, so a replica that lost it never moves a cursor back.
    const lead = leadOf(source)
    if (target === undefined || lead === undefined) return
    const problem = urlProblem(target.webhook.url, allowed)
    if (problem !== undefined) return warnOnce(target, problem)
    let key: Buffer
    try {
      key = readSecret(target.webhook)
    } catch (err) {
      return warnOnce(target, (err as Error).message)
    }
    let cursor = await store.cursor(source, target.key)
    if (cursor === null) {
      // Releases before 2026-12-01 kept the cursor under the webhook's place in the list (its label): an
      // upgraded replica carries on from there (and removes it) instead of skipping what was not
      // delivered yet. A new webhook starts from now, not from the start of the retention window.
      const legacy = await store.cursor(source, target.label)
      cursor = legacy ?? await store.tail(source)
      if (!await store.setCursor(source, target.key, cursor, { replaces: legacy === null ? undefined : target.label, lead })) return
    }
    const wanted = target.webhook.events
    for (;;) {
      const { events, trimmed } = await store.page(source, cursor, PAGE)
      if (idBefore(cursor, trimmed)) {
        if (isClosed || leadOf(source) !== lead) return
        if (!await missed(target, source, cursor, trimmed, lead)) return
        cursor = trimmed
        // A message being retried may be among them: the next one starts its own count.
        state.attempts = 0
      }
      if (events.length === 0) return
      for (const event of events) {
        // A retry timer may fire after the lead moved: the new leader delivers from the stored cursor.
        if (isClosed || Date.now() < state.retryAt || leadOf(source) !== lead) return
        if (current(targetKey, source)?.webhook !== target.webhook) return
        const data = decodeEvent(event.data)
        if (data === undefined) {
          // Skipped whatever types the webhook asks for (its type cannot be told): it would otherwise
          // throw here at every attempt and hold every later message of the target.
          await undecodable(target, source, event)
        } else if (wanted === undefined || wanted.includes(data.type)) {
          const result = await post(target, key, event.id, data)
          if (!result.ok) {
            state.attempts++
            if (state.attempts < config.PUSH_WEBHOOK_MAX_ATTEMPTS) {
              app.metrics.pushDeliveries.inc({ consumer: target.consumer.id, outcome: 'retry' })
              const wait = backoffMs(config.PUSH_WEBHOOK_BACKOFF_MS, state.attempts)
              state.retryAt = Date.now() + wait
              log.warn({ consumer: target.consumer.id, webhook: target.label, event: event.id, attempt: state.attempts, retry_in_ms: wait, detail: result.detail }, 'push: webhook delivery failed; retrying')
              return
            }
            app.metrics.pushDeliveries.inc({ consumer: target.consumer.id, outcome: 'dead_letter' })
            log.error({ consumer: target.consumer.id, webhook: target.label, event: event.id, attempts: state.attempts, detail: result.detail }, 'push: webhook delivery gave up; message kept in the dead-letter list')
            await store.deadLetter(target.consumer.id, JSON.stringify({
              webhook: target.label, url: target.webhook.url, event_id: event.id, attempts: state.attempts, last_error: result.detail, failed_at: new Date().toISOString(), event: data
            }), DEAD_LETTERS_KEPT)
          } else {
            app.metrics.pushDeliveries.inc({ consumer: target.consumer.id, outcome: 'delivered' })
          }
          state.attempts = 0
          state.retryAt = 0
        }
        cursor = event.id
        if (!await store.setCursor(source, target.key, cursor, { lead })) return
      }
    }
  }

  /**
   * An event whose text does not decode: nothing vouches for what a post would carry, so it is not sent.
   * The consumer's dead-letter list keeps its text as a string (the entry stays JSON whatever it holds),
   * a warning names it once for the target, and the caller moves the cursor past it.
   */
  async function undecodable (target: Target, source: string, event: StoredEvent): Promise<void> {
    app.metrics.pushDeliveries.inc({ consumer: target.consumer.id, outcome: 'undecodable' })
    log.warn({ consumer: target.consumer.id, webhook: target.label, source, event: event.id, bytes: Buffer.byteLength(event.data) }, 'push: a stored event does not decode; not delivered, kept in the dead-letter list')
    await store.deadLetter(target.consumer.id, JSON.stringify({
      webhook: target.label, url: target.webhook.url, source, event_id: event.id, attempts: 0, last_error: UNDECODABLE_ERROR, failed_at: new Date().toISOString(), raw_event: event.data
    }), DEAD_LETTERS_KEPT)
  }

  /**
   * Events after `cursor` up to `trimmed` were trimmed away before they were delivered (a receiver that
   * failed longer than PUSH_RETENTION_S, or more than PUSH_MAX_EVENTS behind): they cannot be sent, so the
   * consumer's dead-letter list says which, the cursor moves past them and the next message goes on.
   */
  async function missed (target: Target, source: string, cursor: string, trimmed: string, lead: string): Promise<boolean> {
    app.metrics.pushDeliveries.inc({ consumer: target.consumer.id, outcome: 'gap' })
    log.error({ consumer: target.consumer.id, webhook: target.label, source, after: cursor, through: trimmed }, 'push: webhook events were trimmed before they were delivered; noted in the dead-letter list')
    await store.deadLetter(target.consumer.id, JSON.stringify({
      webhook: target.label, url: target.webhook.url, source, gap: { after: cursor, through: trimmed }, last_error: GAP_ERROR, failed_at: new Date().toISOString()
    }), DEAD_LETTERS_KEPT)
    return await store.setCursor(source, target.key, trimmed, { lead })
  }

  /** Runs the deliveries of target `key` on `source`, at most one run at a time; forgets a target that is gone. */
  function run (key: string, source: string): void {
    const id = `${key} ${source}`
    let state = states.get(id)
    if (current(key, source) === undefined) {
      // A retry timer of a target a reload removed (a run in progress forgets it when it ends).
      if (state !== undefined && !state.isBusy) states.delete(id)
      return
    }
    if (state === undefined) {
      state = { isBusy: false, attempts: 0, retryAt: 0, timer: undefined }
      states.set(id, state)
    }
    if (state.isBusy || isClosed) return
    const s = state
    s.isBusy = true
    const done = drain(key, source, s).catch((err: unknown) => {
      log.warn({ err, webhook: key, source }, 'push: webhook deliveries failed; retrying')
    }).finally(() => {
      running.delete(done)
      s.isBusy = false
      // A target removed meanwhile is forgotten (deliver() never names it again).
      if (current(key, source) === undefined) {
        states.delete(id)
        return
      }
      // A retry that is due later wakes itself (the leader's loop also runs deliveries at each tick).
      if (s.retryAt > Date.now() && s.timer === undefined && !isClosed) {
        s.timer = setTimeout(() => { s.timer = undefined; run(key, source) }, s.retryAt - Date.now())
        s.timer.unref()
      }
    })
    running.add(done)
  }

  return {
    /** The sources some current consumer's webhook names (they are polled while it exists). */
    sources (): string[] {
      return [...new Set(targets().flatMap((t) => t.webhook.sources))]
    },
    /** Webhooks of `source` as configured now. */
    count (source: string): number {
      return targets().filter((t) => t.webhook.sources.includes(source)).length
    },
    /** Starts the deliveries of `source` (this replica leads it); each target runs at most once at a time. */
    deliver (source: string): void {
      for (const target of targets()) {
        if (target.webhook.sources.includes(source)) run(target.key, source)
      }
    },
    /**
     * Starts no further attempt and resolves when the runs under way have ended: a post under way gets
     * its answer (or its PUSH_WEBHOOK_TIMEOUT_MS) and its cursor is saved, the next message is not sent.
     * Until then the lead must be kept: a new leader would send that message again, after later ones.
     */
    async close (): Promise<void> {
      isClosed = true
      for (const s of states.values()) clearTimeout(s.timer)
      await Promise.all(running)
    }
  }
}
