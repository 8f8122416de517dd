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

/**
 * Views of jobs whose dependencies, all the way down, form no cycle: such a view is the same however
 * it was reached, so views of other jobs (in later calls too) may use it. Held by the caller, and
 * emptied by it whenever the document changes.
 */
export type SoundViews = Map<string, JobView | undefined>

/** What one walk made of a job: its view, and whether a cycle cut the walk short below it. */
interface Viewed {
  readonly view: JobView | undefined
  readonly cut: boolean
}

/**
 * The view of job `id`. `sound`: views known to be the same whatever the walk (see SoundViews); a
 * chain of thousands of jobs, each waiting for the one before, is then walked once for all of
 * views(), not once per job.
 *
 * `seen`: the views made in this call, by id. A job that several others wait for (two jobs per layer,
 * each waiting for both of the layer below) is viewed once, not once per path to it: the paths grow
 * exponentially with the layers. One call walks the graph in the same order on every peer (the
 * order of the specs' lists), so a view reused here is the same view everywhere. A view no cycle
 * cut short (`cut` false) is the same from any walk: it goes to `sound`, for later calls. One that a
 * cycle cut (only a hostile peer can make one) depends on where the walk came from, so it never
 * leaves its call: every peer computes it the same way, whatever it viewed before.
 *
 * The walk is depth first, with a stack of its own: a chain of thousands of jobs, each waiting for
 * the one before, is as deep as it is long, and would overflow the call stack of a recursive one.
 */
export function viewJob(id: string, read: Reader, sound?: SoundViews): JobView | undefined {
  /** The jobs on the walk's path, from `id` down. */
  const visiting = new Set<string>()
  const seen = new Map<string, Viewed>()
  const lookup = (jid: string): Viewed | undefined =>
    seen.get(jid) ?? (sound?.has(jid) === true ? { view: sound.get(jid), cut: false } : undefined)
  const made = (jid: string, v: Viewed): Viewed => {
    seen.set(jid, v)
    if (!v.cut) sound?.set(jid, v.view)
    return v
  }
  const stack: Frame[] = []
  /** A job's view now (it is not in the document), or undefined: its frame is on the stack. */
  const enter = (jid: string): Viewed | undefined => {
    const job = read(jid)
    if (job === undefined) return made(jid, { view: undefined, cut: false })
    visiting.add(jid)
    const deps = [...job.spec.dependsOn, ...job.spec.sched.taskDeps]
    stack.push({ id: jid, job, deps, got: [], cut: false })
    return undefined
  }
  let result = lookup(id) ?? enter(id)
  while (stack.length > 0) {
    const f = stack.at(-1)!
    if (f.got.length < f.deps.length) {
      const dep = f.deps[f.got.length]!
      // a cycle never resolves: the job on the walk's path counts as not done
      const r = visiting.has(dep) ? { view: undefined, cut: true } : (lookup(dep) ?? enter(dep))
      if (r !== undefined) {
        f.got.push(r.view)
        if (r.cut) f.cut = true
      }
      continue
    }
    stack.pop()
    visiting.delete(f.id)
    const v = made(f.id, { view: viewFrom(f.id, f.job, f.got), cut: f.cut })
    const parent = stack.at(-1)
    if (parent === undefined) {
      result = v
    } else {
      parent.got.push(v.view)
      if (v.cut) parent.cut = true
    }
  }
  return result!.view
}

/** A job on the walk: the views of its dependencies (dependsOn, then taskDeps) as they come. */
interface Frame {
  readonly id: string
  readonly job: ParsedJob
  readonly deps: readonly string[]
  readonly got: (JobView | undefined)[]
  cut: boolean
}

/** A job's view, given the views of its dependencies (`deps`: dependsOn's, then taskDeps'). */
function viewFrom(id: string, job: ParsedJob, deps: readonly (JobView | undefined)[]): JobView {
  const { spec } = job
  const ctl = reduceJobControl(spec, job.control)
  // a dependency removed before it finished never will (a concurrent submit on another peer): say so
  const waitingOn: string[] = []
  spec.dependsOn.forEach((dep, i) => {
    const d = deps[i]
    if (d?.state !== 'DONE') waitingOn.push(d?.removed === true ? `${dep} (removed)` : dep)
  })
  const taskDeps = deps.slice(spec.dependsOn.length)
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
