// The list catalogue: facade names ↔ upstream ids. Detection lists are fixed by the upstream server
// (upstream/lists.ts); custom lists (object groups) come from configuration, with the official
// client's names as defaults.
import { NotFoundError } from './errors.js'
import { parseLossless } from './lib/json.js'
import { redactUrl } from './logger.js'
import { DEFAULT_CUSTOM_LISTS, DETECTION_LISTS } from './upstream/lists.js'

export { DEFAULT_CUSTOM_LISTS, DETECTION_LISTS, DETECTION_LIST_TARGETS } from './upstream/lists.js'

export type ListKind = 'detection' | 'custom'
export interface ListInfo { name: string, id: number, kind: ListKind }

export type ListCatalog = ReturnType<typeof createListCatalog>

// What the compatibility path calls an object group that has no name here (routes/compat): a list named
// so would stand for that group too, and a key granted the one could write the other.
const UNNAMED_GROUP = /^group-\d+$/

export function parseCustomLists (text: string): Record<string, number> {
  if (text === '') return { ...DEFAULT_CUSTOM_LISTS }
  let parsed: unknown
  try {
    // Lossless: a name given twice with two ids is an error (JSON.parse kept the last without a word),
    // and `__proto__` is a name like any other.
    parsed = parseLossless(text)
  } catch (err) {
    throw new Error(`CUSTOM_LISTS is not valid JSON: ${(err as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('CUSTOM_LISTS must be a JSON object of name → id')
  // No prototype: a list named __proto__ is a key, not the object's prototype.
  const out = Object.create(null) as Record<string, number>
  const names = new Map<number, string>()
  for (const [name, id] of Object.entries(parsed)) {
    if (!/^[a-z0-9_-]{1,64}$/.test(name)) throw new Error(`CUSTOM_LISTS: bad list name "${name}"`)
    if (UNNAMED_GROUP.test(name)) throw new Error(`CUSTOM_LISTS: "${name}" is reserved (group-<id> names an object group without a name)`)
    if (!Number.isSafeInteger(id) || (id as number) < 0) throw new Error(`CUSTOM_LISTS: "${name}" must map to a non-negative integer id`)
    // One name per list: a custom list named as a detection list would hide it, and two names of one
    // object group would show an object's membership under only one of them.
    if (Object.hasOwn(DETECTION_LISTS, name)) throw new Error(`CUSTOM_LISTS: "${name}" is the name of a detection list`)
    const other = names.get(id as number)
    if (other !== undefined) throw new Error(`CUSTOM_LISTS: "${name}" and "${other}" name the same object group ${String(id)}`)
    names.set(id as number, name)
    out[name] = id as number
  }
  return out
}

/**
 * A list name as an answer may repeat it: a name is a path segment, so a `;token=<key>` written into it
 * (a separator for other servers and proxies) is redacted, as the access log and the router's 404 do.
 */
function shownName (name: string): string {
  return redactUrl(name)
}

export function createListCatalog (customListsSetting: string) {
  const custom = parseCustomLists(customListsSetting)
  const all: ListInfo[] = [
    ...Object.entries(DETECTION_LISTS).map(([name, id]) => ({ name, id, kind: 'detection' as const })),
    ...Object.entries(custom).map(([name, id]) => ({ name, id, kind: 'custom' as const }))
  ]
  const byName = new Map(all.map((l) => [l.name, l]))
  const customById = new Map(Object.entries(custom).map(([name, id]) => [id, name]))
  return {
    all,
    /** A detection or custom list by name; 404 GW_NOT_FOUND for an unknown name. */
    resolve (name: string): ListInfo {
      const list = byName.get(name)
      if (list === undefined) throw new NotFoundError(`Unknown list "${shownName(name)}"; GET /v1/lists names the known lists.`)
      return list
    },
    resolveCustom (name: string): ListInfo {
      const list = byName.get(name)
      if (list?.kind !== 'custom') throw new NotFoundError(`Unknown custom list "${shownName(name)}"; GET /v1/lists names the known lists.`)
      return list
    },
    customName (groupId: number): string | undefined {
      return customById.get(groupId)
    }
  }
}
