// pino options: structured JSON, secrets redacted by path, and URLs logged
// without the values of secret query parameters, since the compatibility path accepts `?token=`.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { LoggerOptions } from 'pino'
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

export function buildLoggerOptions (config: Config): LoggerOptions {
  return {
    level: config.LOG_LEVEL,
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
