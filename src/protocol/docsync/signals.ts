// One AbortSignal per operation (the caller's, the service's shutdown and a default timeout combined,
// released by `clear()` in `finally`), an abortable sleep, and the set of a service's background tasks.

import { setMaxListeners } from 'node:events'
import { SyncAbortedError, SyncTimeoutError } from './errors.ts'

export interface Deadline {
  readonly signal: AbortSignal
  clear(): void
}

export function deadline(timeoutMs: number, ...signals: Array<AbortSignal | undefined>): Deadline {
  const controller = new AbortController()
  setMaxListeners(Infinity, controller.signal)
  const timer = setTimeout(() => {
    controller.abort(new SyncTimeoutError(`sync did not finish within ${timeoutMs} ms`))
  }, timeoutMs)
  const listeners: Array<[AbortSignal, () => void]> = []
  for (const s of signals) {
    if (s == null) continue
    if (s.aborted) {
      controller.abort(reason(s))
      break
    }
    const onAbort = (): void => controller.abort(reason(s))
    s.addEventListener('abort', onAbort, { once: true })
    listeners.push([s, onAbort])
  }
  return {
    signal: controller.signal,
    clear() {
      clearTimeout(timer)
      for (const [s, fn] of listeners) s.removeEventListener('abort', fn)
    },
  }
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts; the timer never outlives either. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(reason(signal))
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(reason(signal))
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

function reason(s: AbortSignal): Error {
  return s.reason instanceof Error ? s.reason : new SyncAbortedError('aborted', { cause: s.reason })
}

/** Background work of a service: tracked so stop() (and tests) can wait for it to settle. */
export class TaskSet {
  readonly #tasks = new Set<Promise<unknown>>()

  track<T>(task: Promise<T>): Promise<T> {
    this.#tasks.add(task)
    const untrack = (): void => {
      this.#tasks.delete(task)
    }
    task.then(untrack, untrack)
    return task
  }

  /** Waits for the work running now (not for work it starts later). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#tasks])
  }
}
