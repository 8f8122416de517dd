// Doc sync's deadlines and sleeps: the shared plumbing (../signals.ts) with doc sync's own errors.

import { abortableSleep, type Linked, linkSignals } from '../signals.ts'
import { SyncAbortedError, SyncTimeoutError } from './errors.ts'

export { TaskSet } from '../signals.ts'
export type Deadline = Linked

export function deadline(timeoutMs: number, ...signals: Array<AbortSignal | undefined>): Deadline {
  return linkSignals(signals, {
    timeoutMs,
    onTimeout: () => new SyncTimeoutError(`sync did not finish within ${timeoutMs} ms`),
    reasonOf: reason,
  })
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts; the timer never outlives either. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return abortableSleep(ms, signal, reason)
}

function reason(s: AbortSignal): Error {
  return s.reason instanceof Error ? s.reason : new SyncAbortedError('aborted', { cause: s.reason })
}
