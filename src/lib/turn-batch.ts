// Gathers what callers ask for while the microtasks of one event-loop turn run, and sends it once: the
// requests one upstream reply answers each store their record and release their fill lock in their own
// continuation, and those continuations all run in the same turn. Every caller's promise settles when
// the whole batch has been sent.
export interface TurnBatch<T> {
  /** Adds items to this turn's batch; resolves once the batch is sent. */
  add: (items: Iterable<T>) => Promise<void>
  /**
   * Sends this turn's batch now (for work that must land after it) and waits for it and for every
   * earlier batch still being sent (a large one goes out in slices, one after another).
   */
  flush: () => Promise<void>
}

export function createTurnBatch<T> (send: (items: T[]) => Promise<void>): TurnBatch<T> {
  let open: { items: T[], go: () => void, sent: Promise<void> } | undefined
  // Batches whose send has started and not settled yet.
  const sending = new Set<Promise<void>>()

  async function flush (): Promise<void> {
    const batch = open
    open = undefined
    batch?.go()
    if (sending.size > 0) await Promise.allSettled([...sending])
    await batch?.sent
  }

  function add (items: Iterable<T>): Promise<void> {
    if (open === undefined) {
      const gathered: T[] = []
      let go!: () => void
      const sent = new Promise<void>((resolve) => { go = resolve }).then(async () => send(gathered))
      sending.add(sent)
      const settled = (): void => { sending.delete(sent) }
      sent.then(settled, settled)
      open = { items: gathered, go, sent }
      // A tick callback queued from a microtask runs once the microtask queue is empty.
      process.nextTick(() => { flush().catch(() => {}) })
    }
    for (const item of items) open.items.push(item)
    return open.sent
  }

  return { add, flush }
}
