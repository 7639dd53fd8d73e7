// What a consumer may do: scopes name operations, `lists` names the custom lists it may write. `admin`
// reads the audit, usage reports and the consumers listing (routes/v1/admin.ts); it grants nothing else.
export const SCOPES = ['read', 'write:vra', 'write:custom-lists', 'write:detection-list', 'admin'] as const
export type Scope = typeof SCOPES[number]

/** `*` in a consumer's lists grants every custom list. */
export const ALL_LISTS = '*'

export function hasScope (consumer: { scopes: readonly Scope[] }, scope: Scope): boolean {
  return consumer.scopes.includes(scope)
}

export function mayWriteList (consumer: { lists: readonly string[] }, list: string): boolean {
  return consumer.lists.includes(ALL_LISTS) || consumer.lists.includes(list)
}
