// One scenario = one seed, one farm, one workload, one network and fault plan; the auction and the
// baselines run on the same farm and tasks. Used by the tests and by bench/sched.ts.

import { runAuction } from './auction-sim.ts'
import type { AuctionRun } from './auction-types.ts'
import { runBaseline } from './baselines.ts'
import { type Figures, farmBound, figures } from './metrics.ts'
import { defaultFarm, defaultWork, type FarmSpec, makeFarm, makeWorkload, type WorkSpec } from './model.ts'
import { type LivenessSpec, lanNet, livenessFor, type NetSpec } from './net.ts'
import { fork, shuffle } from './prng.ts'

export interface Scenario {
  readonly seed: number
  readonly farm: FarmSpec
  readonly work: WorkSpec
  readonly net: NetSpec
  /** Claim settle window, seconds. */
  readonly settle: number
  /** Decision grid (the node's debounce), seconds. */
  readonly tick: number
  /** Period of the dead-holder sweep, seconds. */
  readonly sweep: number
  /** Heartbeat and thresholds; default from the farm size (see livenessFor). */
  readonly live?: LivenessSpec
  /** Share of peers that crash, each at a uniform time in [0.1, 0.6] x the bound. */
  readonly crash: number
  /** Which baselines to run as well. */
  readonly baselines: readonly ('fcfs' | 'random')[]
  /** FCFS workers' poll interval, seconds (0: ask the moment they are free). */
  readonly fcfsPoll: number
}

export const defaultScenario: Scenario = {
  seed: 1,
  farm: defaultFarm,
  work: defaultWork,
  net: lanNet,
  settle: 0.05,
  tick: 0.02,
  sweep: 1,
  crash: 0,
  baselines: ['fcfs', 'random'],
  fcfsPoll: 0,
}

export interface Outcome {
  readonly bound: number
  readonly auction: Figures
  readonly run: AuctionRun
  readonly fcfs?: Figures
  readonly random?: Figures
  readonly crashed: number
}

export type ScenarioPatch = Partial<Omit<Scenario, 'farm' | 'work' | 'net'>> & {
  farm?: Partial<FarmSpec>
  work?: Partial<WorkSpec>
  net?: Partial<NetSpec>
}

export function scenario(patch: ScenarioPatch = {}, base: Scenario = defaultScenario): Scenario {
  return {
    ...base,
    ...patch,
    farm: { ...base.farm, ...patch.farm },
    work: { ...base.work, ...patch.work },
    net: { ...base.net, ...patch.net },
  }
}

export function simulate(s: Scenario): Outcome {
  const hosts = makeFarm(s.farm, s.seed)
  const work = makeWorkload(s.work, s.seed)
  const bound = farmBound(hosts, work)
  const live = s.live ?? livenessFor(s.farm.peers)
  const r = fork(s.seed, 3)
  const victims = shuffle(
    r,
    hosts.map((h) => h.index),
  ).slice(0, Math.round(s.crash * hosts.length))
  const crashes = victims.map((peer) => ({ peer, at: bound * (0.1 + 0.5 * r()) }))
  const lastReady = work.tasks.reduce((m, t) => Math.max(m, t.readyAt), 0)
  const horizon = lastReady + 4 * bound + 10 * live.dead + 600
  const run = runAuction(hosts, work, { ...s, live, crashes, horizon }, s.seed)
  const out: Outcome = { bound, auction: figures(hosts, work, run, bound), run, crashed: crashes.length }
  const extra: { fcfs?: Figures; random?: Figures } = {}
  for (const b of s.baselines) {
    extra[b] = figures(hosts, work, runBaseline(hosts, work, b, s.fcfsPoll, s.seed), bound)
  }
  return { ...out, ...extra }
}
