// Reads and validates the consumers file. YAML (JSON is accepted too: it is a subset of YAML 1.2).
// A bad file is rejected whole, with a message naming the entry (index and id) and the field, so an
// operator can fix it without guessing; the caller decides whether that fails boot or a reload.
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { Value } from '@sinclair/typebox/value'
import { ConsumersFileSchema, toRecord, type ConsumerEntry, type ConsumerRecord } from './schema.js'
import { SCOPES } from './scopes.js'

const FIELD_HINTS: Readonly<Record<string, string>> = {
  key_sha256: 'must be a SHA-256 hex string (64 lowercase hex) or a list of them',
  scopes: `must be a list of: ${SCOPES.join(', ')}`,
  rate: 'must look like 600/minute (per second, minute, hour or day)',
  expires: 'must be a date (2026-12-31) or a UTC datetime (2026-12-31T12:00:00Z)'
}

function describeEntry (data: unknown, index: number): string {
  const entries = (data as { consumers?: unknown }).consumers
  const entry = Array.isArray(entries) ? entries[index] as { id?: unknown } | undefined : undefined
  return typeof entry?.id === 'string' ? `consumers[${index}] (id "${entry.id}")` : `consumers[${index}]`
}

/** `/consumers/2/scopes/0` → `consumers[2] (id "x"): field scopes[0]`. */
function describePath (data: unknown, path: string): { where: string, field: string | undefined } {
  const parts = path.split('/').slice(1)
  if (parts[0] !== 'consumers' || parts[1] === undefined) return { where: path === '' ? 'the file' : path, field: undefined }
  const where = describeEntry(data, Number(parts[1]))
  const [field, ...rest] = parts.slice(2)
  if (field === undefined) return { where, field: undefined }
  return { where, field: field + rest.map((p) => `[${p}]`).join('') }
}

function validate (data: unknown, source: string): ConsumerEntry[] {
  if (typeof data !== 'object' || data === null || !Array.isArray((data as { consumers?: unknown }).consumers)) {
    throw new Error(`${source}: expected a top-level "consumers:" list`)
  }
  const first = Value.Errors(ConsumersFileSchema, data).First()
  if (first !== undefined) {
    const { where, field } = describePath(data, first.path)
    const base = field?.split('[')[0] ?? ''
    const message = FIELD_HINTS[base] ?? first.message
    throw new Error(`${source}: ${where}${field === undefined ? '' : `: field "${field}"`}: ${message}`)
  }
  return (data as { consumers: ConsumerEntry[] }).consumers
}

function checkUnique (records: readonly ConsumerRecord[], source: string): void {
  const ids = new Map<string, number>()
  const hashes = new Map<string, number>()
  records.forEach(({ consumer, hashes: own }, index) => {
    const seen = ids.get(consumer.id)
    if (seen !== undefined) throw new Error(`${source}: consumers[${index}] (id "${consumer.id}"): field "id": duplicates consumers[${seen}]`)
    ids.set(consumer.id, index)
    own.forEach((hash, at) => {
      // A slip in the file (a key pasted twice): refused like any other, as the file is checked whole.
      const first = own.indexOf(hash)
      if (first !== at) throw new Error(`${source}: consumers[${index}] (id "${consumer.id}"): field "key_sha256[${at}]": the same hash as key_sha256[${first}], listed twice in this consumer`)
    })
    for (const hash of own) {
      const owner = hashes.get(hash)
      // One key must identify one consumer; a shared hash would make authentication ambiguous.
      if (owner !== undefined) throw new Error(`${source}: consumers[${index}] (id "${consumer.id}"): field "key_sha256": a hash also used by consumers[${owner}]`)
      hashes.set(hash, index)
    }
  })
}

/** Parses and validates the text of a consumers file; throws a message naming entry and field. */
export function parseConsumers (text: string, source: string): ConsumerRecord[] {
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (err) {
    throw new Error(`${source}: not valid YAML or JSON: ${(err as Error).message}`)
  }
  const records = validate(data, source).map((entry, index) => {
    try {
      return toRecord(entry)
    } catch (err) {
      // The schema checked the shapes; what is left is a value such as an impossible date.
      throw new Error(`${source}: ${describeEntry(data, index)}: ${(err as Error).message}`)
    }
  })
  checkUnique(records, source)
  return records
}

export async function readConsumersFile (path: string): Promise<ConsumerRecord[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new Error(`${path}: cannot read the consumers file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  return parseConsumers(text, path)
}
