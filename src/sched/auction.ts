// The scoring auction (Task Scheduler + Task Dispatcher core). Greedy list scheduling over the head of
// the ready queue: each task, in priority order, goes to the eligible host where the job's policy
// scores it best, given when each host's slots will be free, and that slot's free time moves on.
// A cheap job is confined to its cheap set (cheapSet) and placed by earliest finish there. A
// placement that starts now is claimed now; the others are lookahead, so a fast host about to finish
// takes the tail task instead of an idle slow one. For n equal tasks, earliest finish is optimal.

import { parseVersionPin, versionInPin } from '../crdt/schedspec.ts'
import type { Placement, Policy, Requirements, SchedHost, SchedInput, SchedTask } from './types.ts'

const EPS = 1e-9
const KWH_PER_WATT_SECOND = 1 / 3_600_000

export function canRun(h: SchedHost, r: Requirements): boolean {
  if (!h.apps.has(r.app) || !versionOk(h, r)) return false
  if (h.memoryMb < r.memoryMb || h.gpus < r.gpus) return false
  return r.tags.every((t) => h.tags.has(t))
}

function versionOk(h: SchedHost, r: Requirements): boolean {
  if (r.appVersion === null) return true
  const pin = parseVersionPin(r.appVersion)
  return pin !== null && versionInPin(h.apps.get(r.app), pin)
}

/**
 * Why none of `hosts` can run a task that needs `r` (null: one can), naming the first requirement
 * that rules them all out: what a user sees beside a job that would otherwise wait without a word.
 */
export function whyNoHost(r: Requirements, hosts: readonly SchedHost[]): string | null {
  if (hosts.some((h) => canRun(h, r))) return null
  const withApp = hosts.filter((h) => h.apps.has(r.app))
  if (withApp.length === 0) return `no host runs ${r.app}`
  const versioned = withApp.filter((h) => versionOk(h, r))
  if (versioned.length === 0) {
    const have = [...new Set(withApp.map((h) => h.apps.get(r.app) ?? 'an unknown version'))].sort()
    return `it needs ${r.app} ${r.appVersion}; the hosts have ${r.app} ${have.join(', ')}`
  }
  const roomy = versioned.filter((h) => h.memoryMb >= r.memoryMb)
  if (roomy.length === 0) {
    const most = Math.max(...versioned.map((h) => h.memoryMb))
    return `it needs ${r.memoryMb} MiB of memory; the hosts that run it have at most ${most} MiB`
  }
  const withGpus = roomy.filter((h) => h.gpus >= r.gpus)
  if (withGpus.length === 0) {
    const most = Math.max(...roomy.map((h) => h.gpus))
    return `it needs ${r.gpus} GPU(s); the hosts that run it have at most ${most}`
  }
  const missing = r.tags.filter((t) => !withGpus.some((h) => h.tags.has(t)))
  return missing.length > 0
    ? `it needs tag(s) ${missing.join(', ')}, which no host that meets its other needs has`
    : `it needs tags ${r.tags.join(', ')} on one host; no host that meets its other needs has them all`
}

/** Energy cost of `seconds` on host `h`, in kWh x price; unknown prices count as the farm's median. */
export function energyCost(h: SchedHost, seconds: number, medianPrice: number): number {
  return seconds * h.wattsLoaded * KWH_PER_WATT_SECOND * (h.price ?? medianPrice)
}

export function medianPrice(hosts: readonly SchedHost[]): number {
  const known = hosts.map((h) => h.price).filter((p): p is number => p !== null && p > 0)
  if (known.length === 0) return 1
  known.sort((a, b) => a - b)
  const mid = known.length >> 1
  return known.length % 2 === 1 ? known[mid]! : (known[mid - 1]! + known[mid]!) / 2
}

interface Candidate {
  readonly host: number
  readonly start: number
  readonly finish: number
  readonly cost: number
}

/** Lower is better. Bids of one task are comparable across peers: the same formula, the same units. */
function score(policy: Policy, c: Candidate, ref: { finish: number; cost: number }): number {
  switch (policy.kind) {
    case 'fast':
      return c.finish
    case 'cheap':
      return c.finish // within the job's cheap set (see cheapSet): earliest finish there
    case 'balanced':
      return c.finish / ref.finish + c.cost / ref.cost
    case 'weights':
      return policy.time * (c.finish / ref.finish) + policy.cost * (c.cost / ref.cost)
  }
}

export function schedule(input: SchedInput): Placement[] {
  const hosts = [...input.hosts].sort((a, b) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : 0))
  // each host's slot free times, earliest first
  const slots = hosts.map((h) => [...h.slotFreeIn].map((x) => Math.max(0, x)).sort((a, b) => a - b))
  const freeNow = slots.reduce((n, s) => n + s.filter((x) => x <= EPS).length, 0)
  const limit = input.maxTasks ?? freeNow + 2 * hosts.length
  // Without an explicit maxTasks only what starts now is wanted: once every slot free now is taken,
  // no later task can start now, so the rest of the head changes nothing a peer would claim.
  const stopWhenFilled = input.maxTasks === undefined
  let unfilled = freeNow
  const price = medianPrice(hosts)
  const seats = new Map(input.licenses)
  const eligibleByJob = new Map<string, number[]>()
  const out: Placement[] = []
  let considered = 0
  const drainIn = input.drainIn

  for (const t of input.tasks) {
    if (considered++ >= limit || (stopWhenFilled && unfilled <= 0)) break
    let eligible = eligibleByJob.get(t.job)
    if (eligible === undefined) {
      eligible = hosts.flatMap((h, i) => (canRun(h, t.requires) ? [i] : []))
      // a cheap job runs on its cheap set only
      if (t.policy.kind === 'cheap') eligible = cheapSet(hosts, eligible, t.policy.slack, price)
      eligibleByJob.set(t.job, eligible)
    }
    if (eligible.length === 0) continue
    // reference finish and cost: the best this task could get anywhere, so scores are normalised
    let refFinish = Number.POSITIVE_INFINITY
    let refCost = Number.POSITIVE_INFINITY
    for (const i of eligible) {
      const h = hosts[i]!
      refFinish = Math.min(refFinish, t.work / speedFor(h, t))
      refCost = Math.min(refCost, energyCost(h, t.work / speedFor(h, t), price))
    }
    const ref = { finish: Math.max(refFinish, EPS), cost: Math.max(refCost, EPS) }
    let best: Candidate | undefined
    let bestScore = Number.POSITIVE_INFINITY
    // a host that failed this task gets it again only when no other eligible host is left
    const avoid = t.avoid
    const avoiding =
      avoid !== undefined &&
      eligible.some((i) => !t.excluded.has(hosts[i]!.peer) && !avoid.has(hosts[i]!.peer))
    for (const i of eligible) {
      const h = hosts[i]!
      if (t.excluded.has(h.peer) || (avoiding && avoid.has(h.peer))) continue
      const start = slots[i]![0]
      if (start === undefined) continue
      const seconds = t.work / speedFor(h, t)
      const c: Candidate = { host: i, start, finish: start + seconds, cost: energyCost(h, seconds, price) }
      const s = score(t.policy, c, ref) + tailRisk(t, h, start, drainIn, ref.finish)
      if (
        s < bestScore - EPS ||
        (Math.abs(s - bestScore) <= EPS && best !== undefined && c.finish < best.finish)
      ) {
        best = c
        bestScore = s
      }
    }
    if (best === undefined) continue
    if (t.license !== null && best.start <= EPS) {
      const free = seats.get(t.license) ?? 0
      if (free <= 0) continue // no seat now: it waits, and takes no slot from others
      seats.set(t.license, free - 1)
    }
    if (best.start <= EPS) unfilled--
    const hostSlots = slots[best.host]!
    hostSlots[0] = best.finish
    hostSlots.sort((a, b) => a - b)
    out.push({
      key: t.key,
      peer: hosts[best.host]!.peer,
      start: best.start,
      finish: best.finish,
      cost: best.cost,
      bid: bestScore,
    })
  }
  return out
}

/**
 * How many standard deviations of its job's work a task may run over, in the end-of-queue risk term.
 * Task times are skewed (lognormal in render farms and in test/sim): a task of 5 sd over its job's
 * mean is rare but, among thousands, it is the one that decides the makespan if it lands on a slow
 * host at the end. Chosen on seeds 1-12 of bench:sched-seeds (3.5, 4 and 5 all cut the worst case;
 * none is best on every seed), checked on 13-24.
 */
export const TAIL_SD = 5

/**
 * What placing `t` on `h` risks for the makespan: how far its pessimistic finish would run past the
 * farm's drain time, in the policy's units (seconds for fast and cheap; relative for the others).
 */
function tailRisk(
  t: SchedTask,
  h: SchedHost,
  start: number,
  drainIn: number | undefined,
  refFinish: number,
): number {
  if (drainIn === undefined || t.workSd === undefined) return 0
  const over = start + (t.work + TAIL_SD * t.workSd) / speedFor(h, t) - drainIn
  if (over <= 0) return 0
  const p = t.policy
  // in the units of score(): seconds for fast and cheap, relative to the best finish for the others
  if (p.kind === 'fast' || p.kind === 'cheap') return over
  return ((p.kind === 'weights' ? p.time : 1) * over) / refFinish
}

/**
 * Seconds until `hosts` could have done the rest of their running tasks and `queuedWork` more, all
 * slots busy: a lower bound on when the farm's known work ends (SchedInput.drainIn).
 */
export function drainTime(hosts: readonly SchedHost[], queuedWork: number): number {
  let work = queuedWork
  let speed = 0
  for (const h of hosts) {
    for (const free of h.slotFreeIn) work += Math.max(0, free) * h.speed
    speed += h.speed * h.slotFreeIn.length
  }
  return speed > 0 ? work / speed : 0
}

/**
 * A host's speed for a task: its GPU's when it has one that passed the app's self-test, unless the
 * task insists on the CPU (`--device cpu`).
 */
export function speedFor(h: SchedHost, t: Pick<SchedTask, 'requires'>): number {
  const up = h.gpuSpeedup?.get(t.requires.app)
  if (up === undefined || t.requires.tags.includes('device:cpu')) return h.speed
  return h.speed * up
}

/**
 * The cheap policy's hosts: the cheapest by energy per unit of work (watts x price / speed) whose
 * speeds add up to at least 1 / (1 + slack) of all eligible speed. With work spread by earliest finish
 * over them, the job's makespan stays within about (1 + slack) x its bound, at the least energy.
 */
export function cheapSet(
  hosts: readonly SchedHost[],
  eligible: readonly number[],
  slack: number,
  price: number,
): number[] {
  const total = sum(eligible.map((i) => hosts[i]!.speed))
  const perWork = (i: number) => energyCost(hosts[i]!, 1 / hosts[i]!.speed, price)
  const order = [...eligible].sort((a, b) => perWork(a) - perWork(b) || a - b)
  const out: number[] = []
  let speed = 0
  for (const i of order) {
    if (speed >= total / (1 + slack) - EPS) break
    out.push(i)
    speed += hosts[i]!.speed
  }
  return out.sort((a, b) => a - b)
}

function sum(xs: readonly number[]): number {
  let s = 0
  for (const x of xs) s += x
  return s
}
