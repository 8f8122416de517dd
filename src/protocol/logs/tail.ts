// The asking side of one log stream: send the request, keep our write side open while we listen (its
// end tells the server we left), and turn frames into lines and the final END, or a named error.

import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { answer, linked, refusal } from './answer.ts'
import { decodeAnswer, encodeRequest } from './codec.ts'
import { CLOSE_TIMEOUT_MS, MAX_FRAME_BYTES } from './constants.ts'
import { InvalidLogFrameError, LogTailAbortedError, UnexpectedLogEndError } from './errors.ts'
import type { LogEnd, LogLine, LogRequest, LogSource } from './types.ts'

/** Reads one request's answer from `stream`; aborts the stream when `signal` does or the caller stops reading. */
export async function* tailStream(
  stream: Stream,
  req: LogRequest,
  signal: AbortSignal,
  firstFrameTimeoutMs: number,
): AsyncGenerator<LogLine | LogEnd> {
  const request = encodeRequest(req)
  let release = (): void => {}
  const leave = new Promise<void>((resolve) => {
    release = resolve
  })
  void pipe(
    (async function* () {
      yield request
      await leave
    })(),
    (s) => lp.encode(s),
    stream.sink,
  ).catch(() => {}) // a failed write shows up on the read side too
  const timeout = new AbortController()
  const timer = setTimeout(() => {
    timeout.abort(new LogTailAbortedError(`the peer did not answer within ${firstFrameTimeoutMs} ms`))
  }, firstFrameTimeoutMs)
  const link = linked(signal, timeout.signal)
  const onAbort = (): void => stream.abort(reason(link.signal))
  link.signal.addEventListener('abort', onAbort, { once: true })
  let finished = false
  try {
    for await (const bytes of lp.decode(stream.source, { maxDataLength: MAX_FRAME_BYTES })) {
      clearTimeout(timer)
      const a = decodeAnswer(bytes)
      if (a.type === 'error') throw refusal(a)
      if (a.type === 'lines') {
        yield* a.lines
        continue
      }
      finished = true
      yield a.end
      return
    }
    throw new UnexpectedLogEndError('the peer closed the log stream before its end frame')
  } catch (err) {
    if (link.signal.aborted) throw reason(link.signal)
    const name = (err as Error | undefined)?.name
    if (name === 'InvalidDataLengthError') {
      throw new InvalidLogFrameError(`a log frame over ${MAX_FRAME_BYTES} bytes`, { cause: err })
    }
    if (name === 'StreamResetError' || name === 'StreamStateError') {
      throw new UnexpectedLogEndError('the peer reset the log stream', { cause: err })
    }
    throw err
  } finally {
    clearTimeout(timer)
    link.signal.removeEventListener('abort', onAbort)
    link.clear()
    release()
    if (finished) {
      await stream
        .close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT_MS) })
        .catch(() => stream.abort(new LogTailAbortedError('closing the log stream timed out')))
    } else {
      stream.abort(new LogTailAbortedError('the reader stopped'))
    }
  }
}

/** The same answer from this node's own store, without a stream. */
export async function* tailLocal(
  source: LogSource,
  req: LogRequest,
  signal: AbortSignal,
): AsyncGenerator<LogLine | LogEnd> {
  for await (const a of answer(source, req, signal)) {
    if (a.type === 'error') throw refusal(a)
    if (a.type === 'lines') yield* a.lines
    else yield a.end
  }
  if (signal.aborted) throw reason(signal)
}

function reason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new LogTailAbortedError('aborted', { cause: signal.reason })
}
