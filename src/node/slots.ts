// The slot arithmetic of a node's Task Dispatcher (dispatcher.ts), as pure functions of its runs and
// claims: which runs hold a slot, when each slot frees, which slots may take a claim now, and how a
// run is announced in the heartbeat.

import type { RunningTask } from '../protocol/heartbeat/index.ts'
import type { TaskProgress } from './taskrun.ts'

/** A run of a task on this node, as its slot sees it. */
export interface SlotRun {
  readonly job: string
  readonly task: number
  readonly attempt: number
  readonly startedAt: number
  readonly expectedSeconds: number
  progress: TaskProgress | undefined
  /** A task claimed ahead behind this one waited too long for it: claim nothing more ahead of it. */
  noClaimAhead?: boolean
  /** When its processes had all exited (Execute's `released`): it holds no slot any more. */
  releasedAt?: number
}

export interface SlotTimes {
  /** Seconds until each slot is free (0: free now). */
  readonly freeIn: number[]
  /** The free times of the slots that may take a claim now. */
  readonly soon: number[]
}

/**
 * The runs that hold a slot: all but those whose processes have exited (only publishing is left),
 * of which at most `slots` at a time: past that (outputs stored slower than they are rendered),
 * each one more holds a slot until it is done, rather than a work directory piling up per task.
 */
export function holdingSlots<R extends SlotRun>(runs: Iterable<R>, slots: number): R[] {
  const all = [...runs]
  const holding = all.filter((r) => r.releasedAt === undefined)
  const publishing = all.filter((r) => r.releasedAt !== undefined)
  return publishing.length > slots ? [...holding, ...publishing.slice(slots)] : holding
}

/**
 * Seconds until each slot is free: 0 for a free one, the estimate's remainder for a busy one
 * (never 0: it runs; past its estimate it counts as ending now), and a claim not started yet
 * queued on the slot that frees first. `soon`: the free times of the slots that may take a claim
 * now, being free, or busy with a task within claimAheadMs of its estimated end (not past it: then
 * nobody knows when it ends) or that reported all its progress (only its exit and last publish are
 * left). `holding`: the runs that hold a slot (holdingSlots).
 */
export function slotTimes(
  holding: readonly SlotRun[],
  claims: Iterable<{ readonly expectedSeconds: number }>,
  opts: { readonly slots: number; readonly claimAheadMs: number; readonly now: number },
): SlotTimes {
  const slots = holding.map((r) => {
    const left = r.expectedSeconds - (opts.now - r.startedAt) / 1000
    const ending = (r.progress?.fraction ?? 0) >= 1
    // "queued" also stands for a slot that must take no claim ahead
    return { freeIn: Math.max(0.001, left), overrun: left <= 0, ending, queued: r.noClaimAhead === true }
  })
  while (slots.length < opts.slots) slots.push({ freeIn: 0, overrun: false, ending: false, queued: false })
  for (const c of claims) {
    const first = slots.reduce((a, b) => (b.freeIn < a.freeIn ? b : a))
    first.freeIn = Math.max(0.001, first.freeIn + c.expectedSeconds)
    first.queued = true
  }
  const ahead = opts.claimAheadMs / 1000
  const soon = (x: (typeof slots)[number]) =>
    x.freeIn === 0 || (ahead > 0 && !x.queued && (x.ending || (x.freeIn <= ahead && !x.overrun)))
  return { freeIn: slots.map((x) => x.freeIn), soon: slots.filter(soon).map((x) => x.freeIn) }
}

/** A run as the heartbeat announces it, `now` being the node's monotonic clock. */
export function runningTask(r: SlotRun, now: number): RunningTask {
  return {
    job: r.job,
    task: r.task,
    attempt: r.attempt,
    startedMsAgo: Math.max(0, Math.round(now - r.startedAt)),
    expectedMs: Math.round(r.expectedSeconds * 1000),
    ...(r.progress === undefined
      ? {}
      : {
          progress: Math.round(Math.min(1, Math.max(0, r.progress.fraction)) * 1000) / 1000,
          ...(r.progress.frame === undefined ? {} : { frame: r.progress.frame }),
        }),
  }
}
