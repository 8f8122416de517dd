// What the auction simulation takes and gives: its parameters, and each execution of a task.

import type { LivenessSpec, NetSpec } from './net.ts'

export interface AuctionSpec {
  /** Settle window of a claim, seconds. */
  readonly settle: number
  /** Decision grid, seconds: a peer whose view changed decides at the next multiple. */
  readonly tick: number
  /** A live peer (round robin) sweeps for attempts of dead holders this often, seconds. */
  readonly sweep: number
  readonly net: NetSpec
  readonly live: LivenessSpec
  readonly crashes: readonly { readonly peer: number; readonly at: number }[]
  /** Stop here; tasks not done by then are lost. */
  readonly horizon: number
}

export type ExecOutcome = 'running' | 'done' | 'aborted' | 'crashed'

export interface Execution {
  readonly task: number
  readonly peer: number
  readonly attempt: number
  readonly start: number
  end: number
  outcome: ExecOutcome
}

export interface AuctionRun {
  readonly executions: readonly Execution[]
  readonly doneAt: Float64Array
  readonly firstStart: Float64Array
  /** Time of the last done, or the horizon when something was never done. */
  readonly end: number
  readonly done: number
  /** Wall time of each schedule() call, microseconds (measurement only: never read by the sim). */
  readonly decisionsUs: readonly number[]
  readonly sharedDecisions: number
  readonly claims: number
  readonly withdrawals: number
  readonly requeues: number
}

export function execution(task: number, peer: number, attempt: number, start: number): Execution {
  return { task, peer, attempt, start, end: Number.NaN, outcome: 'running' }
}
