// The v1 facade as the fuzz suite sees it (README "The v1 API"): each route's path parameters, query
// parameters and JSON body fields, each with values that must be accepted and values that must be refused.
import fc from 'fast-check'
import { DETECTION_LISTS, DEFAULT_CUSTOM_LISTS } from '../../src/lists.js'
import {
  badId, badNumberText, hostileNumberLiteral, hugeIntLiteral, impossibleDate, malformedDate, oddText, randomId, validDate, validId,
  KNOWN_IDS
} from './model.js'

export interface ValueSpec {
  valid: fc.Arbitrary<string>
  /** Values the route must refuse with a 4xx before any upstream call. */
  invalid: fc.Arbitrary<string>
}

export interface V1Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Path template, parameters as `:name`. */
  template: string
  /** The methods the path answers (405 for the others). */
  allowed: readonly string[]
  scope: 'read' | 'write'
  pathParams?: Record<string, ValueSpec>
  query?: Record<string, ValueSpec>
  requiredQuery?: readonly string[]
  /** JSON body fields; values are raw JSON texts. */
  body?: Record<string, ValueSpec>
  requiredBody?: readonly string[]
  /** Body fields that hold ATLAS ids (sent as JSON numbers in one family). */
  idFields?: readonly string[]
  /** Whether the path names a custom list that the key must be allowed to write. */
  writesList?: boolean
}

const str = (a: fc.Arbitrary<string>) => a.map((s) => JSON.stringify(s))
const dec = (min: number, max: number) => fc.double({ min, max, noNaN: true, noDefaultInfinity: true }).map((n) => String(Math.round(n * 1e5) / 1e5))

const detectionNames = Object.keys(DETECTION_LISTS)
const customNames = Object.keys(DEFAULT_CUSTOM_LISTS)

const idParam: ValueSpec = { valid: validId, invalid: badId.filter((s) => s !== '') }
const customName: ValueSpec = {
  valid: fc.constantFrom(...customNames),
  invalid: fc.oneof(fc.constantFrom('nope', 'MOOKODI', 'vra ', 'good', 'dummy', 'a'.repeat(65), '..', '%2e%2e'), oddText.filter((s) => s !== ''))
}
const anyListName: ValueSpec = {
  valid: fc.constantFrom(...detectionNames, ...customNames),
  invalid: fc.oneof(fc.constantFrom('nope', 'GOOD', 'good ', 'dummy', '0', '2', 'a'.repeat(65)), oddText.filter((s) => s !== ''))
}

const mjdMin: ValueSpec = { valid: fc.constantFrom('0', '58000', '60000.25', '1e4'), invalid: fc.oneof(fc.constantFrom('-1', '-0.5'), badNumberText) }
const since: ValueSpec = { valid: validDate, invalid: fc.oneof(impossibleDate, malformedDate) }
const idList: ValueSpec = {
  valid: fc.array(validId, { minLength: 1, maxLength: 4 }).map((ids) => ids.join(',')),
  invalid: fc.oneof(
    fc.tuple(fc.array(validId, { maxLength: 2 }), badId).map(([ids, bad]) => [...ids, bad].join(',')),
    fc.constantFrom('', ',', `${KNOWN_IDS[0]},`, `,${KNOWN_IDS[0]}`, `${KNOWN_IDS[0]},,${KNOWN_IDS[1]}`, `${KNOWN_IDS[0]};${KNOWN_IDS[1]}`, `${KNOWN_IDS[0]} ${KNOWN_IDS[1]}`)
  )
}
// GET /v1/objects takes at most 100 ids in a URL (README).
const urlIdList: ValueSpec = {
  valid: idList.valid,
  invalid: fc.oneof(idList.invalid, fc.constant(Array.from({ length: 101 }, (_, i) => String(10n ** 18n + BigInt(i) * 7919n)).join(',')))
}
const numberIn = (min: number, max: number, outside: string[]): ValueSpec => ({
  valid: dec(min, max),
  invalid: fc.oneof(fc.constantFrom(...outside), badNumberText)
})
const filterNumber: ValueSpec = { valid: fc.constantFrom('0', '0.5', '5', '-3.25', '360'), invalid: badNumberText }
const filterText: ValueSpec = { valid: fc.constantFrom('SN', 'NT', 'TDE', 'SN Ia', 'AGN'), invalid: fc.constant('x'.repeat(65)) }
const bool: ValueSpec = { valid: fc.constantFrom('true', 'false'), invalid: fc.constantFrom('yes', '2', 'maybe', '', 'TRUE ', 'null') }
const afterId: ValueSpec = { valid: fc.constantFrom('0', '1', '100', '999999'), invalid: fc.oneof(fc.constantFrom('-1', '1.5', '1e400'), badNumberText) }

// Body values, as raw JSON texts.
const jsonId: ValueSpec = {
  valid: str(validId),
  invalid: fc.oneof(str(badId), fc.constantFrom('null', 'true', '[]', '{}', '1.5', '-1', '0', '"1161600211221604900\\u0000"'), hostileNumberLiteral, hugeIntLiteral)
}
const jsonIds = (max: number, minItems: number): ValueSpec => ({
  valid: fc.array(str(validId), { minLength: 1, maxLength: 4 }).map((a) => `[${a.join(',')}]`),
  invalid: fc.oneof(
    fc.constantFrom(...(minItems > 0 ? ['[]'] : []), 'null', '"1161600211221604900"', '{}', '[null]', '[[]]', '[true]'),
    fc.tuple(fc.array(str(validId), { maxLength: 2 }), jsonId.invalid).map(([a, b]) => `[${[...a, b].join(',')}]`),
    // One more distinct id than the limit (max_batch of the fuzz consumer, or the route's maxItems).
    fc.constant(`[${Array.from({ length: max + 1 }, (_, i) => `"${10n ** 18n + BigInt(i)}"`).join(',')}]`)
  )
})
const jsonProbability: ValueSpec = { valid: fc.constantFrom('0', '1', '0.5', '0.93', '1e-3'), invalid: fc.oneof(fc.constantFrom('1.5', '-0.1', '"0.5"', 'null', 'true', '[0.5]'), hostileNumberLiteral, hugeIntLiteral) }
const jsonNumber: ValueSpec = { valid: fc.constantFrom('0', '7.5', '-2', '1000', '3.25'), invalid: fc.oneof(fc.constantFrom('"7"', 'null', '{}', '[]', 'false'), hostileNumberLiteral) }
const jsonSmallInt: ValueSpec = { valid: fc.constantFrom('0', '1', '32767'), invalid: fc.oneof(fc.constantFrom('-1', '32768', '1.5', '"1"', 'null'), hostileNumberLiteral, hugeIntLiteral) }
const jsonBool: ValueSpec = { valid: fc.constantFrom('true', 'false'), invalid: fc.constantFrom('"true"', '1', '0', 'null', '"yes"') }
const jsonMjd: ValueSpec = { valid: fc.constantFrom('0', '58000', '60000.5'), invalid: fc.oneof(fc.constantFrom('-1', '"0"', 'null', '[]'), hostileNumberLiteral) }
const jsonTarget: ValueSpec = { valid: str(fc.constantFrom('possible', 'eyeball', 'galcand')), invalid: str(fc.constantFrom('good', 'garbage', 'POSSIBLE', '', 'snooze', '3')) }

export const V1_ROUTES: readonly V1Route[] = [
  { method: 'GET', template: '/v1/objects/:id', allowed: ['GET', 'HEAD'], scope: 'read', pathParams: { id: idParam }, query: { mjd_min: mjdMin } },
  {
    method: 'GET',
    template: '/v1/objects/:id/lightcurve',
    allowed: ['GET', 'HEAD'],
    scope: 'read',
    pathParams: { id: idParam },
    query: { mjd_min: mjdMin, format: { valid: fc.constantFrom('json', 'csv', 'svg'), invalid: fc.oneof(fc.constantFrom('png', 'SVG', 'json ', ''), oddText) } }
  },
  { method: 'GET', template: '/v1/objects', allowed: ['GET', 'HEAD'], scope: 'read', query: { ids: urlIdList, mjd_min: mjdMin }, requiredQuery: ['ids'] },
  {
    method: 'POST',
    template: '/v1/objects/query',
    allowed: ['POST'],
    scope: 'read',
    body: { ids: jsonIds(10000, 1), mjd_min: jsonMjd },
    requiredBody: ['ids'],
    idFields: ['ids']
  },
  {
    method: 'GET',
    template: '/v1/cone',
    allowed: ['GET', 'HEAD'],
    scope: 'read',
    query: {
      ra: numberIn(0, 360, ['-1', '360.5', '1e9', '-0.0001']),
      dec: numberIn(-90, 90, ['-91', '90.5', '1e9']),
      radius: { valid: dec(0.5, 300), invalid: fc.oneof(fc.constantFrom('0', '-1', '300.01', '301', '1e9'), badNumberText) },
      mode: { valid: fc.constantFrom('nearest', 'all', 'count'), invalid: fc.constantFrom('Nearest', 'ALL', '', 'x', 'count ', 'all,count') }
    },
    requiredQuery: ['ra', 'dec', 'radius']
  },
  { method: 'GET', template: '/v1/lists', allowed: ['GET', 'HEAD'], scope: 'read' },
  {
    method: 'GET',
    template: '/v1/lists/:name/objects',
    allowed: ['GET', 'HEAD'],
    scope: 'read',
    pathParams: { name: anyListName },
    query: {
      since,
      vra_gte: filterNumber,
      vra_lte: filterNumber,
      rb_pix_gte: filterNumber,
      rb_pix_lte: filterNumber,
      ra_gte: filterNumber,
      ra_lte: filterNumber,
      dec_gte: filterNumber,
      dec_lte: filterNumber,
      sherlock_class: filterText,
      spec_type: filterText
    }
  },
  { method: 'GET', template: '/v1/custom-lists/:name/objects', allowed: ['GET', 'HEAD'], scope: 'read', pathParams: { name: customName } },
  { method: 'GET', template: '/v1/objects/:id/custom-lists', allowed: ['GET', 'HEAD'], scope: 'read', pathParams: { id: idParam } },
  { method: 'GET', template: '/v1/vra/scores', allowed: ['GET', 'HEAD', 'POST'], scope: 'read', query: { since, ids: idList, after_id: afterId, debug: bool } },
  { method: 'GET', template: '/v1/vra/todo', allowed: ['GET', 'HEAD', 'POST'], scope: 'read', query: { since, ids: idList } },
  { method: 'GET', template: '/v1/vra/ranks', allowed: ['GET', 'HEAD', 'POST'], scope: 'read', query: { since, ids: idList } },
  {
    method: 'GET',
    template: '/v1/crossmatches',
    allowed: ['GET', 'HEAD'],
    scope: 'read',
    query: {
      names: {
        valid: fc.array(fc.constantFrom('2018cow', 'AT2018cow', 'SN2019abc', 'ZTF18abcdefg', 'Gaia21xyz'), { minLength: 1, maxLength: 4 }).map((a) => a.join(',')),
        invalid: fc.constantFrom('', ',', 'a,,b', ' 2018cow', '2018cow\u0000', 'a\u0000b', 'x'.repeat(4001), Array.from({ length: 101 }, (_, i) => `n${i}`).join(','))
      }
    },
    requiredQuery: ['names']
  },
  { method: 'GET', template: '/v1/me', allowed: ['GET', 'HEAD'], scope: 'read' },
  {
    method: 'POST',
    template: '/v1/vra/scores',
    allowed: ['GET', 'HEAD', 'POST'],
    scope: 'write',
    body: { id: jsonId, preal: jsonProbability, pgal: jsonProbability, pfast: jsonProbability, rank: jsonNumber, rank_alt1: jsonNumber, is_gal_cand: jsonSmallInt, debug: jsonBool },
    requiredBody: ['id'],
    idFields: ['id']
  },
  { method: 'POST', template: '/v1/vra/todo', allowed: ['GET', 'HEAD', 'POST'], scope: 'write', body: { id: jsonId }, requiredBody: ['id'], idFields: ['id'] },
  {
    method: 'POST',
    template: '/v1/vra/ranks',
    allowed: ['GET', 'HEAD', 'POST'],
    scope: 'write',
    body: { id: jsonId, rank: jsonNumber, rank_alt1: jsonNumber, is_gal_cand: jsonSmallInt },
    requiredBody: ['id', 'rank'],
    idFields: ['id']
  },
  { method: 'PUT', template: '/v1/custom-lists/:name/objects/:id', allowed: ['PUT', 'DELETE'], scope: 'write', pathParams: { name: customName, id: idParam }, writesList: true },
  { method: 'DELETE', template: '/v1/custom-lists/:name/objects/:id', allowed: ['PUT', 'DELETE'], scope: 'write', pathParams: { name: customName, id: idParam }, writesList: true },
  {
    method: 'POST',
    template: '/v1/custom-lists/:name/members',
    allowed: ['POST'],
    scope: 'write',
    pathParams: { name: customName },
    body: { add: jsonIds(1000, 0), remove: jsonIds(1000, 0) },
    idFields: ['add', 'remove'],
    writesList: true
  },
  { method: 'PUT', template: '/v1/objects/:id/detection-list', allowed: ['PUT'], scope: 'write', pathParams: { id: idParam }, body: { list: jsonTarget }, requiredBody: ['list'] }
]

/** A random 19-digit id that is not exact as a float64, as a bare JSON number. */
export const inexactId = randomId.filter((s) => BigInt(Math.round(Number(s))) !== BigInt(s))
