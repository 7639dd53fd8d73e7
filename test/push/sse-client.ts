// A minimal server-sent events client over real HTTP (undici), for the push tests: it keeps every
// event it got, in order, and lets a test wait for a count or a condition.
import { Agent, request } from 'undici'

export interface SseEvent { id?: string, event: string, data: string }

export interface SseClient {
  status: number
  headers: Record<string, string | string[] | undefined>
  events: SseEvent[]
  /** Every `retry:` value seen. */
  retries: number[]
  comments: number
  ended: Promise<void>
  /** The last id received (what a reconnecting client sends as Last-Event-ID). */
  lastId: () => string | undefined
  waitFor: (match: (events: SseEvent[]) => boolean, timeoutMs?: number) => Promise<void>
  close: () => Promise<void>
}

// One agent for the whole test process: many streams to one origin, each on a connection of its own.
const agent = new Agent({ connections: null, pipelining: 0 })

export async function openSse (url: string, headers: Record<string, string>): Promise<SseClient> {
  const controller = new AbortController()
  const res = await request(url, { headers: { accept: 'text/event-stream', ...headers }, signal: controller.signal, dispatcher: agent })
  const events: SseEvent[] = []
  const retries: number[] = []
  const waiters = new Set<() => void>()
  let comments = 0
  let buffer = ''
  const wake = () => { for (const w of [...waiters]) w() }
  const parse = (block: string) => {
    let id: string | undefined
    let event = 'message'
    const data: string[] = []
    let isEvent = false
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) { comments++; continue }
      const at = line.indexOf(':')
      const field = at < 0 ? line : line.slice(0, at)
      const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '')
      if (field === 'retry') retries.push(Number(value))
      else if (field === 'id') { id = value; isEvent = true } else if (field === 'event') { event = value; isEvent = true } else if (field === 'data') { data.push(value); isEvent = true }
    }
    if (isEvent) events.push({ ...(id === undefined ? {} : { id }), event, data: data.join('\n') })
  }
  const client: SseClient = {
    status: res.statusCode,
    headers: res.headers as Record<string, string | string[] | undefined>,
    events,
    retries,
    get comments () { return comments },
    ended: (async () => {
      try {
        for await (const chunk of res.body) {
          buffer += (chunk as Buffer).toString('utf8')
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            parse(buffer.slice(0, end))
            buffer = buffer.slice(end + 2)
          }
          wake()
        }
      } catch {
        // aborted by close()
      } finally {
        wake()
      }
    })(),
    lastId: () => events.filter((e) => e.id !== undefined).at(-1)?.id,
    waitFor: async (match, timeoutMs = 20_000) => {
      if (match(events)) return
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`SSE: condition not met within ${timeoutMs} ms (${events.length} events)`)) }, timeoutMs)
        const check = () => { if (match(events)) { clearTimeout(timer); waiters.delete(check); resolve() } }
        waiters.add(check)
      })
    },
    close: async () => {
      controller.abort()
      await client.ended
    }
  }
  return client
}
