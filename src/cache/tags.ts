// The one table of what a write changes. Every cached read carries the tags of what it shows (taken
// from `views`), and every write, from either dialect, invalidates the tags `WRITES` gives it, on every
// replica (cache.invalidate publishes them). A read and a write that meet here cannot drift apart: the
// matrix test (test/cache/invalidation-matrix.test.ts) writes through each endpoint in both dialects and
// reads every view that shows the change.

/** What a cached read shows. */
export const views = {
  /** One object's full record. */
  object: (id: string): string => `object:${id}`,
  /** A main detection list's rows (objectlist/ without getcustomlist). */
  detectionLists: (): string => 'detection-lists',
  /** A custom list's rows as objectlist/ shows them (detection_list_id and other object fields inside). */
  customListRows: (): string => 'custom-list-rows',
  /** The members of one custom list (object group), by its upstream id. */
  groupMembers: (groupId: number | bigint): string => `group:${groupId}`,
  /** The custom lists one object is in. */
  objectGroups: (objectId: string): string => `object-groups:${objectId}`,
  /** The whole membership table (objectgroupslist/ with both filters or neither). */
  allGroups: (): string => 'groups:all',
  /** A VRA table, whole. */
  vraScores: (): string => 'vra:scores',
  vraTodo: (): string => 'vra:todo',
  vraRanks: (): string => 'vra:ranks'
}

export type WriteKind = 'vrascores' | 'vratodo' | 'vrarank' | 'objectgroups' | 'objectgroupsdelete' | 'objectdetectionlist'

export interface WriteTarget { objectId: string, groupId?: number | bigint }

const membership = (t: WriteTarget): string[] => [
  ...(t.groupId === undefined ? [] : [views.groupMembers(t.groupId)]),
  views.objectGroups(t.objectId),
  views.allGroups(),
  // objectlist/ with getcustomlist reads the same membership through a view.
  views.customListRows()
]

/** For each write: the views that show its effect. */
export const WRITES: Readonly<Record<WriteKind, (t: WriteTarget) => string[]>> = {
  vrascores: () => [views.vraScores()],
  vratodo: () => [views.vraTodo()],
  vrarank: () => [views.vraRanks()],
  objectgroups: membership,
  objectgroupsdelete: membership,
  // The object leaves a detection list we do not know and joins another: every list view may change,
  // and so may the object's own record.
  objectdetectionlist: (t) => [views.object(t.objectId), views.detectionLists(), views.customListRows()]
}

export function writeTags (kind: WriteKind, target: WriteTarget): string[] {
  return WRITES[kind](target)
}
