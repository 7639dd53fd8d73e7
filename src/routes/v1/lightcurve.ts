// GET /v1/objects/{id}/lightcurve (scope read): the light curve of the cached full record, as JSON, CSV
// or SVG (src/render/lightcurve.ts). The record is read like GET /v1/objects/{id} (no upstream call
// when cached; one object unit; a miss is charged like an object read). Its points are read once per
// record version and kept in the L1 derived memo by the record's ETag; mjd_min filters them. The
// renderings without mjd_min are kept there too; all are sent with the read's cache headers.
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { computeEtag } from '../../cache/entry.js'
import { NotAcceptableError, NotFoundError } from '../../errors.js'
import { parseLossless } from '../../lib/json.js'
import { lightCurveCsv, lightCurveJson, lightCurveSvg, SVG_AXIS_LIMIT, SVG_MAX_POINTS } from '../../render/lightcurve.js'
import { AtlasIdSchema, problems } from '../../schemas/common.js'
import type { StoredRecord } from '../../service/index.js'
import { lightCurveOf, lightCurveSince, type LightCurve } from '../../upstream/record.js'
import { acceptQuality, accepts } from './input.js'
import { sendDerived } from './send.js'

const FORMATS = {
  json: { type: 'application/json; charset=utf-8', render: lightCurveJson },
  csv: { type: 'text/csv; charset=utf-8; header=present', render: lightCurveCsv },
  svg: { type: 'image/svg+xml; charset=utf-8', render: lightCurveSvg }
} as const
type Format = keyof typeof FORMATS
const MEDIA: Record<Format, string> = { json: 'application/json', csv: 'text/csv', svg: 'image/svg+xml' }

// The rendering a request gets: `format` when given (406 when Accept excludes its type), else the one
// Accept gives the highest q (RFC 9110 §12.5.1), a tie going to JSON, then CSV, then SVG: so
// `Accept: text/csv, */*;q=0.1` gets CSV and a browser's image Accept (`image/svg+xml,image/*,*/*;q=0.8`)
// the SVG, while `*/*` or no Accept gets JSON.
function formatOf (format: string | undefined, accept: string | undefined): Format {
  // Own keys only: `in` also finds toString, constructor, __proto__ … (a 500 once Accept was read).
  if (format !== undefined && Object.hasOwn(FORMATS, format)) {
    if (accepts(accept, [MEDIA[format as Format]])) return format as Format
    throw new NotAcceptableError(`format=${format} answers with ${MEDIA[format as Format]}; the Accept header does not allow it.`)
  }
  let chosen: Format | undefined
  let best = 0
  // In the tie-break order: only a strictly higher q displaces an earlier format.
  for (const f of Object.keys(MEDIA) as Format[]) {
    const { q } = acceptQuality(accept, MEDIA[f])
    if (q > best) {
      chosen = f
      best = q
    }
  }
  if (chosen === undefined) throw new NotAcceptableError('This route answers with application/json, text/csv or image/svg+xml; the Accept header allows none of them.')
  return chosen
}

// What a memoised light curve is charged in the derived memo, per point: an estimate (heap objects cannot
// be measured), ~330 bytes a point measured with the strings as the lossless parser builds them.
const CURVE_BYTES_PER_POINT = 350

// An SVG served from the gateway's origin runs nothing and loads nothing.
const SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

const PointSchema = Type.Object({
  kind: Type.Union([Type.Literal('detection'), Type.Literal('non_detection'), Type.Literal('forced')]),
  mjd: Type.Number(),
  date: Type.Union([Type.String(), Type.Null()], { description: 'UTC calendar date of the MJD (YYYY-MM-DD); null for an MJD outside the years 0000–9999' }),
  filter: Type.String({ description: 'ATLAS filter (c, o, …)' }),
  mag: Type.Union([Type.Number(), Type.Null()], { description: 'magnitude; for a non-detection, its 5-sigma limiting magnitude' }),
  mag_err: Type.Union([Type.Number(), Type.Null()]),
  flux_ujy: Type.Union([Type.Number(), Type.Null()], { description: 'forced photometry: flux in µJy' }),
  flux_err_ujy: Type.Union([Type.Number(), Type.Null()]),
  exposure: Type.Union([Type.String(), Type.Null()], { description: 'exposure name' })
})

const LightCurveSchema = Type.Object({
  id: AtlasIdSchema,
  name: Type.Union([Type.String(), Type.Null()], { description: 'ATLAS designation' }),
  other_name: Type.Union([Type.String(), Type.Null()], { description: 'another designation (e.g. the TNS name)' }),
  points: Type.Array(PointSchema)
})

export const lightCurveRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const memo = app.cache.derived

  /**
   * The whole light curve of a stored record: parsed from its bytes once per version (a 5,000-row record
   * took ~350 ms to parse and read), then kept in the derived memo, inside CACHE_MAX_BYTES, so that
   * every format and mjd_min costs a filter and a rendering. The id is in the key because it is the
   * curve's id when the record carries none.
   */
  function curveOf (record: StoredRecord, id: string): LightCurve {
    const key = `lightcurve:${id}:${record.etag}`
    const hit = memo?.getValue(key) as LightCurve | undefined
    if (hit !== undefined) return hit
    const lc = lightCurveOf(parseLossless(record.bytes.toString('utf8')) as Record<string, unknown>, id)
    app.metrics.lightCurveParses.inc()
    memo?.setValue(key, lc, 256 + lc.points.length * CURVE_BYTES_PER_POINT)
    return lc
  }

  app.get('/objects/:id/lightcurve', {
    config: { scope: 'read', units: () => 1, produces: ['text/csv', 'image/svg+xml'], cached: 'validated' },
    schema: {
      summary: 'The light curve of one object (JSON, CSV or SVG)',
      description: 'Detections (magnitude ± error), non-detections (5-sigma limiting magnitude) and forced photometry ' +
        '(flux in µJy ± error) with filter and exposure name, from the cached full record: no upstream call when it is cached, ' +
        'one object unit like `GET /v1/objects/{id}`. `format=svg` draws it (magnitude axis inverted, c cyan, o orange, ' +
        'upper limits, a flux panel, MJD with calendar dates); `format=csv` has one row per point.',
      tags: ['objects'],
      params: Type.Object({ id: AtlasIdSchema }),
      querystring: Type.Object({
        mjd_min: Type.Optional(Type.Number({ minimum: 0, description: 'keep detections and non-detections with mjd > mjd_min and forced photometry with MJD >= mjd_min' })),
        format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv'), Type.Literal('svg')], { description: 'json, csv or svg; when absent, the one the Accept header gives the highest q, a tie going to JSON, then CSV, then SVG (JSON for most clients)' }))
      }),
      response: {
        200: {
          description: 'the light curve',
          content: {
            'application/json': { schema: LightCurveSchema },
            'text/csv': { schema: Type.String({ description: 'header kind,mjd,date,filter,mag,mag_err,flux_ujy,flux_err_ujy,exposure; one row per point' }) },
            'image/svg+xml': { schema: Type.String({ description: `an SVG document (800×400 viewBox) drawing at most ${SVG_MAX_POINTS} points, thinned evenly past that, and none with a value beyond ±${SVG_AXIS_LIMIT} (its data-drawn and data-off-scale attributes and a note say how many)` }) }
          }
        },
        304: Type.Null(),
        ...problems(404)
      }
    },
    // Before validation, so that a 406 comes before any charge (format's own errors are the schema's).
    preValidation: async (request) => { formatOf((request.query as { format?: string }).format, request.headers.accept) }
  }, async (request, reply) => {
    const { id } = request.params
    const format = formatOf(request.query.format, request.headers.accept)
    // Without format=, Accept chose the rendering: a cache must not answer another Accept with it.
    if (request.query.format === undefined) reply.header('vary', 'accept')
    const mjdMin = request.query.mjd_min
    const read = await app.atlas.objects(request, [id])
    const record = read.records[0]
    if (record === null || record === undefined) throw new NotFoundError(`No ATLAS object ${id}.`)
    // Renderings of the whole curve are kept (three per record version at most); one per mjd_min would
    // let a consumer fill the memo with variants, so those are rendered from the kept curve each time,
    // as an object read with mjd_min is.
    const key = `lightcurve:${format}:${record.etag}`
    let rendered = mjdMin === undefined ? memo?.get(key) : undefined
    if (rendered === undefined) {
      const lc = curveOf(record, id)
      const bytes = Buffer.from(FORMATS[format].render(mjdMin === undefined ? lc : lightCurveSince(lc, mjdMin)), 'utf8')
      rendered = { bytes, etag: computeEtag(bytes) }
      if (mjdMin === undefined) memo?.set(key, rendered)
    }
    if (format === 'svg') reply.header('content-security-policy', SVG_POLICY)
    return sendDerived(request, reply, read, rendered.bytes, rendered.etag, FORMATS[format].type)
  })
}
