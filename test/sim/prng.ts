// Seeded randomness for the simulator: a small PRNG (mulberry32) for draws made in event order, and a
// stateless hash for draws that must not depend on order (the delay of fact f to peer p), so every run
// replays exactly from its seed. Nothing here reads Math.random or a clock.

export type Rng = () => number

/** mulberry32: 32-bit state, period 2^32, good enough for workloads and fault plans. Returns [0, 1). */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A child generator: independent streams per concern, so adding a draw in one does not shift others. */
export function fork(seed: number, stream: number): Rng {
  return mulberry32(mix32(seed, stream, 0x9e3779b9))
}

/** Stateless 32-bit mix of up to three integers (murmur3 finaliser on a combined word). */
export function mix32(a: number, b: number, c = 0): number {
  let h = Math.imul(a ^ 0x85ebca6b, 0xcc9e2d51) ^ Math.imul(b + 0x27d4eb2f, 0x1b873593)
  h = (h ^ Math.imul(c + 0x165667b1, 0x85ebca77)) >>> 0
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A uniform number in [0, 1) fixed by (a, b, c): the same inputs give the same draw in any order. */
export function unit(a: number, b: number, c = 0): number {
  return mix32(a, b, c) / 4294967296
}

export function uniform(r: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * r()
}

/** Log-uniform in [lo, hi]: as many hosts between 1x and 2x as between 4x and 8x. */
export function logUniform(r: Rng, lo: number, hi: number): number {
  return lo * (hi / lo) ** r()
}

/** Standard normal by Box-Muller (one value per call; simple over fast). */
export function normal(r: Rng): number {
  const u = 1 - r()
  const v = r()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** Lognormal with the given median and shape sigma (mean = median x exp(sigma^2 / 2)). */
export function lognormal(r: Rng, median: number, sigma: number): number {
  return median * Math.exp(sigma * normal(r))
}

/** Fisher-Yates, in place. */
export function shuffle<T>(r: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    const x = xs[i]!
    xs[i] = xs[j]!
    xs[j] = x
  }
  return xs
}
