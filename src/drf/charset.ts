// The charset a request's text is read in, as Django takes it (HttpRequest._set_content_type_params): the
// Content-Type's `charset` parameter when Python's codecs.lookup() knows the name, else DEFAULT_CHARSET,
// UTF-8. Django reads the query string and a form body in it (QueryDict) and DRF a JSON body.
// The gateway decodes UTF-8, Latin-1, ASCII and cp1252 as Python does. Any other charset Python knows is
// read where the bytes are ASCII (every ASCII-compatible codec reads them alike) and refused where they
// are not, as is text in a charset that does not read ASCII as itself (UTF-16, UTF-7, EBCDIC…), with a
// DRF-shaped 400: the gateway cannot know what the upstream would read.
import { ApiException } from './errors.js'
import { NOT_ASCII_COMPATIBLE, PYTHON_CODEC_ALIASES, PYTHON_CODEC_MODULES } from './python-codecs.js'

export interface Charset {
  /** Python's name of the codec (`utf-8`, `iso8859-1`, `ascii`, `cp1252`, …). */
  readonly codec: string
  /** bytes.decode(codec): undefined where Python raises UnicodeDecodeError. */
  decode: (bytes: Buffer) => string | undefined
  /** bytes.decode(codec, 'replace'): U+FFFD for what does not decode. */
  decodeReplacing: (bytes: Buffer) => string
  /** The text of Python's UnicodeDecodeError for bytes that decode() refused. */
  decodeError: (bytes: Buffer) => string
}

const REPLACEMENT = '\uFFFD'
// cp1252's 0x80-0x9F as Python reads them: five bytes map to nothing (a UnicodeDecodeError, or U+FFFD).
// Not TextDecoder('windows-1252'): WHATWG maps those five to C1 controls, and some Node versions decode the
// label as ISO-8859-1 altogether.
const CP1252_HIGH = '€\uFFFD‚ƒ„…†‡ˆ‰Š‹Œ\uFFFDŽ\uFFFD\uFFFD‘’“”•–—˜™š›œ\uFFFDžŸ'
const CP1252_FIRST_HIGH = 0x80
const ASCII_END = 0x80

function firstNonAscii (bytes: Buffer): number {
  return bytes.findIndex((b) => b >= ASCII_END)
}

function byteText (b: number, i: number): string {
  return `byte 0x${b.toString(16).padStart(2, '0')} in position ${i}`
}

/** Python's UnicodeDecodeError text for the first undecodable UTF-8 sequence. */
function utf8ErrorText (body: Buffer): string {
  for (let i = 0; i < body.length;) {
    const b = body.readUInt8(i)
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1
    if (need < 0) return `can't decode ${byteText(b, i)}: invalid start byte`
    for (let k = 1; k <= need; k++) {
      if (i + k >= body.length) {
        return i + 1 === body.length ? `can't decode ${byteText(b, i)}: unexpected end of data` : `can't decode bytes in position ${i}-${body.length - 1}: unexpected end of data`
      }
      const c = body.readUInt8(i + k)
      if (c < 0x80 || c > 0xbf) return `can't decode ${byteText(b, i)}: invalid continuation byte`
    }
    i += need + 1
  }
  /* c8 ignore next -- called only for bytes that TextDecoder refused */
  return "can't decode the body"
}

// Python keeps a byte order mark as U+FEFF (json.loads then refuses it); TextDecoder drops it by default.
const UTF8_STRICT = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const UTF8_REPLACING = new TextDecoder('utf-8', { ignoreBOM: true })

export const UTF8: Charset = {
  codec: 'utf-8',
  decode: (bytes) => {
    try {
      return UTF8_STRICT.decode(bytes)
    } catch {
      return undefined
    }
  },
  decodeReplacing: (bytes) => UTF8_REPLACING.decode(bytes),
  decodeError: (bytes) => `'utf-8' codec ${utf8ErrorText(bytes)}`
}

const LATIN1: Charset = {
  codec: 'iso8859-1',
  decode: (bytes) => bytes.toString('latin1'),
  decodeReplacing: (bytes) => bytes.toString('latin1'),
  /* c8 ignore next -- Latin-1 decodes every byte */
  decodeError: () => "'latin-1' codec can't decode the body"
}

function asciiReplacing (bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[\u0080-\u00ff]/g, REPLACEMENT)
}

const ASCII: Charset = {
  codec: 'ascii',
  decode: (bytes) => firstNonAscii(bytes) === -1 ? bytes.toString('latin1') : undefined,
  decodeReplacing: asciiReplacing,
  decodeError: (bytes) => {
    const i = firstNonAscii(bytes)
    return `'ascii' codec can't decode ${byteText(bytes.readUInt8(i), i)}: ordinal not in range(128)`
  }
}

// The bytes where cp1252 and ISO-8859-1 differ, as Latin-1 reads them (U+0080-U+009F).
const CP1252_DIFFERS = /[\u0080-\u009f]/g

// Latin-1 first (native, one pass), then the 32 bytes that differ: a character at a time in JavaScript
// took 0.5-1.1 s for a 1.1 MB form (50,000 ids), blocking the event loop; UTF-8 takes about 25 ms.
function cp1252Replacing (bytes: Buffer): string {
  return bytes.toString('latin1').replace(CP1252_DIFFERS, (c) => CP1252_HIGH.charAt(c.charCodeAt(0) - CP1252_FIRST_HIGH))
}

const CP1252: Charset = {
  codec: 'cp1252',
  decode: (bytes) => {
    const text = cp1252Replacing(bytes)
    return text.includes(REPLACEMENT) ? undefined : text
  },
  decodeReplacing: cp1252Replacing,
  decodeError: (bytes) => {
    const i = cp1252Replacing(bytes).indexOf(REPLACEMENT)
    return `'charmap' codec can't decode ${byteText(bytes.readUInt8(i), i)}: character maps to <undefined>`
  }
}

const DECODED: ReadonlyMap<string, Charset> = new Map([UTF8, LATIN1, ASCII, CP1252].map((c) => [c.codec, c]))

function unsupported (label: string): ApiException {
  return new ApiException(400, `Unsupported charset "${label}" in request: the gateway reads utf-8, latin-1, ascii and cp1252, and ASCII text in most others.`)
}

/** A charset Python knows and the gateway does not decode: ASCII bytes only, or none at all. */
function readOnlyAscii (codec: string, label: string): Charset {
  const keepsAscii = !NOT_ASCII_COMPATIBLE.has(codec)
  const read = (bytes: Buffer): string => {
    if (bytes.length > 0 && (!keepsAscii || firstNonAscii(bytes) !== -1)) throw unsupported(label)
    return bytes.toString('latin1')
  }
  /* c8 ignore next -- read() throws first */
  return { codec, decode: read, decodeReplacing: read, decodeError: () => `'${codec}' codec can't decode the body` }
}

function namesByCodec (table: Readonly<Record<string, string>>): Map<string, string> {
  const map = new Map<string, string>()
  for (const [codec, names] of Object.entries(table)) for (const name of names.split(' ')) map.set(name, codec)
  return map
}

const ALIASES = namesByCodec(PYTHON_CODEC_ALIASES)
const MODULES = namesByCodec(PYTHON_CODEC_MODULES)

/**
 * The codec codecs.lookup() finds for a name, or undefined (a LookupError). The name is normalised as
 * CPython does: ASCII letters in lower case, each run of other characters but digits and dots (non-ASCII
 * ones too) one underscore, none at either end; then it is an alias (also with its dots made
 * underscores) or a module of the encodings package.
 */
export function pythonCodec (label: string): string | undefined {
  const name = label.replace(/[A-Z]/g, (c) => c.toLowerCase()).split(/[^a-z0-9.]+/).filter((part) => part !== '').join('_')
  return ALIASES.get(name) ?? ALIASES.get(name.replaceAll('.', '_')) ?? MODULES.get(name)
}

/**
 * The parameters of a Content-Type as Django's parse_header_parameters (cgi.parse_header before 4.2)
 * reads them: split at `;` outside double quotes, names in lower case, a quoted value unquoted, the last
 * of a repeated name kept. (RFC 2231 `charset*=` is read by Django 4.2 and later only, and not here.)
 */
export function contentTypeParam (contentType: string, wanted: string): string | undefined {
  let value: string | undefined
  let rest = `;${contentType}`
  // The first part is the media type, never a parameter.
  for (let isMediaType = true; rest.startsWith(';'); isMediaType = false) {
    rest = rest.slice(1)
    let end = rest.indexOf(';')
    const quotesBefore = (i: number) => (rest.slice(0, i).match(/"/g)?.length ?? 0) - (rest.slice(0, i).match(/\\"/g)?.length ?? 0)
    while (end > 0 && quotesBefore(end) % 2 === 1) end = rest.indexOf(';', end + 1)
    if (end < 0) end = rest.length
    const part = rest.slice(0, end).trim()
    rest = rest.slice(end)
    if (isMediaType) continue
    const eq = part.indexOf('=')
    if (eq < 0 || part.slice(0, eq).trim().toLowerCase() !== wanted) continue
    let v = part.slice(eq + 1).trim()
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replaceAll('\\\\', '\\').replaceAll('\\"', '"')
    value = v
  }
  return value
}

/** The charset Django reads a request's text in, from its Content-Type (UTF-8 when none is named or known). */
export function requestCharset (contentType: string | undefined): Charset {
  if (contentType === undefined) return UTF8
  const label = contentTypeParam(contentType, 'charset')
  if (label === undefined) return UTF8
  const codec = pythonCodec(label)
  if (codec === undefined) return UTF8
  return DECODED.get(codec) ?? readOnlyAscii(codec, label)
}
