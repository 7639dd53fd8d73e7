// npm run keys -- create <id> [--name …] [--scopes read,write:vra] [--lists a,b] [--rate 600/minute]
//                          [--daily-objects N] [--max-batch N] [--upstream-share N] [--replace] [--file path]
//                          [--expires DATE]
//                 list [--file path]
//                 expired [--file path]
//                 expire <id> <DATE|never> [--file path]
//                 extend <id> --days N [--file path]
//                 revoke <id|hash-prefix> [--file path]
// `list` shows each key's last use (kept by the gateway in Redis or USAGE_FILE, cli/stores.ts).
// Edits the consumers file in place, keeping its comments; the new key is printed once (alone on
// stdout, so `KEY=$(npm run -s keys -- create bot)` works) and only its SHA-256 is stored. The gateway
// picks changes up on SIGHUP. Like server.ts this is an entry point, so it may read process.env.
import { readFile, rename, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { Document, isMap, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from 'yaml'
import { parseConsumers } from '../consumers/file.js'
import { generateKey, hashKey } from '../consumers/keys.js'
import { DAY_MS } from '../consumers/expiry.js'
import { parseExpires } from '../consumers/schema.js'
import { runAsMain } from './main.js'
import { withStores } from './stores.js'

export const DEFAULT_CONSUMERS_FILE = './consumers.yaml'
const MIN_HASH_PREFIX = 8
const HEADER = ' atlas-gateway consumers (see README "Consumers"). Keys are stored only as SHA-256; create them with `npm run keys -- create <id>`.'
const USAGE = 'usage: keys create <id> [--name N] [--scopes a,b] [--lists a,b] [--rate 600/minute] [--daily-objects N]\n' +
  '                   [--max-batch N] [--upstream-share N] [--expires DATE] [--replace] [--file path]\n' +
  '       keys list [--file path]\n' +
  '       keys expired [--file path]\n' +
  '       keys expire <id> <DATE|never> [--file path]     DATE: 2026-12-31 (through that UTC day) or 2026-12-31T12:00:00Z\n' +
  '       keys extend <id> --days N [--file path]         from the current expiry, or from today once expired\n' +
  '       keys revoke <id|hash-prefix> [--file path]\n'

export interface KeysIo {
  env: Record<string, string | undefined>
  /** Tests only: the clock that decides what has expired. */
  now?: () => number
  out: (text: string) => void
  err: (text: string) => void
}

const OPTIONS = {
  file: { type: 'string' },
  name: { type: 'string' },
  scopes: { type: 'string' },
  lists: { type: 'string' },
  rate: { type: 'string' },
  'daily-objects': { type: 'string' },
  'max-batch': { type: 'string' },
  'upstream-share': { type: 'string' },
  expires: { type: 'string' },
  days: { type: 'string' },
  replace: { type: 'boolean' }
} as const

type Flags = ReturnType<typeof parseArgs<{ options: typeof OPTIONS, allowPositionals: true }>>['values']

async function loadDocument (path: string): Promise<Document> {
  let text = ''
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const doc = text.trim() === '' ? new Document({ consumers: [] }) : parseDocument(text)
  if (text.trim() === '') doc.commentBefore = HEADER
  if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors[0]?.message ?? 'invalid YAML'}`)
  if (!isSeq(doc.get('consumers'))) doc.set('consumers', doc.createNode([]))
  return doc
}

function entries (doc: Document): YAMLMap[] {
  return (doc.get('consumers') as YAMLSeq).items.filter((item): item is YAMLMap => isMap(item))
}

function hashesOf (entry: YAMLMap): string[] {
  const value: unknown = entry.toJSON().key_sha256
  if (typeof value === 'string') return [value]
  return Array.isArray(value) ? value.filter((h): h is string => typeof h === 'string') : []
}

/** Validates the edited file exactly as the gateway will, then replaces it atomically. */
async function save (doc: Document, path: string): Promise<void> {
  const text = path.endsWith('.json') ? JSON.stringify(doc.toJS(), null, 2) + '\n' : String(doc)
  parseConsumers(text, path)
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, text, { mode: 0o600 })
  await rename(tmp, path)
}

const splitList = (text: string): string[] => text.split(',').map((s) => s.trim()).filter((s) => s !== '')

function toInt (flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw new Error(`--${flag} must be a whole number`)
  return Number(text)
}

async function create (doc: Document, path: string, id: string, flags: Flags, io: KeysIo): Promise<void> {
  const key = generateKey()
  const hash = hashKey(key)
  let entry = entries(doc).find((e) => e.get('id') === id)
  const isNew = entry === undefined
  if (entry === undefined) {
    entry = doc.createNode({ id, name: flags.name ?? id, key_sha256: [], scopes: ['read'] })
    ;(doc.get('consumers') as YAMLSeq).add(entry)
  }
  const hashes = flags.replace === true ? [hash] : [...hashesOf(entry), hash]
  entry.set('key_sha256', doc.createNode(hashes))
  if (flags.name !== undefined) entry.set('name', flags.name)
  if (flags.scopes !== undefined) entry.set('scopes', doc.createNode(splitList(flags.scopes)))
  if (flags.lists !== undefined) entry.set('lists', doc.createNode(splitList(flags.lists)))
  if (flags.rate !== undefined) entry.set('rate', flags.rate)
  if (flags['daily-objects'] !== undefined) entry.set('daily_objects', toInt('daily-objects', flags['daily-objects']))
  if (flags['max-batch'] !== undefined) entry.set('max_batch', toInt('max-batch', flags['max-batch']))
  if (flags['upstream-share'] !== undefined) entry.set('upstream_share', toInt('upstream-share', flags['upstream-share']))
  if (flags.expires !== undefined) entry.set('expires', flags.expires)
  // A consumer revoked by id is disabled; giving it a new key is the deliberate way back.
  const wasDisabled = entry.get('disabled') === true
  entry.delete('disabled')
  await save(doc, path)
  io.err(`${isNew ? 'created' : wasDisabled ? 're-enabled' : 'updated'} consumer "${id}" in ${path} (${hashes.length} key${hashes.length === 1 ? '' : 's'}; ` +
    `new key sha256 ${hash.slice(0, 12)}…). The key below is shown once; send SIGHUP to the gateway to load it.\n`)
  io.out(`${key}\n`)
}

function findEntry (doc: Document, id: string): YAMLMap {
  const entry = entries(doc).find((e) => e.get('id') === id)
  if (entry === undefined) throw new Error(`no consumer "${id}"`)
  return entry
}

/** The instant an entry's access ends, or undefined; an invalid value is reported by the file check. */
function expiresAtOf (entry: YAMLMap): number | undefined {
  const value = entry.get('expires')
  if (typeof value !== 'string') return undefined
  try {
    return parseExpires(value)
  } catch {
    return undefined
  }
}

const when = (ms: number | undefined): string => ms === undefined ? 'never' : new Date(ms).toISOString()

function list (doc: Document, io: KeysIo, lastUsed: Readonly<Record<string, number>>, nowMs: number): void {
  for (const entry of entries(doc)) {
    const c = entry.toJSON() as Record<string, unknown>
    const keys = hashesOf(entry).map((h) => `${h.slice(0, 12)}@${when(lastUsed[`key:${h}`])}`).join(',') || '-'
    const fmt = (v: unknown, def: string): string => Array.isArray(v) ? v.join(',') : v === undefined ? def : String(v)
    const expiresAt = expiresAtOf(entry)
    const expiry = c.expires === undefined ? '' : `\texpires=${String(c.expires)}${expiresAt !== undefined && expiresAt <= nowMs ? ' EXPIRED' : ''}`
    io.out(`${String(c.id)}\tname=${fmt(c.name, String(c.id))}\tscopes=${fmt(c.scopes, 'read')}\tlists=${fmt(c.lists, '-')}` +
      `\trate=${fmt(c.rate, 'default')}${expiry}\tlast_used=${when(lastUsed[`consumer:${String(c.id)}`])}\tkeys=${keys}${c.disabled === true ? '\tDISABLED' : ''}\n`)
  }
}

function listExpired (doc: Document, io: KeysIo, nowMs: number): void {
  for (const entry of entries(doc)) {
    const expiresAt = expiresAtOf(entry)
    if (expiresAt === undefined || expiresAt > nowMs) continue
    io.out(`${String(entry.get('id'))}\texpires=${String(entry.get('expires'))}\texpired=${when(expiresAt)}\n`)
  }
}

async function setExpiry (doc: Document, path: string, id: string, value: string | undefined, io: KeysIo): Promise<void> {
  if (value === undefined) throw new Error('give a date (2026-12-31), a UTC datetime (2026-12-31T12:00:00Z) or never')
  const entry = findEntry(doc, id)
  if (value === 'never') entry.delete('expires')
  else entry.set('expires', value)
  await save(doc, path)
  io.err(`consumer "${id}" ${value === 'never' ? 'no longer expires' : `expires ${value}`}; send SIGHUP to the gateway to apply it\n`)
}

/** Adds days to the expiry, or to today once it has passed; a date stays a date, a datetime a datetime. */
async function extend (doc: Document, path: string, id: string, days: string | undefined, nowMs: number, io: KeysIo): Promise<void> {
  if (days === undefined) throw new Error('give --days N')
  const count = toInt('days', days)
  const entry = findEntry(doc, id)
  const current = entry.get('expires')
  const expiresAt = expiresAtOf(entry)
  if (typeof current !== 'string' || expiresAt === undefined) throw new Error(`consumer "${id}" has no expiry to extend; set one with keys expire`)
  const isDate = current.length === 10
  // A date grants its whole day: its end is the start of the next one.
  const base = Math.max(expiresAt, isDate ? Date.parse(new Date(nowMs).toISOString().slice(0, 10) + 'T00:00:00Z') + DAY_MS : nowMs)
  const next = new Date(base + count * DAY_MS - (isDate ? DAY_MS : 0)).toISOString()
  const value = isDate ? next.slice(0, 10) : next.replace('.000Z', 'Z')
  entry.set('expires', value)
  await save(doc, path)
  io.err(`consumer "${id}" now expires ${value} (was ${current}); send SIGHUP to the gateway to apply it\n`)
}

async function revoke (doc: Document, path: string, target: string, io: KeysIo): Promise<void> {
  const byId = entries(doc).find((e) => e.get('id') === target)
  if (byId !== undefined) {
    // Revoking a consumer revokes every key it has and disables it, so a later `create` is deliberate.
    byId.set('key_sha256', doc.createNode([]))
    byId.set('disabled', true)
    await save(doc, path)
    io.err(`revoked every key of consumer "${target}" and disabled it\n`)
    return
  }
  if (!/^[0-9a-f]+$/.test(target) || target.length < MIN_HASH_PREFIX) {
    throw new Error(`no consumer "${target}"; to revoke one key give at least ${MIN_HASH_PREFIX} hex characters of its sha256 (see keys list)`)
  }
  const matches = entries(doc).flatMap((e) => hashesOf(e).filter((h) => h.startsWith(target)).map((h) => ({ e, h })))
  const match = matches[0]
  if (match === undefined) throw new Error(`no key hash starts with ${target}`)
  if (matches.length > 1) throw new Error(`${matches.length} key hashes start with ${target}; give a longer prefix`)
  match.e.set('key_sha256', doc.createNode(hashesOf(match.e).filter((h) => h !== match.h)))
  await save(doc, path)
  io.err(`revoked key ${match.h.slice(0, 12)}… of consumer "${String(match.e.get('id'))}"\n`)
}

const nowOf = (io: KeysIo): number => (io.now ?? Date.now)()

/** Last uses the gateway recorded; none (with a note) when its store cannot be read. */
async function lastUses (io: KeysIo): Promise<Record<string, number>> {
  try {
    return await withStores(io.env, async ({ usage }) => await usage.lastUsed())
  } catch (err) {
    io.err(`keys: last uses unknown (${(err as Error).message})\n`)
    return {}
  }
}

/** Runs the CLI; resolves to the process exit code. */
export async function runKeys (argv: readonly string[], io: KeysIo): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true })
    const [command, target] = positionals
    const env = io.env.CONSUMERS_FILE
    const path = values.file ?? (env !== undefined && env !== '' ? env : DEFAULT_CONSUMERS_FILE)
    const doc = await loadDocument(path)
    if (command === 'create' && target !== undefined) await create(doc, path, target, values, io)
    else if (command === 'list') list(doc, io, await lastUses(io), nowOf(io))
    else if (command === 'expired') listExpired(doc, io, nowOf(io))
    else if (command === 'expire' && target !== undefined) await setExpiry(doc, path, target, positionals[2], io)
    else if (command === 'extend' && target !== undefined) await extend(doc, path, target, values.days, nowOf(io), io)
    else if (command === 'revoke' && target !== undefined) await revoke(doc, path, target, io)
    else {
      io.err(USAGE)
      return 2
    }
    return 0
  } catch (err) {
    io.err(`keys: ${(err as Error).message}\n`)
    return 1
  }
}

await runAsMain(import.meta.url, runKeys)
