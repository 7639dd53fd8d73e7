// Recent invalidations, so a load that started before a write cannot store what the write replaced: a
// loader takes a mark before calling the upstream, and its result is stored only if no invalidation of
// its tags happened since. Bounded: when the log no longer reaches back to a mark, the answer is "yes"
// (do not store), which costs at most one extra upstream call.

export const DEFAULT_LOG_SIZE = 256

export interface InvalidationLog {
  record: (tags: readonly string[]) => void
  mark: () => number
  isInvalidatedSince: (mark: number, tags: readonly string[]) => boolean
}

export function createInvalidationLog (size = DEFAULT_LOG_SIZE): InvalidationLog {
  const recent: Array<{ seq: number, tags: readonly string[] }> = []
  let seq = 0
  return {
    record (tags) {
      recent.push({ seq: ++seq, tags: [...tags] })
      if (recent.length > size) recent.shift()
    },
    mark () {
      return seq
    },
    isInvalidatedSince (mark, tags) {
      if (mark === seq) return false
      const oldest = recent[0]
      if (oldest === undefined || oldest.seq > mark + 1) return true
      return recent.some((r) => r.seq > mark && r.tags.some((t) => tags.includes(t)))
    }
  }
}
