// The serving side of one log stream: read and check the request, answer it from the node's store,
// and stop as soon as the reader leaves (it keeps its write side open while it listens).

import type { Logger, Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { sinkInto } from '../sink.ts'
import { answer, linked } from './answer.ts'
import { type Answer, decodeRequest, encodeEnd, encodeError, encodeLines } from './codec.ts'
import {
  CLOSE_TIMEOUT_MS,
  LINES_FRAME_TARGET_BYTES,
  MAX_FRAME_BYTES,
  MAX_REQUEST_BYTES,
} from './constants.ts'
import { LogTailAbortedError } from './errors.ts'
import type { LogSource } from './types.ts'

export interface LogStats {
  /** Requests answered with lines and an END (or cut short by the reader). */
  served: number
  /** Requests answered with an ERROR frame (bad-request, unknown-attempt, busy, unavailable). */
  refused: number
  framesSent: number
  linesSent: number
  /** Requests being served now. */
  serving: number
}

export interface ServeContext {
  readonly source: LogSource
  readonly log: Logger
  readonly stats: LogStats
  readonly maxServing: number
  readonly requestTimeoutMs: number
  /** The service's shutdown. */
  readonly signal: AbortSignal
}

export async function serveStream(stream: Stream, ctx: ServeContext): Promise<void> {
  // the node stopping resets the stream at any stage, so stop() never waits on a reader
  const onStop = (): void => stream.abort(new LogTailAbortedError('the log service stopped'))
  ctx.signal.addEventListener('abort', onStop, { once: true })
  try {
    await serve(stream, ctx)
  } finally {
    ctx.signal.removeEventListener('abort', onStop)
  }
}

async function serve(stream: Stream, ctx: ServeContext): Promise<void> {
  const { stats, log } = ctx
  const frames = lp.decode(stream.source, { maxDataLength: MAX_REQUEST_BYTES })
  const timer = setTimeout(() => {
    stream.abort(new LogTailAbortedError(`no log request within ${ctx.requestTimeoutMs} ms`))
  }, ctx.requestTimeoutMs)
  let request: ReturnType<typeof decodeRequest>
  try {
    const first = await frames.next()
    if (first.done === true) throw new LogTailAbortedError('the stream ended before a request')
    request = decodeRequest(first.value)
  } catch (err) {
    if (stream.status !== 'open') return // timed out or reset: nobody to answer
    stats.refused++
    log('refused a malformed log request - %e', err)
    await send(stream, [encodeError('bad-request', (err as Error).message)], log)
    return
  } finally {
    clearTimeout(timer)
  }
  if (stats.serving >= ctx.maxServing) {
    stats.refused++
    await send(stream, [encodeError('busy', `serving ${stats.serving} log requests already`)], log)
    return
  }
  // the reader's end (or reset) of its write side cancels the request; a frame after the request too
  const reader = new AbortController()
  void (async () => {
    try {
      for await (const _ of frames) break
    } catch {
      // a reset: the same outcome as an end
    } finally {
      reader.abort(new LogTailAbortedError('the reader left'))
    }
  })()
  const link = linked(reader.signal, ctx.signal)
  stats.serving++
  let refused = false
  try {
    const items = answer(ctx.source, request, link.signal)
    await send(
      stream,
      toFrames(items, stats, () => (refused = true)),
      log,
      link.signal,
    )
  } finally {
    stats.serving--
    if (refused) stats.refused++
    else stats.served++
    link.clear()
  }
}

async function* toFrames(items: AsyncIterable<Answer>, stats: LogStats, onRefuse: () => void) {
  for await (const item of items) {
    if (item.type === 'error') {
      onRefuse()
      yield encodeError(item.error, item.message)
    } else if (item.type === 'end') {
      yield encodeEnd(item.end)
    } else if (item.lines.length === 0) {
      stats.framesSent++
      yield encodeLines([])
    } else {
      for (const chunk of chunks(item.lines)) {
        stats.framesSent++
        stats.linesSent += chunk.length
        yield encodeLines(chunk)
      }
    }
  }
}

/** Splits a page into LINES frames of about LINES_FRAME_TARGET_BYTES (JSON escaping stays under MAX_FRAME_BYTES). */
function* chunks<T extends { readonly line: string }>(lines: readonly T[]): Generator<T[]> {
  let chunk: T[] = []
  let size = 0
  for (const l of lines) {
    if (chunk.length > 0 && size + l.line.length > LINES_FRAME_TARGET_BYTES) {
      yield chunk
      chunk = []
      size = 0
    }
    chunk.push(l)
    size += l.line.length + 40
  }
  if (chunk.length > 0) yield chunk
}

/**
 * Writes `frames` (pulled as the stream takes them), then closes our side. Stops waiting once `signal`
 * aborts; without a signal (an error answer: one small frame) it gives up after CLOSE_TIMEOUT_MS.
 */
async function send(
  stream: Stream,
  frames: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  log: Logger,
  signal: AbortSignal = AbortSignal.timeout(CLOSE_TIMEOUT_MS),
): Promise<void> {
  try {
    await sinkInto(stream, lp.encode(frames, { maxDataLength: MAX_FRAME_BYTES }), signal)
    await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT_MS) })
  } catch (err) {
    log('a log stream ended early - %e', err)
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}
