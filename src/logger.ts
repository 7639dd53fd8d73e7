// pino options: structured JSON, secrets redacted by path (pino docs/redaction.md), and URLs logged
// without their query string values for `token`, since the compatibility path accepts `?token=`.
import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { LoggerOptions } from 'pino'
import type { Config } from './config.js'

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
const SECRET_QUERY = /([?&](?:token|key|api_key|password)=)[^&#]*/gi

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'headers.authorization',
  // One level of wildcard: intermediate wildcards (`*.*.token`) make pino walk every logged object on
  // every line, and no log call of ours nests secrets deeper (the leak guard of test/helper.ts checks).
  'token', '*.token',
  'password', '*.password',
  'key', '*.key'
]

/** A URL as it may appear in logs: secrets in the query are replaced. */
export function redactUrl (url: string): string {
  return url.includes('=') ? url.replace(SECRET_QUERY, '$1[Redacted]') : url
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
