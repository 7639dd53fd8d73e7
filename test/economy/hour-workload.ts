// The workload of the simulated hour (simulated-hour.test.ts): 20 consumers, each with a role and a
// schedule, on a clock that advances in ticks. Seeded, so every run sends the same requests at the
// same simulated times (only what the gateway answers may differ).
//
//   - 6 list bots poll two detection lists every 5 minutes (cron-like: each starts at its own minute),
//     each with its own filter, and after each poll read a batch of 5 members of the first list;
//   - 1 VRA poller reads the VRA scores every 2 minutes, incrementally (after_id) after its first read;
//   - 8 object readers read one object about once a minute each (at random ticks);
//   - 2 batch readers read 20 objects in one request every 10 minutes;
//   - 2 cone checkers check a position of a list member every 3 minutes (radius and mode vary);
//   - 1 curator reads a custom list every 2 minutes and adds or removes a member every 10 minutes.
// Objects are picked with Zipf-like popularity (rank k has weight 1/k) over the members of the polled
// lists, in a seeded order: a few objects are read often, most rarely.

export const CONSUMERS = 20
export const CUSTOM_LIST = 'mookodi'

/** A list member: its id (as a string, digit for digit) and its position (degrees). */
export interface Member { id: string, ra: number, dec: number }

export type RequestKind = 'list' | 'vra' | 'object' | 'batch' | 'cone' | 'custom-list' | 'write'

export interface SimRequest {
  consumer: number
  kind: RequestKind
  method: 'GET' | 'PUT' | 'DELETE'
  url: string
}

/** What a consumer's answer tells its next requests (the VRA poller's after_id, the curator's additions). */
export interface SimAnswer { request: SimRequest, status: number, body: string }

/** A small seeded generator (mulberry32), shared with the replay test so both workloads stay fixed. */
export function createRandom (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** A Zipf-like sampler over ranks 0…n-1 (rank k has weight 1/(k+1)). */
function createZipf (random: () => number, n: number): () => number {
  const cumulative: number[] = []
  let total = 0
  for (let k = 0; k < n; k++) cumulative.push(total += 1 / (k + 1))
  return () => {
    const u = random() * total
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((cumulative[mid] as number) < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

function shuffle<T> (random: () => number, items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = out[i] as T
    out[i] = out[j] as T
    out[j] = tmp
  }
  return out
}

export interface HourWorkload {
  /** The requests due at tick `tick` (seconds since the start = tick × tickS). */
  requests (tick: number): SimRequest[]
  /** Tells the workload what a request got (the VRA poller reads its after_id from it). */
  answered (answer: SimAnswer): void
}

export interface WorkloadOptions {
  seed: number
  tickS: number
  /** Members of each polled detection list, by list name. */
  lists: Readonly<Record<string, readonly Member[]>>
}

const LIST_PAIRS: ReadonlyArray<readonly [string, string]> = [['good', 'follow_up'], ['good', 'eyeball'], ['follow_up', 'eyeball']]
const CONE_RADII = [5, 10, 30, 60] as const
const CONE_MODES = ['nearest', 'count', 'all'] as const

export function createHourWorkload ({ seed, tickS, lists }: WorkloadOptions): HourWorkload {
  const random = createRandom(seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  // Popularity: one seeded order over the members of every polled list.
  const pool = shuffle(random, Object.values(lists).flat())
  const zipf = createZipf(random, pool.length)
  const popular = (): Member => pool[zipf()] as Member
  const distinctIds = (n: number, from: () => Member): string[] => {
    const ids = new Set<string>()
    while (ids.size < n) ids.add(from().id)
    return [...ids]
  }
  const ranks = new Map<string, () => number>(Object.entries(lists).map(([name, members]) => [name, createZipf(random, members.length)]))
  const popularIn = (name: string) => (): Member => (lists[name] as readonly Member[])[(ranks.get(name) as () => number)()] as Member
  // Phases: when in its period each consumer acts, in whole ticks (bots on a whole minute, like cron).
  const everyTicks = (seconds: number) => Math.round(seconds / tickS)
  const phase = (seconds: number, granularityS = tickS) => Math.floor(random() * seconds / granularityS) * Math.round(granularityS / tickS)
  const botPhases = Array.from({ length: 6 }, () => phase(300, 60))
  const batchPhases = [phase(600), phase(600)]
  const conePhases = [phase(180), phase(180)]
  const curatorWritePhase = phase(600)
  let vraAfterId: number | undefined
  const added: string[] = []
  let writes = 0

  return {
    requests (tick) {
      const due: SimRequest[] = []
      const get = (consumer: number, kind: RequestKind, url: string) => due.push({ consumer, kind, method: 'GET', url })
      botPhases.forEach((p, bot) => {
        if (tick % everyTicks(300) !== p) return
        const [first, second] = LIST_PAIRS[bot % LIST_PAIRS.length] as readonly [string, string]
        get(bot, 'list', `/v1/lists/${first}/objects?vra_gte=${bot}`)
        get(bot, 'list', `/v1/lists/${second}/objects?rb_pix_gte=0.${bot}`)
        get(bot, 'batch', `/v1/objects?ids=${distinctIds(5, popularIn(first)).join(',')}`)
      })
      if (tick % everyTicks(120) === 0) get(6, 'vra', `/v1/vra/scores${vraAfterId === undefined ? '' : `?after_id=${vraAfterId}`}`)
      for (let reader = 7; reader <= 14; reader++) {
        if (random() < tickS / 60) get(reader, 'object', `/v1/objects/${popular().id}`)
      }
      batchPhases.forEach((p, i) => {
        if (tick % everyTicks(600) === p) get(15 + i, 'batch', `/v1/objects?ids=${distinctIds(20, popular).join(',')}`)
      })
      conePhases.forEach((p, i) => {
        if (tick % everyTicks(180) !== p) return
        const at = popular()
        get(17 + i, 'cone', `/v1/cone?ra=${at.ra}&dec=${at.dec}&radius=${pick(CONE_RADII)}&mode=${pick(CONE_MODES)}`)
      })
      if (tick % everyTicks(120) === everyTicks(60)) get(19, 'custom-list', `/v1/custom-lists/${CUSTOM_LIST}/objects`)
      if (tick % everyTicks(600) === curatorWritePhase) {
        // Alternately add a popular object and remove one it added (when an add went through).
        const removed = writes++ % 2 === 1 ? added.shift() : undefined
        const id = removed ?? popular().id
        due.push({ consumer: 19, kind: 'write', method: removed === undefined ? 'PUT' : 'DELETE', url: `/v1/custom-lists/${CUSTOM_LIST}/objects/${id}` })
      }
      return due
    },
    answered ({ request, status, body }) {
      if (request.kind === 'write' && request.method === 'PUT' && status >= 200 && status < 300) added.push(request.url.slice(request.url.lastIndexOf('/') + 1))
      if (request.kind !== 'vra' || status !== 200) return
      const rows = (JSON.parse(body) as { rows: Array<{ id: number | string }> }).rows
      for (const row of rows) vraAfterId = Math.max(vraAfterId ?? 0, Number(row.id))
    }
  }
}
