// The asking side of one request: `have` (sizes of some hashes), `get-many` (several small blobs at
// once, each checked against its hash) and `get` into a partial file from its current length. A get
// ends in one of four outcomes the fetch loop acts on; the bytes written never pass the size the header
// announced, and the header must announce the size the fetch expects.

import type { Stream } from '@libp2p/interface'
import { sha256Hex } from '../../node/blobs/hash.ts'
import type { PartialBlob } from '../../node/blobs/partial.ts'
import { sinkInto } from '../sink.ts'
import {
  decodeGetHeader,
  decodeHaveAnswer,
  decodeManyHeader,
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

export interface ManyOutcome {
  /** The blobs that came, each one's bytes hashing to its name. */
  readonly blobs: Map<string, Uint8Array>
  /**
   * Why the answer ended short: the stream broke, or the holder broke the protocol (a bad header, a
   * size it should not have, bytes that do not hash to their name).
   */
  readonly error?: Error
}

/**
 * Asks for several small blobs on one stream. `sizes`: what each should weigh, when known; a holder
 * announcing another size lies. What the holder did not send is for the caller to fetch otherwise.
 */
export async function askMany(
  stream: Stream,
  hashes: readonly string[],
  sizes: readonly (number | undefined)[],
  opts: { readonly signal: AbortSignal; readonly idleTimeoutMs: number },
): Promise<ManyOutcome> {
  const { signal } = opts
  const blobs = new Map<string, Uint8Array>()
  const onAbort = (): void => stream.abort(reasonOf(signal))
  signal.addEventListener('abort', onAbort, { once: true })
  const dog = watchdog(opts.idleTimeoutMs, () => stream.abort(new BlobTimeoutError('download stalled')))
  const cut = (error: Error): ManyOutcome => {
    stream.abort(error)
    return { blobs, error }
  }
  try {
    await sinkInto(stream, [encodeRequest({ op: 'get-many', hashes })], signal)
    await stream.closeWrite({ signal })
    const reader = new MessageReader(stream.source)
    let announced: number[]
    try {
      announced = decodeManyHeader(await reader.readMessage(MAX_HEADER_BYTES), hashes.length)
    } catch (err) {
      if (err instanceof InvalidResponseError || err instanceof MessageTooLargeError) return cut(err)
      throw err
    }
    for (const [i, n] of announced.entries()) {
      const want = sizes[i]
      if (n >= 0 && want !== undefined && n !== want) {
        return cut(new InvalidResponseError(`holder announced ${n} bytes for a blob of ${want}`))
      }
    }
    const order = hashes.flatMap((hash, i) => (announced[i]! >= 0 ? [{ hash, size: announced[i]! }] : []))
    let at = 0
    let parts: Uint8Array[] = []
    let have = 0
    const settle = (): Error | undefined => {
      // every blob whose bytes are all in: checked against its name and handed over
      while (at < order.length && have >= order[at]!.size) {
        const { hash, size } = order[at]!
        const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
        const bytes = all.subarray(0, size)
        if (sha256Hex(bytes) !== hash)
          return new InvalidResponseError(`bytes sent for ${hash} do not hash to it`)
        blobs.set(hash, bytes)
        const rest = all.subarray(size)
        parts = rest.byteLength > 0 ? [rest] : []
        have = rest.byteLength
        at++
      }
      return undefined
    }
    const bad = settle() // zero-byte blobs need no bytes
    if (bad !== undefined) return cut(bad)
    for await (const buf of reader.rest()) {
      dog.touch()
      if (at === order.length) return cut(new InvalidResponseError('holder sent more than it announced'))
      parts.push(buf)
      have += buf.byteLength
      const err = settle()
      if (err !== undefined) return cut(err)
    }
    if (at < order.length || have > 0) {
      return cut(new InvalidResponseError(`stream ended with ${order.length - at} announced blob(s) missing`))
    }
    return { blobs }
  } catch (err) {
    const error = signal.aborted ? reasonOf(signal) : err instanceof Error ? err : new Error(String(err))
    stream.abort(error)
    if (signal.aborted) throw error
    return { blobs, error }
  } finally {
    dog.stop()
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
