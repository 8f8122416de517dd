// Writing into a libp2p stream without waiting forever. libp2p 2.x hands out a negotiated stream whose
// `sink` is it-byte-stream's wrapper around the muxer's own sink. When the stream's write side is
// closed while that wrapper still has something to hand over (a connection closing gracefully closes
// every stream on it: the peer left, or this node is stopping), the muxer's sink returns without an
// error and the wrapper waits for a reader that is gone: its promise never settles. A doc sync whose
// last step was waiting for the peer's close hung a node's stop that way (test/node/farm.test.ts,
// the split farm, about one run in forty on a loaded machine).

import type { Stream } from '@libp2p/interface'

/** How often a pending write looks at the stream's write side. */
const POLL_MS = 100

/** The stream's write side closed before everything was handed to it. */
export class StreamClosedError extends Error {
  static override readonly name = 'StreamClosedError'
  override readonly name = 'StreamClosedError'
}

/** What a stream's sink takes: Uint8Array or the Uint8ArrayList of libp2p's own version. */
type Chunk = Parameters<Stream['sink']>[0] extends AsyncIterable<infer T> | Iterable<infer T> ? T : never

/**
 * Writes `source` into `stream`. Resolves when the stream's sink does, or when the whole source was
 * handed over and the write side has closed meanwhile (the wrapper above would never resolve); rejects
 * with StreamClosedError when the write side closed with some of the source still unsent, and with the
 * signal's reason when `signal` aborts. The stream is not closed or aborted here: callers do that.
 */
export function sinkInto(
  stream: Stream,
  source: Iterable<Chunk> | AsyncIterable<Chunk>,
  signal?: AbortSignal,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason)
  let exhausted = false
  const tracked = (async function* () {
    yield* source
    exhausted = true
  })()
  const writing = stream.sink(tracked)
  return new Promise<void>((resolve, reject) => {
    // closed and still pending at two polls in a row: the sink is not going to settle
    let closedBefore = false
    const poll = setInterval(() => {
      const closed =
        stream.writeStatus === 'closed' || stream.status === 'aborted' || stream.status === 'reset'
      if (closed && closedBefore) {
        if (exhausted) finish()
        else
          finish(
            new StreamClosedError(
              `the stream's write side closed (${stream.status}) before everything was sent`,
            ),
          )
      }
      closedBefore = closed
    }, POLL_MS)
    const onAbort = (): void => finish(signal?.reason ?? new Error('aborted'))
    signal?.addEventListener('abort', onAbort, { once: true })
    function finish(err?: unknown): void {
      clearInterval(poll)
      signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    writing.then(
      () => finish(),
      (err: unknown) => finish(err ?? new Error('the stream sink failed')),
    )
  })
}
