// The simulated farm and its work: hosts with a speed, slots, loaded watts and an electricity price,
// and jobs of tasks with lognormal works. Everything is drawn from the seed, once, so the auction and
// the baselines of a run see the same farm and the same tasks.

import type { Policy } from '../../src/sched/types.ts'
import { fork, lognormal, logUniform, type Rng } from './prng.ts'

/**
 * How loaded watts relate to speed. 'proportional': every host spends about the same energy per unit
 * of work. 'varied': watts per unit of speed drawn independently of speed (8x spread), so there are
 * fast-and-efficient, fast-and-hungry, slow-and-efficient and slow-and-hungry hosts. 'fast-efficient'
 * and 'fast-hungry': the spread follows speed one way or the other.
 */
export type WattsMix = 'proportional' | 'varied' | 'fast-efficient' | 'fast-hungry'

export interface FarmSpec {
  readonly peers: number
  readonly slots: number
  readonly speedMin: number
  readonly speedMax: number
  readonly watts: WattsMix
  /** Share of hosts whose electricity price is unknown (null). */
  readonly unknownPrice: number
}

export interface SimHost {
  readonly index: number
  /** Zero-padded, so string order (the claim tie-break) is index order. */
  readonly peer: string
  readonly speed: number
  readonly slots: number
  readonly watts: number
  readonly price: number | null
}

/** What the scheduler is told a task's work is: the truth, or the mean of its job (a learned estimate). */
export type Estimate = 'exact' | 'job'

export interface WorkSpec {
  readonly tasks: number
  readonly jobs: number
  /** Median work of a task on a speed-1 host, seconds. */
  readonly medianWork: number
  /** Ratio between the heaviest and the lightest job's median work. */
  readonly jobSpread: number
  /** Lognormal shape of task works inside a job. */
  readonly sigma: number
  readonly policy: Policy
  readonly estimate: Estimate
  /** Tell the auction each job's spread (SchedTask.workSd), so it keeps long tasks off the end. */
  readonly tailRisk: boolean
  /** Job j becomes ready at j x submitGap seconds (0: all ready at once). */
  readonly submitGap: number
}

export interface SimTask {
  /** Position in the priority order (job order, then task order), and the task's id in the sim. */
  readonly index: number
  readonly job: string
  readonly key: string
  readonly work: number
  readonly estimate: number
  /** Standard deviation of its job's task works (0 when estimates are exact; null: not told). */
  readonly estimateSd: number | null
  readonly policy: Policy
  readonly readyAt: number
}

export interface SimJob {
  readonly id: string
  readonly first: number
  readonly count: number
}

export interface Workload {
  readonly tasks: readonly SimTask[]
  readonly jobs: readonly SimJob[]
}

export const defaultFarm: FarmSpec = {
  peers: 100,
  slots: 1,
  speedMin: 1,
  speedMax: 8,
  watts: 'proportional',
  unknownPrice: 0.2,
}

export const defaultWork: WorkSpec = {
  tasks: 5_000,
  jobs: 20,
  medianWork: 60,
  jobSpread: 4,
  sigma: 0.5,
  policy: { kind: 'fast' },
  estimate: 'job',
  tailRisk: true,
  submitGap: 0,
}

export function peerName(i: number): string {
  return `p${String(i).padStart(4, '0')}`
}

function wattsPerSpeed(r: Rng, mix: WattsMix, speedRank: number): number {
  // speedRank: 0 for the slowest possible host, 1 for the fastest
  switch (mix) {
    case 'proportional':
      return 50 * (0.9 + 0.2 * r())
    case 'varied':
      return logUniform(r, 20, 160)
    case 'fast-efficient':
      return 160 * (20 / 160) ** speedRank * (0.9 + 0.2 * r())
    case 'fast-hungry':
      return 20 * (160 / 20) ** speedRank * (0.9 + 0.2 * r())
  }
}

export function makeFarm(spec: FarmSpec, seed: number): SimHost[] {
  const r = fork(seed, 1)
  const hosts: SimHost[] = []
  for (let i = 0; i < spec.peers; i++) {
    const speed = logUniform(r, spec.speedMin, spec.speedMax)
    const rank = Math.log(speed / spec.speedMin) / Math.log(spec.speedMax / spec.speedMin || 2)
    const watts = speed * wattsPerSpeed(r, spec.watts, rank)
    const price = r() < spec.unknownPrice ? null : logUniform(r, 0.08, 0.4)
    hosts.push({ index: i, peer: peerName(i), speed, slots: spec.slots, watts, price })
  }
  return hosts
}

export function makeWorkload(spec: WorkSpec, seed: number): Workload {
  const r = fork(seed, 2)
  const tasks: SimTask[] = []
  const jobs: SimJob[] = []
  const root = Math.sqrt(spec.jobSpread)
  for (let j = 0; j < spec.jobs; j++) {
    const count = Math.floor(spec.tasks / spec.jobs) + (j < spec.tasks % spec.jobs ? 1 : 0)
    const id = `j${String(j).padStart(3, '0')}`
    const median = spec.medianWork * logUniform(r, 1 / root, root)
    const works = Array.from({ length: count }, () => lognormal(r, median, spec.sigma))
    const mean = works.reduce((a, b) => a + b, 0) / Math.max(1, count)
    const sd = Math.sqrt(works.reduce((a, w) => a + (w - mean) ** 2, 0) / Math.max(1, count))
    const first = tasks.length
    for (let i = 0; i < count; i++) {
      tasks.push({
        index: first + i,
        job: id,
        key: `${id}/${i}`,
        work: works[i]!,
        estimate: spec.estimate === 'exact' ? works[i]! : mean,
        estimateSd: !spec.tailRisk ? null : spec.estimate === 'exact' ? 0 : sd,
        policy: spec.policy,
        readyAt: j * spec.submitGap,
      })
    }
    jobs.push({ id, first, count })
  }
  return { tasks, jobs }
}

/** The median of the known prices, which stands in for unknown ones (as the scheduler does). */
export function medianKnownPrice(hosts: readonly SimHost[]): number {
  const known = hosts.flatMap((h) => (h.price === null ? [] : [h.price])).sort((a, b) => a - b)
  if (known.length === 0) return 1
  const mid = known.length >> 1
  return known.length % 2 === 1 ? known[mid]! : (known[mid - 1]! + known[mid]!) / 2
}
