// What a node answers to one log request, as items (the server frames them, a local tail yields them),
// and the small signal helpers both sides use.

import { type Linked, linkSignals } from '../signals.ts'
import type { Answer } from './codec.ts'
import { describeRef } from './codec.ts'
import { PAGE_LINES } from './constants.ts'
import { LogRequestRefusedError, UnknownAttemptError } from './errors.ts'
import type { AttemptStatus, LogRequest, LogSource } from './types.ts'

/**
 * Lines from `req.from` in pages of PAGE_LINES, then an END (or an ERROR item). The source is pulled
 * only as fast as the consumer takes items, so a slow reader holds one page, never a backlog.
 * Returns without an END when `signal` aborts (the reader left, or the node stops).
 */
export async function* answer(
  source: LogSource,
  req: LogRequest,
  signal: AbortSignal,
): AsyncGenerator<Answer> {
  const unknown = {
    type: 'error',
    error: 'unknown-attempt',
    message: `no log of ${describeRef(req)} here`,
  } as const
  try {
    const before = await source.status(req)
    if (before === undefined) {
      yield unknown
      return
    }
    // a follow with nothing to send yet says at once that it was accepted (the asker's first-frame timeout)
    if (req.follow && before.end === undefined && before.lines <= req.from) yield { type: 'lines', lines: [] }
    let next = req.from
    let status: AttemptStatus | undefined
    let passes = 0
    // a second pass only when the attempt ended, with more lines, between the last page and the status
    do {
      passes++
      const options = { from: next, follow: req.follow, limit: PAGE_LINES, signal }
      for await (const page of source.pages(req, options)) {
        next = (page.at(-1)?.seq ?? next - 1) + 1
        yield { type: 'lines', lines: page }
      }
      if (signal.aborted) return
      status = await source.status(req)
      if (status === undefined) {
        yield unknown
        return
      }
    } while (status.end !== undefined && status.lines > next && passes < 2)
    const e = status.end
    if (e === undefined) {
      yield { type: 'end', end: { end: true, finished: false } }
      return
    }
    const end = { end: true, finished: true, ok: e.ok } as const
    yield { type: 'end', end: e.reason === undefined ? end : { ...end, reason: e.reason } }
  } catch (err) {
    if ((err as Error | undefined)?.name === 'UnknownAttemptError') yield unknown
    else if (signal.aborted) return
    else
      yield { type: 'error', error: 'unavailable', message: `the log store failed (${(err as Error).name})` }
  }
}

/** The error a refusal stands for on the asking side. */
export function refusal(a: Extract<Answer, { type: 'error' }>): Error {
  const message = a.message ?? a.error
  return a.error === 'unknown-attempt'
    ? new UnknownAttemptError(message)
    : new LogRequestRefusedError(a.error, `peer refused the log request (${a.error}): ${message}`)
}

export type { Linked } from '../signals.ts'

/** One signal that aborts when any of `signals` does; `clear()` in `finally` drops the listeners. */
export function linked(...signals: Array<AbortSignal | undefined>): Linked {
  return linkSignals(signals)
}

/** Resolves true when `event` settles first, false when `signal` aborts first (listener removed either way). */
export async function untilOrAbort(event: Promise<void>, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal === undefined) return event.then(() => true)
  if (signal.aborted) return false
  let onAbort = (): void => {}
  const aborted = new Promise<false>((resolve) => {
    onAbort = () => resolve(false)
  })
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([event.then(() => true), aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
