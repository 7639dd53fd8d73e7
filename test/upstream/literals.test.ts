// Upstream facts live in src/upstream/ only (and in the sandbox and the DRF machinery, which imitate
// the upstream): its paths, request and reply field names, and reply texts. This scans every other
// source file for those literals, taken from src/upstream/ itself, and fails on any. It reads string
// literals: the compatibility path still reads the values the upstream's serializers define
// (src/upstream/serializers.ts) by property (`v.objectid`), which this does not count.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import {
  AUTH_DETAILS, DEFAULT_PATHS, DETAILS, GET_STUB, LOGIN_FAILED, MISSING_RECORD, WRITE_INFO, maxObjectsInfo, replyFields
} from '../../src/upstream/endpoints.js'
import { MJD_RULES } from '../../src/upstream/record.js'
import { SERIALIZERS } from '../../src/upstream/serializers.js'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))
// config.ts: the settings' descriptions name upstream endpoints and replies for operators.
const EXEMPT = /^(upstream\/|sandbox\/|drf\/|config\.ts$)/
// Field names too generic to mean the upstream when they appear elsewhere (`id` of a consumer, `count`
// of a v1 answer, `token` as a secret's name, `objects` of a v1 body, …). Every other field name is
// specific to the upstream (objectid, objectgroupid, transient_object_id, followup_flag_date, …).
// `rb_pix` is also the name of v1's own filters (rb_pix_gte, rb_pix_lte). Endpoint names (`objectlist`) are
// the gateway's identifiers for the upstream's endpoints (their paths are checked as texts).
const GENERIC = new Set(['rb_pix', 'id', 'count', 'object', 'objects', 'token', 'detail', 'debug', 'timestamp', 'rank', 'ra', 'dec', 'mjd', 'radius', 'username', 'password', 'vra', 'separation'])

function sourceFiles (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : []
  })
}

function leaves (value: unknown): string[] {
  if (typeof value === 'string') return [value]
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(leaves)
  return []
}

/** The string literals of a source text, without its comments. */
function stringLiterals (text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').split('\n').filter((line) => !line.trim().startsWith('//')).join('\n')
  return [...code.matchAll(/(['"`])((?:\\.|(?!\1)[^\\\n])*)\1/g)].map((m) => m[2] as string)
}

const names = new Set([
  ...Object.values(SERIALIZERS).flatMap((specs) => specs.map((s) => s.name)),
  ...leaves(replyFields),
  ...MJD_RULES.flatMap((r) => [r.key, r.field])
].filter((name) => !GENERIC.has(name) && !Object.hasOwn(DEFAULT_PATHS, name)))
const paths = new Set(Object.values(DEFAULT_PATHS))
const texts = new Set<string>([
  ...leaves(AUTH_DETAILS), ...leaves(WRITE_INFO), ...leaves(GET_STUB), LOGIN_FAILED,
  ...leaves(DETAILS),
  'AtlasDiffObjects matching query does not exist.', maxObjectsInfo(), MISSING_RECORD,
  'Request was throttled', 'not allowed.', 'non_field_errors', 'expires_in'
])

test('the literal sets are what src/upstream/ knows', async (t) => {
  for (const name of ['objectid', 'objectgroupid', 'objectlistid', 'getcustomlist', 'transient_object_id', 'followup_flag_date', 'mjd_obs', 'externalObjects']) {
    t.ok(names.has(name), `${name} is an upstream field name`)
  }
  t.ok(paths.has('cone/'))
  for (const text of ['Row created.', 'Invalid token.', 'You do not have permission to perform this action.']) t.ok(texts.has(text), text)
})

test('no source file outside src/upstream/ (and the sandbox and DRF imitations) holds an upstream literal', async (t) => {
  const found: string[] = []
  let scanned = 0
  for (const file of sourceFiles(SRC)) {
    const rel = relative(SRC, file)
    if (EXEMPT.test(rel)) continue
    scanned++
    for (const literal of stringLiterals(readFileSync(file, 'utf8'))) {
      if (names.has(literal)) found.push(`src/${rel}: field name '${literal}'`)
      if (paths.has(literal.replace(/^\//, ''))) found.push(`src/${rel}: upstream path '${literal}'`)
      for (const text of texts) if (literal.includes(text)) found.push(`src/${rel}: upstream text '${text}'`)
    }
  }
  t.ok(scanned > 50, `${scanned} files scanned`)
  t.same(found, [], 'upstream literals outside src/upstream/')
})
