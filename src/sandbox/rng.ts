// Seeded randomness. Every generated value comes from an Rng keyed by (seed, purpose, item), so a
// record can be built lazily, in any order, and still come out the same for the same seed.

function fnv1a (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number
  /** Uniform in [lo, hi). */
  float(lo: number, hi: number): number
  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number
  pick<T>(items: readonly T[]): T
  chance(p: number): boolean
  /** Standard normal deviate. */
  normal(): number
}

/** sfc32: small, fast and good enough for synthetic data. */
export function createRng (...key: Array<string | number | bigint>): Rng {
  const h = fnv1a(key.join('\u0001'))
  let a = h
  let b = fnv1a(`${h}:b`)
  let c = fnv1a(`${h}:c`)
  let d = 1
  const next = (): number => {
    a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0
    const t = (a + b | 0) + d | 0
    d = d + 1 | 0
    a = b ^ b >>> 9
    b = c + (c << 3) | 0
    c = c << 21 | c >>> 11
    c = c + t | 0
    return (t >>> 0) / 4294967296
  }
  // Warm up so that similar keys do not give similar first draws.
  for (let i = 0; i < 12; i++) next()
  const rng: Rng = {
    next,
    float: (lo, hi) => lo + next() * (hi - lo),
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
    chance: (p) => next() < p,
    normal: () => {
      const u = 1 - next()
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next())
    }
  }
  return rng
}

/** Rounds to a number of decimals, nudging exact integers so that float columns look like floats. */
export function round (value: number, decimals: number): number {
  const f = 10 ** decimals
  const r = Math.round(value * f) / f
  return Number.isInteger(r) ? r + 1 / f : r
}
