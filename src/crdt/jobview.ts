// A job's view: its spec, control (hold/cancel/priority), every task's view, state counts, and WAIT
// for tasks whose job depends on a job that is not DONE yet (job-on-job dependencies).

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
import type { JobSpec, JobState } from './schema.ts'

export interface JobView extends JobControl {
  readonly id: string
  readonly spec: JobSpec
  readonly state: JobState
  readonly counts: StateCounts
  readonly tasks: readonly TaskView[]
  /** Dependencies (job ids) not DONE yet; unknown ids count as not done. */
  readonly waitingOn: readonly string[]
  /** Malformed entries in this job's log, ignored. */
  readonly invalid: number
}

type Reader = (id: string) => ParsedJob | undefined

export function viewJob(id: string, read: Reader): JobView | undefined {
  return viewWith(id, read, new Set())
}

function viewWith(id: string, read: Reader, visiting: Set<string>): JobView | undefined {
  const job = read(id)
  if (job === undefined) return undefined
  visiting.add(id)
  const waitingOn = job.spec.dependsOn.filter((dep) => {
    if (visiting.has(dep)) return true // a cycle never resolves: those tasks wait (and show why)
    return viewWith(dep, read, visiting)?.state !== 'DONE'
  })
  visiting.delete(id)
  const ctl = reduceJobControl(job.spec, job.control)
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
  const tasks = job.tasks.map((events, index) => {
    let t = memo.views[index]
    if (t === undefined) {
      t = reduceTask(index, events, job.spec.maxRetries, ctl)
      memo.views[index] = t
    }
    const view: TaskView = waitingOn.length > 0 && t.state === 'QUEUE' ? { ...t, state: 'WAIT' } : t
    counts[view.state]++
    return view
  })
  return {
    id,
    spec: job.spec,
    ...ctl,
    state: jobState(ctl, counts, tasks.length),
    counts,
    tasks,
    waitingOn,
    invalid: job.invalid,
  }
}
