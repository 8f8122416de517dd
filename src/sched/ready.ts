// The head of the ready queue, as the auction takes it: tasks that may start (dependencies met, job
// neither held, cancelled nor failed), highest priority first, then oldest job, then task order, each
// with its estimated work and the job's requirements, policy, license, blocklist and failed hosts.

import { atTime, framesIn, type JobView } from '../crdt/jobview.ts'
import type { SchedTask } from './types.ts'

/** Work units per frame assumed before a job has finished any task. */
export const DEFAULT_WORK_PER_FRAME = 1

export function runnableJobs(views: readonly JobView[], nowMs: number): JobView[] {
  return views
    .map((v) => atTime(v, nowMs))
    .filter((j) => !j.held && !j.cancelled && !j.frozen && j.state !== 'FAIL' && j.counts.QUEUE > 0)
    .sort(
      (a, b) =>
        b.priority - a.priority ||
        a.spec.submittedAt - b.spec.submittedAt ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    )
}

export interface ReadyQueue {
  readonly tasks: SchedTask[]
  /** Estimated work of every ready task, the head and the rest (for SchedInput.drainIn). */
  readonly queuedWork: number
}

/** At most `limit` ready tasks, with their estimated work. */
export function readyQueue(views: readonly JobView[], nowMs: number, limit: number): ReadyQueue {
  const tasks: SchedTask[] = []
  let queuedWork = 0
  for (const j of runnableJobs(views, nowMs)) {
    const perFrame = j.workPerFrame ?? DEFAULT_WORK_PER_FRAME
    // the job's ready tasks, counted as its first task's frames each (chunks are equal but the last)
    queuedWork += j.counts.QUEUE * perFrame * framesIn(j.spec, 0)
    if (tasks.length >= limit) continue
    const sdPerFrame = j.workPerFrameSd
    const { sched } = j.spec
    const requires = { app: j.spec.app, ...sched.requires }
    const excluded = new Set(j.blocklist)
    for (const t of j.tasks) {
      if (tasks.length >= limit) break
      if (t.state !== 'QUEUE') continue
      const frames = framesIn(j.spec, t.index)
      tasks.push({
        key: `${j.id}/${t.index}`,
        job: j.id,
        work: perFrame * frames,
        ...(sdPerFrame === null ? {} : { workSd: sdPerFrame * frames }),
        requires,
        policy: sched.policy,
        license: sched.license,
        excluded,
        avoid: new Set(t.failedPeers),
      })
    }
  }
  return { tasks, queuedWork }
}

/** Seats free now per license: the farm's seats less the attempts holding one (CLAIM or RUN). */
export function freeSeats(
  views: readonly JobView[],
  seats: ReadonlyMap<string, number>,
): Map<string, number> {
  const free = new Map(seats)
  for (const j of views) {
    const lic = j.spec.sched.license
    if (lic === null) continue
    const held = j.counts.CLAIM + j.counts.RUN
    free.set(lic, (free.get(lic) ?? 0) - held)
  }
  return free
}
