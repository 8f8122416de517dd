// Figures of a run: the physical lower bound on makespan, energy cost and percentiles. Pure functions.

/**
 * No schedule of tasks with works `works` on machines with speeds `speeds` (one task per machine at a
 * time, a task on one machine at a time, even with preemption) finishes before this bound:
 *
 *   max over k of (sum of the k largest works) / (sum of the min(k, m) fastest speeds)
 *
 * For k <= m: at any instant the k largest tasks occupy at most k machines, which together do at most
 * the k fastest speeds' worth of work, so they need at least P_k / S_k seconds. For k > m: at most all
 * m machines work at once, so P_k / S_m; as P_k grows with k, the largest such term is k = n, i.e.
 * sum(works) / sum(speeds). k = 1 gives max(work) / max(speed).
 * With several slots per host, pass one speed per slot (a slot is a machine here).
 */
export function makespanBound(works: readonly number[], speeds: readonly number[]): number {
  if (works.length === 0) return 0
  if (speeds.length === 0) return Number.POSITIVE_INFINITY
  const p = [...works].sort((a, b) => b - a)
  const s = [...speeds].sort((a, b) => b - a)
  const m = s.length
  let best = 0
  let pk = 0
  let sk = 0
  for (let k = 1; k <= p.length; k++) {
    pk += p[k - 1]!
    if (k <= m) {
      sk += s[k - 1]!
      best = Math.max(best, pk / sk)
    }
  }
  // k = n for n > m: every machine busy the whole time (sk is now the sum of all speeds)
  return Math.max(best, pk / sk)
}

/** Energy cost of `seconds` at `watts` and `price` per kWh: kWh x price. */
export function energyCost(seconds: number, watts: number, price: number): number {
  return ((seconds * watts) / 3_600_000) * price
}

/** Linear-interpolated percentile (q in [0, 1]); NaN for an empty list. */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const pos = (s.length - 1) * Math.min(1, Math.max(0, q))
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo)
}
