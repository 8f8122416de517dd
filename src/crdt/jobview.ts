// A job's view: its spec, control (hold/cancel/priority), every task's view, state counts, and the
// Dependency Manager's part: WAIT for tasks whose job waits for another job, for a condition (manual
// release, a file), or frame by frame for the matching task of another job; and the failure rules
// (hosts blocklisted for the job, the job failing once enough of its tasks failed).

import type { ParsedJob } from './farmdoc.ts'
import {
  emptyCounts,
  type JobControl,
  jobState,
  reduceJobControl,
  reduceTask,
  type StateCounts,
  type TaskView,
} from './reducer.ts'
import { type JobSpec, type JobState, MAX_CLOCK, taskFrames } from './schema.ts'

export interface JobView extends JobControl {
  readonly id: string
  readonly spec: JobSpec
  readonly state: JobState
  readonly counts: StateCounts
  readonly tasks: readonly TaskView[]
  /** What the whole job waits for: job ids not DONE yet (unknown ids count as not done), 'manual release', 'file PATH'. */
  readonly waitingOn: readonly string[]
  /** Hosts that failed `sched.blocklistAfter` or more of this job's tasks: offered none of them. */
  readonly blocklist: readonly string[]
  /** Mean measured work per frame of its DONE tasks (work units), null until one reported it. */
  readonly workPerFrame: number | null
  /**
   * Standard deviation of the per-frame work of its DONE tasks, null until 3 reported one: how much a
   * task may exceed the mean (the auction keeps that risk off the end of the queue).
   */
  readonly workPerFrameSd: number | null
  /** Malformed entries in this job's log, ignored. */
  readonly invalid: number
  /**
   * An entry (only a hostile one gets there) set the job's clock to MAX_CLOCK: no peer can record
   * another event of it, so none is offered its tasks, and actions on it are refused.
   */
  readonly frozen: boolean
}

type Reader = (id: string) => ParsedJob | undefined

export function viewJob(id: string, read: Reader): JobView | undefined {
  return viewWith(id, read, new Set(), new Map())
}

/**
 * `seen`: the views made in this call, by id. A job that several others wait for (two jobs per layer,
 * each waiting for both of the layer below) is viewed once, not once per path to it: the paths grow
 * exponentially with the layers. One call walks the graph in the same order on every peer (the
 * order of the specs' lists), so a view reused here is the same view everywhere.
 */
function viewWith(
  id: string,
  read: Reader,
  visiting: Set<string>,
  seen: Map<string, JobView | undefined>,
): JobView | undefined {
  if (seen.has(id)) return seen.get(id)
  const v = viewOnce(id, read, visiting, seen)
  seen.set(id, v)
  return v
}

function viewOnce(
  id: string,
  read: Reader,
  visiting: Set<string>,
  seen: Map<string, JobView | undefined>,
): JobView | undefined {
  const job = read(id)
  if (job === undefined) return undefined
  const { spec } = job
  const ctl = reduceJobControl(spec, job.control)
  visiting.add(id)
  const depView = (dep: string) => (visiting.has(dep) ? undefined : viewWith(dep, read, visiting, seen))
  // a cycle (only a hostile peer can make one: deps must exist at submit) never resolves: it waits
  // a dependency removed before it finished never will (a concurrent submit on another peer): say so
  const waitingOn: string[] = []
  for (const dep of spec.dependsOn) {
    const d = depView(dep)
    if (d?.state !== 'DONE') waitingOn.push(d?.removed === true ? `${dep} (removed)` : dep)
  }
  const taskDeps = spec.sched.taskDeps.map(depView)
  visiting.delete(id)
  if (spec.sched.manual && !ctl.released) waitingOn.push('manual release')
  if (spec.sched.waitFile !== null && !ctl.released) waitingOn.push(`file ${spec.sched.waitFile}`)
  const memo = job.memo
  if (
    memo.control === undefined ||
    memo.control.held !== ctl.held ||
    memo.control.cancelled !== ctl.cancelled
  ) {
    memo.views = []
    memo.control = ctl
  }
  const counts = emptyCounts()
  const failedTasksByPeer = new Map<string, number>()
  const tasks = job.tasks.map((events, index) => {
    let t = memo.views[index]
    if (t === undefined) {
      t = reduceTask(index, events, spec.maxRetries, ctl)
      memo.views[index] = t
    }
    for (const p of t.failedPeers) failedTasksByPeer.set(p, (failedTasksByPeer.get(p) ?? 0) + 1)
    const waits = waitingOn.length > 0 || taskDeps.some((dep) => !matchingTasksDone(spec, index, dep))
    const view: TaskView = waits && t.state === 'QUEUE' ? { ...t, state: 'WAIT' } : t
    counts[view.state]++
    return view
  })
  let workSum = 0
  let workFrames = 0
  // per task: its work per frame (n, sum, sum of squares)
  let n = 0
  let sum = 0
  let sq = 0
  for (const t of tasks) {
    if (t.state !== 'DONE' || t.work === null) continue
    const frames = framesIn(spec, t.index)
    workSum += t.work
    workFrames += frames
    const x = t.work / frames
    n++
    sum += x
    sq += x * x
  }
  const blocklist = [...failedTasksByPeer]
    .filter(([, n]) => n >= spec.sched.blocklistAfter)
    .map(([p]) => p)
    .sort()
  return {
    id,
    spec,
    ...ctl,
    state: jobState(ctl, counts, tasks.length, spec.sched.failRatio),
    counts,
    tasks,
    waitingOn,
    blocklist,
    workPerFrame: workFrames > 0 ? workSum / workFrames : null,
    workPerFrameSd: n >= 3 ? Math.sqrt(Math.max(0, (sq - (sum * sum) / n) / (n - 1))) : null,
    invalid: job.invalid,
    frozen: job.maxLc >= MAX_CLOCK,
  }
}

/** Frames task `index` renders (1 for a job without frames). */
export function framesIn(spec: JobSpec, index: number): number {
  const f = taskFrames(spec, index)
  return f === null || spec.frames === null ? 1 : Math.floor((f[1] - f[0]) / spec.frames.step) + 1
}

/**
 * Frame by frame: task `index` of `spec` may start once the tasks of `dep` that render its frames are
 * DONE (by index when either job has no frames; all of `dep` when it has fewer tasks).
 */
function matchingTasksDone(spec: JobSpec, index: number, dep: JobView | undefined): boolean {
  if (dep === undefined) return false
  const mine = taskFrames(spec, index)
  if (mine === null || dep.spec.frames === null) {
    const t = dep.tasks[index]
    return t === undefined ? dep.state === 'DONE' : t.state === 'DONE'
  }
  const [first, last] = mine
  for (const t of dep.tasks) {
    const f = taskFrames(dep.spec, t.index)
    if (f !== null && f[0] <= last && f[1] >= first && t.state !== 'DONE') return false
  }
  return true
}

/** A job before its `notBefore` time: its QUEUE tasks WAIT (the clock is the caller's). */
export function atTime(view: JobView, nowMs: number): JobView {
  const nb = view.spec.sched.notBefore
  if (nb === null || nowMs >= nb || view.counts.QUEUE === 0) return view
  const counts = { ...view.counts, WAIT: view.counts.WAIT + view.counts.QUEUE, QUEUE: 0 }
  const tasks = view.tasks.map((t) => (t.state === 'QUEUE' ? { ...t, state: 'WAIT' as const } : t))
  const waitingOn = [...view.waitingOn, `time ${new Date(nb).toISOString()}`]
  const state = view.state === 'QUEUE' ? 'WAIT' : view.state
  return { ...view, counts, tasks, waitingOn, state }
}
