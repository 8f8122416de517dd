// One AbortSignal per operation (the caller's, the service's shutdown and a timeout combined, released
// by `clear()`), an abortable sleep, an idle watchdog for transfers, and the service's background tasks.

import { abortableSleep, type Linked, linkSignals } from '../signals.ts'
import { BlobAbortedError, BlobTimeoutError } from './errors.ts'

export { TaskSet } from '../signals.ts'
export type Deadline = Linked

/** Aborts on any of `signals`, or after `timeoutMs` (if given) with a BlobTimeoutError saying `what`. */
export function deadline(
  timeoutMs: number | undefined,
  what: string,
  ...signals: Array<AbortSignal | undefined>
): Deadline {
  return linkSignals(signals, {
    timeoutMs,
    onTimeout: () => new BlobTimeoutError(`${what}: no answer within ${timeoutMs} ms`),
    reasonOf,
  })
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
  return abortableSleep(ms, signal, reasonOf)
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
