// Where a request carries its key, per dialect. v1: `Authorization: Bearer <key>` or `X-API-Key`.
// compat: the upstream's own rules, detail strings included: the header
// `Authorization: Token <key>` (keyword case-insensitive) wins when present, else `?token=`.
import { isUtf8 } from 'node:buffer'
import type { FastifyRequest } from 'fastify'

import { AUTH_DETAILS, QUERY_TOKEN_PATTERN } from '../upstream/endpoints.js'

export const COMPAT_NOT_PROVIDED = AUTH_DETAILS.notProvided
export const COMPAT_INVALID_TOKEN = AUTH_DETAILS.invalid
const COMPAT_NO_CREDENTIALS = AUTH_DETAILS.noCredentials
const COMPAT_SPACES = AUTH_DETAILS.spaces
const COMPAT_INVALID_CHARS = AUTH_DETAILS.invalidChars
const COMPAT_BAD_FORMAT = AUTH_DETAILS.badFormat

const BEARER = /^bearer(?:[ \t]+(.*))?$/i
// Python's bytes.split() with no argument: runs of ASCII whitespace.
const PY_WHITESPACE = /[ \t\n\r\v\f]+/

/** The v1 key, or undefined when none was sent. A malformed Bearer value is returned as is (→ invalid). */
export function v1Key (request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const match = BEARER.exec(header.trim())
    if (match !== null) return (match[1] ?? '').trim()
  }
  const apiKey = request.headers['x-api-key']
  if (typeof apiKey === 'string' && apiKey.trim() !== '') return apiKey.trim()
  return undefined
}

function queryToken (request: FastifyRequest): string | undefined {
  const query = request.query as Record<string, unknown> | undefined
  const value = query?.token
  // Django's QueryDict.get returns the last of repeated values.
  const token = Array.isArray(value) ? value[value.length - 1] : value
  return typeof token === 'string' && token !== '' ? token : undefined
}

/** The compat key, or the upstream's exact 401 detail explaining why there is none. */
export function compatKey (request: FastifyRequest): { key: string } | { detail: string } {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const parts = header.split(PY_WHITESPACE).filter((part) => part !== '')
    if (parts[0]?.toLowerCase() === 'token') {
      if (parts.length === 1) return { detail: COMPAT_NO_CREDENTIALS }
      if (parts.length > 2) return { detail: COMPAT_SPACES }
      const key = parts[1] as string
      // Node hands header bytes over as latin1; the upstream decodes them as UTF-8.
      if (!isUtf8(Buffer.from(key, 'latin1'))) return { detail: COMPAT_INVALID_CHARS }
      return { key }
    }
  }
  const token = queryToken(request)
  if (token === undefined) return { detail: COMPAT_NOT_PROVIDED }
  if (!QUERY_TOKEN_PATTERN.test(token)) return { detail: COMPAT_BAD_FORMAT }
  return { key: token }
}
