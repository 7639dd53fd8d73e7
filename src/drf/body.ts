// request.data as DRF builds it: the parser is chosen by Content-Type, the first of the view's parsers
// that matches (JSON, form, multipart for the API views; form, multipart, JSON for auth-token/); no
// body means empty data; an unknown or missing type is a 415 that echoes the header.
import { parse as parseLosslessJson } from 'lossless-json'
import { requestCharset, UTF8, type Charset } from './charset.js'
import { ApiException, DjangoHtmlError } from './errors.js'
import { UploadedFile, type DataSource } from './fields.js'
import { isNestedDeeper, PythonJsonError, pythonJsonLoads } from './python-json.js'
import { PyFloat } from './pystr.js'

// Django's DATA_UPLOAD_MAX_MEMORY_SIZE and DATA_UPLOAD_MAX_NUMBER_FIELDS.
export const MAX_FORM_BYTES = 2.5 * 1024 * 1024
const MAX_FORM_FIELDS = 1000

export type Parser = 'application/json' | 'application/x-www-form-urlencoded' | 'multipart/form-data'
/** DRF's DEFAULT_PARSER_CLASSES, the API views' parsers. */
export const PARSES: readonly Parser[] = ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data']
/** ObtainAuthToken.parser_classes: form, multipart, then JSON. */
export const AUTH_TOKEN_PARSES: readonly Parser[] = ['application/x-www-form-urlencoded', 'multipart/form-data', 'application/json']

function mediaParts (contentType: string): { main: string, sub: string } {
  const [main = '', sub = ''] = contentType.replace(/;.*$/s, '').trim().toLowerCase().split('/', 2)
  return { main, sub }
}

/** DefaultContentNegotiation.select_parser: parser type on the left, so `*` in the request matches. */
function selectParser (contentType: string, parsers: readonly Parser[]): Parser | undefined {
  const { main, sub } = mediaParts(contentType)
  return parsers.find((parser) => {
    const [pMain, pSub] = parser.split('/')
    return (sub === '*' || sub === pSub) && (main === '*' || main === pMain)
  })
}

const PERCENT = 0x25

/** The value of a hexadecimal digit's character code, or -1 (NaN, past the end, included). */
function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  const lower = c | 0x20
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1
}

/**
 * The bytes of an ASCII run with its %XX escapes decoded (urllib.parse.unquote_to_bytes). One pass over
 * character codes into one Buffer: a 50,000-id form is a single run of about a megabyte.
 */
function percentBytes (run: string): Buffer {
  const bytes = Buffer.allocUnsafe(run.length)
  let n = 0
  for (let i = 0; i < run.length; i++) {
    const c = run.charCodeAt(i)
    if (c === PERCENT) {
      const high = hexValue(run.charCodeAt(i + 1))
      const low = hexValue(run.charCodeAt(i + 2))
      if (high >= 0 && low >= 0) {
        bytes[n++] = high * 16 + low
        i += 2
        continue
      }
    }
    bytes[n++] = c
  }
  return bytes.subarray(0, n)
}

// A run of ASCII characters (written without control characters, which the linter refuses in a regex).
const ASCII_RUN = /[^\u0080-\uffff]+/g

/**
 * urllib.parse.unquote_plus(text, encoding=charset, errors='replace'): `+` is a space; each run of ASCII
 * characters is percent-decoded to bytes and read in the request's charset (U+FFFD for what does not
 * decode); other characters are kept as they are.
 */
function unquotePlus (text: string, charset: Charset): string {
  const spaced = text.replace(/\+/g, ' ')
  if (!spaced.includes('%')) return spaced
  return spaced.replace(ASCII_RUN, (run) => charset.decodeReplacing(percentBytes(run)))
}

/**
 * Django's QueryDict over a query string or a form body (parse_qsl with keep_blank_values), in the
 * request's charset: bytes are decoded in it, or as ISO-8859-1 when they do not decode ("some user agents
 * are misbehaving"), and so are the %XX escapes of each name and value. A string is text already.
 */
export function parseQueryDict (query: string | Buffer, charset: Charset = UTF8): Extract<DataSource, { kind: 'querydict' }> {
  const text = typeof query === 'string' ? query : charset.decode(query) ?? query.toString('latin1')
  const map = new Map<string, Array<string | UploadedFile>>()
  const pairs = text.split('&')
  // parse_qsl counts before it parses: one more than the `&`s, empty pairs included.
  if (pairs.length > MAX_FORM_FIELDS) throw new DjangoHtmlError(400, 'TooManyFieldsSent')
  for (const pair of pairs) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    const key = unquotePlus(eq === -1 ? pair : pair.slice(0, eq), charset)
    const value = eq === -1 ? '' : unquotePlus(pair.slice(eq + 1), charset)
    const list = map.get(key)
    if (list === undefined) map.set(key, [value])
    else list.push(value)
  }
  return { kind: 'querydict', map }
}

/** The body in the request's charset, as DRF's JSONParser reads it (codecs.getreader(encoding)). */
function decodeJson (body: Buffer, charset: Charset): string {
  const text = charset.decode(body)
  if (text === undefined) throw new ApiException(400, `JSON parse error - ${charset.decodeError(body)}`)
  return text
}

const INTEGER = /^-?\d+$/
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** A number as json.loads reads it: integers exact (bigint beyond 2^53), the rest Python floats. */
function pythonNumber (text: string): number | bigint | PyFloat {
  if (!INTEGER.test(text)) return new PyFloat(Number(text))
  const big = BigInt(text)
  return big > MAX_SAFE || big < -MAX_SAFE ? big : Number(text)
}

function parseJson (body: Buffer, charset: Charset): DataSource {
  const text = decodeJson(body, charset)
  // A body nested deeper than Python's decoder goes never meets the recursive lossless parser (a stack
  // overflow): the Python-compatible decoder words it, or the syntax error it meets first.
  if (!isNestedDeeper(text)) {
    try {
      return { kind: 'json', value: parseLosslessJson(text, null, pythonNumber) }
    } catch {
      // lossless-json refused it: let the Python-compatible decoder decide, and word the error.
    }
  }
  try {
    return { kind: 'json', value: pythonJsonLoads(text) }
  } catch (err) {
    if (err instanceof PythonJsonError) throw new ApiException(400, `JSON parse error - ${err.message}`)
    /* c8 ignore start -- the decoder throws nothing else */
    throw err
  }
  /* c8 ignore stop */
}

async function parseMultipart (contentType: string, body: Buffer): Promise<DataSource> {
  if (!/boundary=/i.test(contentType)) {
    throw new ApiException(400, 'Multipart form parse error - Invalid boundary in multipart: None')
  }
  let form: FormData
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData()
  } catch {
    throw new ApiException(400, 'Multipart form parse error - Invalid multipart body.')
  }
  const map = new Map<string, Array<string | UploadedFile>>()
  let textBytes = 0
  for (const [key, value] of form.entries()) {
    const item = typeof value === 'string' ? value : new UploadedFile(value.name)
    if (typeof value === 'string') textBytes += Buffer.byteLength(value)
    const list = map.get(key)
    if (list === undefined) map.set(key, [item])
    else list.push(item)
  }
  if (textBytes > MAX_FORM_BYTES) throw new DjangoHtmlError(400, 'RequestDataTooBig')
  return { kind: 'querydict', map }
}

/** request.data for a POST. Throws ApiException (415, 400 parse errors) or DjangoHtmlError (400). */
export async function parseRequestData (contentType: string | undefined, body: Buffer, parsers: readonly Parser[] = PARSES): Promise<DataSource> {
  const type = contentType ?? ''
  // DRF skips parsing when there is no body (CONTENT_LENGTH 0): an empty QueryDict for a form type
  // (is_form_media_type, wildcards not included), else an empty dict, whatever the parsers.
  if (body.length === 0) {
    const { main, sub } = mediaParts(type)
    const isForm = (main === 'application' && sub === 'x-www-form-urlencoded') || (main === 'multipart' && sub === 'form-data')
    return isForm ? { kind: 'querydict', map: new Map() } : { kind: 'json', value: {} }
  }
  const parser = selectParser(type, parsers)
  if (parser === undefined) throw new ApiException(415, `Unsupported media type "${type}" in request.`)
  if (parser === 'application/json') return parseJson(body, requestCharset(contentType))
  if (parser === 'multipart/form-data') return await parseMultipart(type, body)
  if (body.length > MAX_FORM_BYTES) throw new DjangoHtmlError(400, 'RequestDataTooBig')
  return parseQueryDict(body, requestCharset(contentType))
}
