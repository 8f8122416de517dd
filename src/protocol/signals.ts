// Signal plumbing the stream protocols share (doc sync, blobs, logs): one AbortSignal per operation
// that aborts when any of its sources does or when its time is up, released by `clear()` in
// `finally`; an abortable sleep; and the set of a service's background tasks. Each protocol says which
// of its named errors a timeout or an abort becomes.

import { setMaxListeners } from 'node:events'

export interface Linked {
  readonly signal: AbortSignal
  clear(): void
}

export interface LinkOptions {
  /** Abort after this long with `onTimeout()` (absent: no time limit). */
  readonly timeoutMs?: number | undefined
  readonly onTimeout?: () => Error
  /** What the linked signal aborts with when a source does (default: the source's own reason). */
  readonly reasonOf?: (s: AbortSignal) => unknown
}

/** One signal that aborts when any of `signals` does, or when `timeoutMs` has passed. */
export function linkSignals(signals: ReadonlyArray<AbortSignal | undefined>, opts: LinkOptions = {}): Linked {
  const reasonOf = opts.reasonOf ?? ((s: AbortSignal) => s.reason)
  const controller = new AbortController()
  setMaxListeners(Infinity, controller.signal)
  const timer =
    opts.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(opts.onTimeout?.()), opts.timeoutMs)
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

/** Resolves after `ms`, or rejects with `reasonOf(signal)` as soon as it aborts; the timer never outlives either. */
export function abortableSleep(
  ms: number,
  signal: AbortSignal,
  reasonOf: (s: AbortSignal) => Error,
): Promise<void> {
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

  /** Waits for the work running now (not for work it starts later). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#tasks])
  }

  /** Waits until no work is left, including work that running work starts meanwhile. */
  async drained(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks])
  }
}
