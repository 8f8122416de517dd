// What the document says of tasks held by a host that no longer runs them: read on every dispatcher
// pass (dispatcher.ts, step 3), and why a run on this node stops although nobody stopped the node.
// Pure functions of the views and of what this node runs: the dispatcher records what they return.

import type { NewTaskEvent } from '../crdt/farmdoc.ts'
import type { JobView } from '../crdt/jobview.ts'
import type { TaskView } from '../crdt/reducer.ts'
import type { Liveness } from '../protocol/heartbeat/index.ts'

/** A task's key in the dispatcher's maps: job id and task index. */
export const keyOf = (job: string, task: number): string => `${job}/${task}`

export interface OrphanScan {
  /** This peer. */
  readonly me: string
  /** Whether this node runs, has claimed, or records the end of the task `key` (its attempt is not lost). */
  readonly here: (key: string) => boolean
  readonly liveness: (peer: string) => Liveness | 'unknown'
  /** How long this node has been up, and after how long a holder never heard from counts as dead. */
  readonly up: number
  readonly deadAfterMs: number
  /** Whether this node hears any other host (one that hears nobody condemns no one). */
  readonly hearsOthers: boolean
  readonly log: (format: string, ...args: unknown[]) => void
}

/**
 * Attempts held by this peer that nothing here runs (crash, restart, hold, cancel): handed back.
 * Attempts held by a dead peer: requeued (idempotent; bumps the attempt, fencing a late result).
 * Calls `add` with each requeue, in the views' order.
 */
export function orphanRequeues(
  views: readonly JobView[],
  scan: OrphanScan,
  add: (job: string, e: NewTaskEvent) => void,
): void {
  for (const job of views) {
    // a frozen job takes no events (FarmDoc refuses them): nothing to requeue there
    if (job.frozen) continue
    // only these states can hide an attempt someone holds (HOLD and CANCEL overlay CLAIM/RUN)
    if (job.counts.CLAIM + job.counts.RUN + job.counts.HOLD + job.counts.CANCEL === 0) continue
    for (const t of job.tasks) {
      if ((t.base !== 'CLAIM' && t.base !== 'RUN') || t.owner === null) continue
      const key = keyOf(job.id, t.index)
      if (t.owner === scan.me) {
        if (!scan.here(key))
          add(job.id, { kind: 'requeue', task: t.index, attempt: t.attempt, reason: 'lost' })
      } else {
        // never heard of: dead only once this node has been up that long AND hears other hosts
        // (a node that hears nobody, just started or cut off, condemns no one it cannot hear)
        const l = scan.liveness(t.owner)
        if (l === 'dead' || (l === 'unknown' && scan.up >= scan.deadAfterMs && scan.hearsOthers)) {
          scan.log('requeue %s: holder %s is %s', key, t.owner, l)
          add(job.id, { kind: 'requeue', task: t.index, attempt: t.attempt, reason: 'dead' })
        }
      }
    }
  }
}

/** Why a run here stops although nobody stopped this node: what the document says of its task now. */
export function lostBecause(
  v: TaskView | undefined,
  attempt: number,
  me: string,
  job: { held: boolean; cancelled: boolean } | undefined,
): string {
  if (v === undefined) return 'the job was removed'
  if (v.state === 'CANCEL') return job?.cancelled ? 'the job was cancelled' : 'the task was cancelled'
  if (v.state === 'HOLD') return job?.held ? 'the job was put on hold' : 'the task was put on hold'
  if (v.attempt !== attempt) return `the task was requeued (attempt ${v.attempt})`
  if (v.owner !== me) return 'the task went to another host'
  return `the task is ${v.state}`
}
