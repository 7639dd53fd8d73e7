// Server-sent events: the open streams of this replica and the fan-out that feeds them. Every replica
// reads each source it has streams for from the store (not from the poll: the poll may run on another
// replica), every FANOUT_MS or at once after a local commit, and writes each new event to each stream.
//
// A stream that resumes (Last-Event-ID) is attached before its backlog is read, and buffers what the
// fan-out hands it meanwhile; the backlog (events after its id) is written, then the buffer minus what
// the backlog held, so nothing falls between the two reads and nothing comes twice. Ids only grow, and
// each stream writes an event only when its id is past the last one it wrote.
import type { FastifyBaseLogger } from 'fastify'
import type { PassThrough } from 'node:stream'
import { idBefore, type PushStore, type StoredEvent } from './store.js'
import { decodeEvent } from './sources.js'

const FANOUT_MS = 200
const PAGE = 500
// A client this far behind (bytes it has not read) is closed; it resumes with Last-Event-ID. A resume's
// backlog is written before the response starts, so a longer one is cut here the same way: the client
// gets the first 4 MB, then the end of the stream, and resumes from the last id it got.
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024
const GAP_DETAIL = 'Events after your Last-Event-ID were dropped (older than the retention window); read the source again to resynchronise.'

export interface Stream {
  id: string
  consumer: string
  source: string
  out: PassThrough
  /** The last event id written to this stream. */
  lastId: string
  /** Events (and gaps) handed over while the backlog was read; null once live. */
  pending: Array<StoredEvent | Gap> | null
}

/** Events up to `trimmed` were trimmed away before a read reached them. */
export interface Gap { trimmed: string }

/**
 * One SSE frame. `data` is one line of JSON: JSON never holds a raw line break inside a string, so one in
 * a stored text is whitespace between tokens and is written as a space (JSON.stringify writes none). An
 * event that does not decode (damaged, or of another release's form: the stream is shared) is sent as
 * its id alone, which moves the client's Last-Event-ID past it and dispatches nothing: its text never
 * reaches the stream, where a line break in it would write fields of its own. Until 2026-12-02 the text
 * and the type were written as stored.
 */
export function frame (event: StoredEvent): string {
  const body = decodeEvent(event.data)
  if (body === undefined) return `id: ${event.id}\n\n`
  return `id: ${event.id}\nevent: ${body.type}\ndata: ${event.data.replace(LINE_BREAKS, ' ')}\n\n`
}

const LINE_BREAKS = /[\r\n]/g

export interface HubOptions {
  store: PushStore
  log: FastifyBaseLogger
  onSubscribers: (source: string, count: number) => void
}

export function createHub (opts: HubOptions) {
  const { store, log } = opts
  const bySource = new Map<string, { streams: Set<Stream>, cursor: Promise<string> }>()
  let timer: NodeJS.Timeout | undefined
  let isRunning = false
  let again = false
  // Whether the last fan-out failed: an outage is logged as it starts and ends, not at every read
  // (every FANOUT_MS; with Redis dead, that was five warnings a second, each with a stack).
  let isFailing = false

  function write (stream: Stream, event: StoredEvent): void {
    // An ended stream takes no more writes (a write after its end would destroy what it still holds).
    if (stream.out.writableEnded || !idBefore(stream.lastId, event.id)) return
    stream.lastId = event.id
    stream.out.write(frame(event))
    if (stream.out.writableLength > MAX_BUFFERED_BYTES) {
      if (stream.pending === null) log.warn({ source: stream.source, consumer: stream.consumer }, 'push: a stream fell too far behind; closed (it resumes with Last-Event-ID)')
      else log.info({ source: stream.source, consumer: stream.consumer }, 'push: a resume\'s backlog passed 4 MB; the stream ends after it (the client resumes from its last id)')
      stream.out.end()
    }
  }

  /**
   * Tells `stream` that events after its last one were trimmed away unread, once: it carries on after
   * `trimmed` (the events read with it all come after it).
   */
  function writeGap (stream: Stream, trimmed: string): void {
    if (stream.out.writableEnded || !idBefore(stream.lastId, trimmed)) return
    stream.lastId = trimmed
    stream.out.write(`event: gap\ndata: ${JSON.stringify({ type: 'gap', source: stream.source, detail: GAP_DETAIL })}\n\n`)
  }

  async function fanOut (): Promise<void> {
    if (isRunning) {
      again = true
      return
    }
    isRunning = true
    try {
      do {
        again = false
        await Promise.all([...bySource].map(async ([source, entry]) => {
          let cursor = await entry.cursor
          for (;;) {
            const { events, trimmed } = await store.page(source, cursor, PAGE)
            // More events than PUSH_MAX_EVENTS came since the last read: the streams behind are told so.
            const gap = idBefore(cursor, trimmed) ? [{ trimmed }] : []
            for (const event of [...gap, ...events]) {
              for (const stream of entry.streams) {
                if (stream.pending !== null) stream.pending.push(event)
                else if ('trimmed' in event) writeGap(stream, event.trimmed)
                else write(stream, event)
              }
            }
            const last = events.at(-1)
            if (last === undefined) break
            cursor = last.id
            entry.cursor = Promise.resolve(cursor)
            if (events.length < PAGE) break
          }
        }))
      } while (again)
      if (isFailing) log.info('push: reading new events again')
      isFailing = false
    } catch (err) {
      if (isFailing) log.debug({ err: { message: (err as Error).message } }, 'push: reading new events failed again')
      else log.warn({ err }, 'push: reading new events failed; retrying quietly until it works')
      isFailing = true
    } finally {
      isRunning = false
    }
  }

  function schedule (): void {
    if (timer !== undefined || bySource.size === 0) return
    timer = setInterval(() => { fanOut().catch(() => {}) }, FANOUT_MS)
    timer.unref()
  }

  return {
    /**
     * Attaches a stream and brings it up to date: from `lastEventId` when it resumes (the events after
     * it, after an `event: gap` when some were trimmed), else from now.
     */
    async attach (stream: Stream, lastEventId: string | undefined): Promise<void> {
      let entry = bySource.get(stream.source)
      if (entry === undefined) {
        // The fan-out's cursor is the stream's tail as it was before any of this source's streams read
        // their backlog: what is added later is read by the fan-out or by their backlog read, or both.
        const cursor = store.tail(stream.source)
        cursor.catch(() => {})
        entry = { streams: new Set(), cursor }
        bySource.set(stream.source, entry)
      }
      entry.streams.add(stream)
      opts.onSubscribers(stream.source, entry.streams.size)
      schedule()
      try {
        await entry.cursor
      } catch (err) {
        entry.cursor = store.tail(stream.source)
        entry.cursor.catch(() => {})
        throw err
      }
      if (lastEventId === undefined) {
        stream.lastId = await store.tail(stream.source)
      } else {
        stream.lastId = lastEventId
        for (;;) {
          const { events, trimmed } = await store.page(stream.source, stream.lastId, PAGE)
          // Before the backlog: the client learns first that what follows does not join up.
          writeGap(stream, trimmed)
          for (const event of events) write(stream, event)
          if (events.length < PAGE || stream.out.writableEnded) break
        }
      }
      const pending = stream.pending ?? []
      stream.pending = null
      for (const event of pending) {
        if ('trimmed' in event) writeGap(stream, event.trimmed)
        else write(stream, event)
      }
    },

    detach (stream: Stream): void {
      const entry = bySource.get(stream.source)
      if (entry === undefined || !entry.streams.delete(stream)) return
      opts.onSubscribers(stream.source, entry.streams.size)
      if (entry.streams.size === 0) bySource.delete(stream.source)
      if (bySource.size === 0) {
        clearInterval(timer)
        timer = undefined
      }
    },

    /** Streams open on this replica for `source`. */
    count (source: string): number {
      return bySource.get(source)?.streams.size ?? 0
    },

    /** Reads new events now (after a local commit) instead of at the next interval. */
    poke (): void {
      fanOut().catch(() => {})
    },

    /** Every open stream, to say goodbye at shutdown. */
    streams (): Stream[] {
      return [...bySource.values()].flatMap((e) => [...e.streams])
    },

    close (): void {
      clearInterval(timer)
      timer = undefined
    }
  }
}
