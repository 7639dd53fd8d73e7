// pino options: structured JSON, secrets redacted by path, and URLs logged
// without the values of secret query parameters, since the compatibility path accepts `?token=`.
// Lines go to stdout through an asynchronous, buffered destination: a request never waits for a
// write(2), and lines go out together, once LOG_BUFFER_BYTES have gathered or LOG_FLUSH_MS after the
// first line of a batch, whichever comes first. server.ts flushes it on shutdown and pino flushes it
// synchronously on process exit, so only a kill -9 loses lines (at most one batch).
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import { destination, type Bindings, type ChildLoggerOptions, type DestinationStream, type LoggerOptions } from 'pino'
import type { Config } from './config.js'

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
/**
 * Names whose values are secrets, wherever they appear: query parameters (redactUrl) and logged fields
 * (REDACT_PATHS). Compared in lower case, after decoding.
 */
export const SECRET_NAMES: readonly string[] = ['token', 'key', 'api_key', 'password', 'access_token']
const SECRET_NAME_SET = new Set(SECRET_NAMES)
// A name=value pair after `?`, `&` or `;`. Django splits the query on `&` only, but `;` is a separator for
// other servers and proxies, and a refused request is logged too; `?` inside a query counts as well. So
// this may redact more than a server would read, never less. A value runs to the next separator.
const PAIR = /([?&;])([^?&;=]*)=([^?&;]+)/g
const ESCAPE = /%([0-9A-Fa-f]{2})/g

/** A query name as a server reads it (`+` is a space, %XX decoded), then lower case and without `[…]`. */
function paramName (raw: string): string {
  let name = raw.includes('+') ? raw.replaceAll('+', ' ') : raw
  if (name.includes('%')) {
    try {
      name = decodeURIComponent(name)
    } catch {
      // Malformed UTF-8 (or a stray `%`): decode the escapes one byte at a time, as lenient servers do.
      name = name.replace(ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    }
  }
  const bracket = name.indexOf('[')
  return (bracket > 0 ? name.slice(0, bracket) : name).trim().toLowerCase()
}

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  // One level of wildcard: intermediate wildcards (`*.*.token`) make pino walk every logged object on
  // every line, and no log call of ours nests secrets deeper (the leak guard of test/helper.ts checks).
  ...SECRET_NAMES.flatMap((name) => [name, `*.${name}`])
]

/**
 * A URL as it may appear in logs: the value of every secret parameter is replaced, whatever the form of
 * its name (`%74oken`, `TOKEN`, `token[]`, `token+`, after `;`). The name is kept as sent.
 */
export function redactUrl (url: string): string {
  if (!url.includes('=')) return url
  return url.replace(PAIR, (pair: string, sep: string, name: string) =>
    SECRET_NAME_SET.has(paramName(name)) ? `${sep}${name}=[Redacted]` : pair)
}

/** The caller's X-Request-Id when it is short and made of safe characters, else a fresh UUID. */
export function genReqId (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

const LOG_BUFFER_BYTES = 4096
const LOG_FLUSH_MS = 200

/**
 * stdout, written asynchronously in batches (see above). Lines gather here into one string and reach
 * sonic-boom a batch at a time: its write() measures the UTF-8 length of the line and of the whole
 * buffer it appends to, so handing it one line per request re-measured the growing batch each time
 * (1.7 % of a cache hit's CPU under `perf`). flush and flushSync (pino's exit handler) take the
 * gathered lines first.
 */
export function createLogDestination (): DestinationStream {
  const stream = destination({ dest: 1, sync: false, minLength: LOG_BUFFER_BYTES })
  let pending = ''
  let timer: NodeJS.Timeout | undefined
  const write = stream.write.bind(stream)
  const handOver = (): void => {
    if (pending === '') return
    const batch = pending
    pending = ''
    write(batch)
  }
  const flushAsync = stream.flush.bind(stream)
  const flushSync = stream.flushSync.bind(stream)
  stream.flush = (cb?: (err?: Error) => void): void => {
    handOver()
    flushAsync(cb)
  }
  stream.flushSync = (): void => {
    handOver()
    flushSync()
  }
  // The batch timer. sonic-boom's flush(cb) waits for 'drain' with a listener pair per call, so while a
  // write cannot finish (stdout not read) a flush every tick piled them up: one flush waits at a time,
  // and the timer comes back until it is done. After a tick that saw lines it comes back once more: a
  // flush that found a write in flight leaves what followed it for the next one.
  let flushing = false
  let linesSinceTick = 0
  const arm = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(onTimer, LOG_FLUSH_MS)
    // A pending flush never keeps the process alive; exit flushes synchronously.
    timer.unref()
  }
  function onTimer (): void {
    timer = undefined
    handOver()
    if (flushing) return arm()
    const wasActive = linesSinceTick > 0
    linesSinceTick = 0
    flushing = true
    // A destroyed stream (stdout closed) reports it to the callback instead of throwing.
    stream.flush(() => { flushing = false })
    if (wasActive) arm()
  }
  stream.write = (line: string): boolean => {
    pending += line
    linesSinceTick++
    // UTF-16 units: the batch is at least this many bytes.
    if (pending.length >= LOG_BUFFER_BYTES) handOver()
    arm()
    return true
  }
  return stream
}

export function buildLoggerOptions (config: Config): LoggerOptions & { stream?: DestinationStream | NodeJS.WritableStream } {
  return {
    level: config.LOG_LEVEL,
    ...(config.LOG_LEVEL === 'silent' ? {} : { stream: createLogDestination() }),
    redact: { paths: REDACT_PATHS, censor: '[Redacted]' },
    serializers: {
      req (req: { method: string, url: string, ip?: string }): Record<string, unknown> {
        return { method: req.method, url: redactUrl(req.url), remoteAddress: req.ip }
      },
      res (res: { statusCode: number }) {
        return { statusCode: res.statusCode }
      }
    }
  }
}

/**
 * request.log, made only when a request logs something. Fastify makes a pino child per request (its
 * bindings serialised, its level methods set up), and a cache hit never logs through it: the access
 * line has its own logger (plugins/access-log.ts). This stands in with the same methods and makes the
 * real child, with the same bindings and options, on first use.
 */
type Log = (...args: unknown[]) => void

class RequestLogger {
  private real: FastifyBaseLogger | undefined
  constructor (private readonly parent: FastifyBaseLogger, private readonly bindings: Bindings, private readonly options: ChildLoggerOptions) {}

  private get log (): FastifyBaseLogger {
    this.real ??= this.parent.child(this.bindings, this.options)
    return this.real
  }

  get level (): string { return this.real?.level ?? this.options.level ?? this.parent.level }
  set level (level: string) { this.log.level = level }
  // Prototype methods (not per-instance closures): a request that never logs allocates only this object.
  fatal (...args: unknown[]): void { (this.log.fatal as Log)(...args) }
  error (...args: unknown[]): void { (this.log.error as Log)(...args) }
  warn (...args: unknown[]): void { (this.log.warn as Log)(...args) }
  info (...args: unknown[]): void { (this.log.info as Log)(...args) }
  debug (...args: unknown[]): void { (this.log.debug as Log)(...args) }
  trace (...args: unknown[]): void { (this.log.trace as Log)(...args) }
  silent (): void {}
  child (bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger { return this.log.child(bindings, options) }
}

/** Fastify's childLoggerFactory: request.log is made on first use (see RequestLogger). */
export function lazyRequestLogger (logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return new RequestLogger(logger, bindings, options) as unknown as FastifyBaseLogger
}
