// The asking side of one request: `have` (sizes of some hashes) and `get` into a partial file from its
// current length. A get ends in one of four outcomes the fetch loop acts on; the bytes written never
// pass the size the header announced, and the header must announce the size the fetch expects.

import type { Stream } from '@libp2p/interface'
import type { PartialBlob } from '../../node/blobs/partial.ts'
import { sinkInto } from '../sink.ts'
import {
  decodeGetHeader,
  decodeHaveAnswer,
  encodeRequest,
  type GetErrorCode,
  type GetHeader,
  type HaveEntry,
  MessageReader,
} from './codec.ts'
import { GRANT_STEP_BYTES, MAX_HEADER_BYTES } from './constants.ts'
import { encodeGrant, GrantQueue } from './credit.ts'
import { BlobTimeoutError, InvalidResponseError, MessageTooLargeError } from './errors.ts'
import { reasonOf, watchdog } from './signals.ts'

export type GetOutcome =
  /** every byte up to the size arrived (the hash is checked by the caller) */
  | { readonly kind: 'done' }
  /** the stream failed or ended early; what arrived is kept, a resume may follow */
  | { readonly kind: 'broken'; readonly error: Error }
  /** the holder answered with an error code */
  | { readonly kind: 'refused'; readonly code: GetErrorCode }
  /** the holder broke the protocol; `tainted` if some of its bytes reached the partial */
  | { readonly kind: 'lied'; readonly error: Error; readonly tainted: boolean }

export async function askHave(
  stream: Stream,
  hashes: readonly string[],
  signal: AbortSignal,
): Promise<HaveEntry[]> {
  const onAbort = (): void => stream.abort(reasonOf(signal))
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    await sinkInto(stream, [encodeRequest({ op: 'have', hashes })], signal)
    const answer = decodeHaveAnswer(
      await new MessageReader(stream.source).readMessage(MAX_HEADER_BYTES),
      hashes.length,
    )
    await stream.close({ signal })
    return answer
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw signal.aborted ? reasonOf(signal) : err
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

export interface GetOptions {
  readonly signal: AbortSignal
  readonly idleTimeoutMs: number
  readonly onBytes: (n: number) => void
  /** Bytes the holder may send ahead of what we wrote (DEFAULT_WINDOW_BYTES). */
  readonly window: number
}

/** Asks for the partial's blob from its current length and appends what arrives. */
export async function getInto(stream: Stream, partial: PartialBlob, opts: GetOptions): Promise<GetOutcome> {
  const { signal } = opts
  const offset = partial.length
  const want = partial.size - offset
  let got = 0
  let diskError: unknown
  const onAbort = (): void => stream.abort(reasonOf(signal))
  signal.addEventListener('abort', onAbort, { once: true })
  const dog = watchdog(opts.idleTimeoutMs, () => stream.abort(new BlobTimeoutError('download stalled')))
  const lied = (error: Error): GetOutcome => {
    stream.abort(error)
    return { kind: 'lied', error, tainted: got > 0 }
  }
  // our side of the stream stays open for grants: the holder sends only what we have room for
  const grants = new GrantQueue()
  grants.push(encodeRequest({ op: 'get', hash: partial.hash, offset, window: opts.window }))
  // not awaited: after a reset libp2p's sink may never settle (../sink.ts); ending the queue is all it needs
  void stream.sink(grants).catch(() => undefined)
  let ungranted = 0
  try {
    const reader = new MessageReader(stream.source)
    let header: GetHeader
    try {
      header = decodeGetHeader(await reader.readMessage(MAX_HEADER_BYTES))
    } catch (err) {
      if (err instanceof InvalidResponseError || err instanceof MessageTooLargeError) return lied(err)
      throw err
    }
    dog.touch()
    if ('error' in header) return { kind: 'refused', code: header.error }
    if (header.size !== partial.size) {
      return lied(
        new InvalidResponseError(`holder announced ${header.size} bytes, the blob has ${partial.size}`),
      )
    }
    for await (const buf of reader.rest()) {
      dog.touch()
      if (got + buf.byteLength > want) {
        return lied(new InvalidResponseError(`holder sent more than the ${header.size} bytes it announced`))
      }
      try {
        await partial.write(buf)
      } catch (err) {
        diskError = err
        throw err
      }
      got += buf.byteLength
      opts.onBytes(buf.byteLength)
      ungranted += buf.byteLength
      if (got === want) grants.end()
      else if (ungranted >= GRANT_STEP_BYTES) {
        grants.push(encodeGrant(ungranted))
        ungranted = 0
      }
    }
    if (got < want)
      return { kind: 'broken', error: new InvalidResponseError(`stream ended after ${got} of ${want} bytes`) }
    return { kind: 'done' }
  } catch (err) {
    const error = signal.aborted ? reasonOf(signal) : err instanceof Error ? err : new Error(String(err))
    stream.abort(error)
    if (signal.aborted || diskError !== undefined) throw error
    return { kind: 'broken', error }
  } finally {
    grants.end()
    dog.stop()
    signal.removeEventListener('abort', onAbort)
  }
}
