// One AbortSignal per operation (the caller's, the service's shutdown and a timeout combined, released
// by `clear()`), an abortable sleep, an idle watchdog for transfers, and the service's background tasks.

import { setMaxListeners } from 'node:events'
import { BlobAbortedError, BlobTimeoutError } from './errors.ts'

export interface Deadline {
  readonly signal: AbortSignal
  clear(): void
}

/** Aborts on any of `signals`, or after `timeoutMs` (if given) with a BlobTimeoutError saying `what`. */
export function deadline(
  timeoutMs: number | undefined,
  what: string,
  ...signals: Array<AbortSignal | undefined>
): Deadline {
  const controller = new AbortController()
  setMaxListeners(Infinity, controller.signal)
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(
          () => controller.abort(new BlobTimeoutError(`${what}: no answer within ${timeoutMs} ms`)),
          timeoutMs,
        )
  const listeners: Array<[AbortSignal, () => void]> = []
  for (const s of signals) {
    if (s == null) continue
    if (s.aborted) {
      controller.abort(reasonOf(s))
      break
    }
    const onAbort = (): void => controller.abort(reasonOf(s))
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

/** Calls `onIdle` if `touch()` is not called for `ms`; `stop()` ends it. */
export function watchdog(ms: number, onIdle: () => void): { touch(): void; stop(): void } {
  let last = Date.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const arm = (wait: number): void => {
    timer = setTimeout(() => {
      const idle = Date.now() - last
      if (idle >= ms) onIdle()
      else arm(ms - idle)
    }, wait)
  }
  arm(ms)
  return {
    touch() {
      last = Date.now()
    },
    stop() {
      clearTimeout(timer)
    },
  }
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(reasonOf(signal))
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(reasonOf(signal))
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** Rejects when `signal` aborts (clearing the signal's source drops the listener with it). */
export function abortedPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(reasonOf(signal))
    if (signal.aborted) fail()
    else signal.addEventListener('abort', fail, { once: true })
  })
}

export function reasonOf(s: AbortSignal): Error {
  return s.reason instanceof Error ? s.reason : new BlobAbortedError('aborted', { cause: s.reason })
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

  get size(): number {
    return this.#tasks.size
  }

  async settled(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks])
  }
}
