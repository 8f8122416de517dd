// A run's figures: makespan over the physical bound, energy cost, duplicate executions, lost tasks,
// time from ready to start, and the scheduler's CPU time per decision.

import { energyCost, makespanBound, percentile } from './bound.ts'
import { medianKnownPrice, type SimHost, type Workload } from './model.ts'

export interface Figures {
  readonly makespan: number
  readonly bound: number
  /** makespan / bound (>= 1); Infinity when a task was lost. */
  readonly ratio: number
  /** Sum over executions (wasted ones too) of kWh x price; unknown prices count as the median. */
  readonly energy: number
  /** Share of tasks that ran on two peers at once, or again after they were done, in %. */
  readonly duplicatesPct: number
  readonly lost: number
  /** Seconds from a task's ready time to its first start. */
  readonly waitP50: number
  readonly waitP95: number
  readonly decisions: number
  readonly decisionUsP50: number
  readonly decisionUsP95: number
  readonly decisionUsMax: number
}

export interface RunLike {
  readonly executions: readonly { task: number; peer: number; start: number; end: number }[]
  readonly doneAt: Float64Array
  readonly firstStart: Float64Array
  readonly end: number
  readonly decisionsUs?: readonly number[]
}

export function farmBound(hosts: readonly SimHost[], work: Workload): number {
  const speeds = hosts.flatMap((h) => Array.from({ length: h.slots }, () => h.speed))
  return makespanBound(
    work.tasks.map((t) => t.work),
    speeds,
  )
}

export function figures(hosts: readonly SimHost[], work: Workload, run: RunLike, bound: number): Figures {
  const n = work.tasks.length
  const median = medianKnownPrice(hosts)
  const byTask: { start: number; end: number }[][] = Array.from({ length: n }, () => [])
  let energy = 0
  for (const e of run.executions) {
    const end = Number.isNaN(e.end) ? run.end : e.end
    const h = hosts[e.peer]!
    energy += energyCost(end - e.start, h.watts, h.price ?? median)
    byTask[e.task]!.push({ start: e.start, end })
  }
  let duplicated = 0
  for (let k = 0; k < n; k++) {
    const list = byTask[k]!.sort((a, b) => a.start - b.start)
    let busyUntil = Number.NEGATIVE_INFINITY
    for (const x of list) {
      if (x.start < busyUntil || x.start >= run.doneAt[k]!) {
        duplicated++
        break
      }
      busyUntil = Math.max(busyUntil, x.end)
    }
  }
  let lost = 0
  let makespan = 0
  const waits: number[] = []
  for (let k = 0; k < n; k++) {
    const d = run.doneAt[k]!
    if (Number.isNaN(d)) lost++
    else makespan = Math.max(makespan, d)
    const s = run.firstStart[k]!
    if (!Number.isNaN(s)) waits.push(s - work.tasks[k]!.readyAt)
  }
  const us = run.decisionsUs ?? []
  return {
    makespan,
    bound,
    ratio: lost > 0 ? Number.POSITIVE_INFINITY : makespan / bound,
    energy,
    duplicatesPct: (100 * duplicated) / Math.max(1, n),
    lost,
    waitP50: percentile(waits, 0.5),
    waitP95: percentile(waits, 0.95),
    decisions: us.length,
    decisionUsP50: percentile(us, 0.5),
    decisionUsP95: percentile(us, 0.95),
    decisionUsMax: us.length > 0 ? us.reduce((a, b) => Math.max(a, b)) : Number.NaN,
  }
}
