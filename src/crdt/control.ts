// The user's verbs on a job, as events: hold, resume, cancel, retry, priority, release, remove. Any
// peer may say them; the reducer orders them by Lamport clock, so the last one said (as peers saw it)
// wins everywhere. A remove is for good, whatever is said before or after it.

import type { FarmDoc, NewTaskEvent } from './farmdoc.ts'
import { LOCAL } from './origins.ts'
import { LIMITS } from './schema.ts'

export const JOB_ACTIONS = ['hold', 'resume', 'cancel', 'retry', 'priority', 'release', 'remove'] as const
export type JobAction = (typeof JOB_ACTIONS)[number]

export class InvalidActionError extends Error {
  static override readonly name = 'InvalidActionError'
  override readonly name = 'InvalidActionError'
}

export function isJobAction(x: string): x is JobAction {
  return (JOB_ACTIONS as readonly string[]).includes(x)
}

/** Applies `action` to job `id` (full id); returns a one-line account of what changed. */
export function applyJobAction(farm: FarmDoc, id: string, action: JobAction, value?: number): string {
  const view = farm.view(id)
  if (view === undefined) throw new InvalidActionError(`no job ${id}`)
  switch (action) {
    case 'priority': {
      if (value === undefined || !Number.isSafeInteger(value) || Math.abs(value) > LIMITS.priority) {
        throw new InvalidActionError(
          `priority must be an integer between -${LIMITS.priority} and ${LIMITS.priority}`,
        )
      }
      farm.appendJobEvent(id, 'priority', value)
      return `priority of ${id} set to ${value}`
    }
    case 'release':
      if (!view.spec.sched.manual && view.spec.sched.waitFile === null) {
        throw new InvalidActionError(`job ${id} waits for no release`)
      }
      if (view.released) throw new InvalidActionError(`job ${id} was released already`)
      farm.appendJobEvent(id, 'release')
      return `${id}: released`
    case 'hold':
    case 'resume':
    case 'cancel':
      if (view.state === 'DONE') throw new InvalidActionError(`job ${id} is DONE: nothing to ${action}`)
      farm.appendJobEvent(id, action)
      return `${id}: ${action}`
    case 'remove': {
      // a job that may still run and needs this one (waits for it, or takes its outputs) would be
      // stranded: FAIL and CANCEL count too, a retry brings them back
      const needs = farm
        .views()
        .filter(
          (v) =>
            v.id !== id &&
            v.state !== 'DONE' &&
            (v.spec.dependsOn.includes(id) ||
              v.spec.inputsFrom.includes(id) ||
              v.spec.sched.taskDeps.includes(id)),
        )
        .map((v) => v.id)
      if (needs.length > 0) {
        throw new InvalidActionError(`job ${id} is needed by ${needs.join(', ')}: remove that first`)
      }
      farm.appendJobEvent(id, 'remove')
      return `${id}: removed; what runs of it stops, and its files leave every peer's store at its next clean-up`
    }
    case 'retry': {
      // what did not finish runs again: failed tasks, and cancelled ones (the job's cancel hides the
      // failed ones under CANCEL: a retry brings them back too)
      const again: NewTaskEvent[] = view.tasks
        .filter((t) => t.state === 'FAIL' || t.state === 'CANCEL')
        .map((t) => ({ kind: 'requeue', task: t.index, attempt: t.attempt, reason: 'retry' }))
      if (again.length === 0 && !view.cancelled) {
        throw new InvalidActionError(`job ${id} has no failed or cancelled tasks to retry`)
      }
      farm.doc.transact(() => {
        if (view.cancelled) farm.appendJobEvent(id, 'retry')
        if (again.length > 0) farm.appendTaskEvents(id, again)
      }, LOCAL)
      return `${id}: ${again.length} task(s) requeued${view.cancelled ? ', job no longer cancelled' : ''}`
    }
  }
}
