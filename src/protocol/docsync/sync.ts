// The doc-sync stream exchange (y-protocols sync step 1/2 over one libp2p stream), one function per
// side. The document is only touched through `accept`, which validates and applies a received update.

import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import * as Y from 'yjs'
import { sinkInto } from '../sink.ts'
import { decodeFrame, decodeStateVector, encodeFrame, type FrameBytes } from './codec.ts'
import { SyncFrameType } from './constants.ts'
import { InvalidMessageError, MessageTooLargeError, SyncAbortedError, UnexpectedEndError } from './errors.ts'

const { STEP1, STEP2 } = SyncFrameType

export interface SyncSession {
  readonly doc: Y.Doc
  /** Bound on every frame, both ways (type byte + payload). */
  readonly maxMessageBytes: number
  /** Validates and applies an update the remote sent; throws InvalidUpdateError to end the exchange. */
  readonly accept: (update: Uint8Array) => void
  /** Aborts the stream when it fires (timeout, shutdown, caller). */
  readonly signal: AbortSignal
}

export interface SyncResult {
  /** Frame bytes written (type byte + payload, without length prefixes). */
  sentBytes: number
  /** Frame bytes read (type byte + payload, without length prefixes). */
  receivedBytes: number
}

interface FrameIO {
  frame(type: SyncFrameType, payload: Uint8Array): Uint8Array
  read(type: SyncFrameType): Promise<Uint8Array>
  end(): Promise<void>
}

/**
 * Initiator: STEP1(my sv) ->, <- STEP2(what I lack), <- STEP1(its sv), STEP2(what it lacks) ->, then
 * wait for the responder to close, which it does only after applying, so a resolved sync means both
 * documents took what the other sent.
 */
export function initiateSync(stream: Stream, session: SyncSession): Promise<SyncResult> {
  const { doc } = session
  return exchange(stream, session, false, async function* (io) {
    yield io.frame(STEP1, Y.encodeStateVector(doc))
    session.accept(await io.read(STEP2))
    const remote = await io.read(STEP1)
    decodeStateVector(remote)
    yield io.frame(STEP2, Y.encodeStateAsUpdate(doc, remote))
    await io.end()
  })
}

/** Responder: <- STEP1(its sv), STEP2(what it lacks) ->, STEP1(my sv) ->, <- STEP2(what I lack), close. */
export function respondSync(stream: Stream, session: SyncSession): Promise<SyncResult> {
  const { doc } = session
  return exchange(stream, session, true, async function* (io) {
    const remote = await io.read(STEP1)
    decodeStateVector(remote)
    yield io.frame(STEP2, Y.encodeStateAsUpdate(doc, remote))
    yield io.frame(STEP1, Y.encodeStateVector(doc))
    session.accept(await io.read(STEP2))
    // returning closes our write side: that is the initiator's signal that we applied its update
  })
}

async function exchange(
  stream: Stream,
  session: SyncSession,
  drainAfter: boolean,
  script: (io: FrameIO) => AsyncGenerator<Uint8Array>,
): Promise<SyncResult> {
  const { signal, maxMessageBytes } = session
  const result: SyncResult = { sentBytes: 0, receivedBytes: 0 }
  const frames = lp.decode(stream.source, { maxDataLength: maxMessageBytes })
  const nextFrame = async (): Promise<IteratorResult<FrameBytes, void>> => {
    try {
      return await frames.next()
    } catch (err) {
      if ((err as Error | undefined)?.name !== 'InvalidDataLengthError') throw err
      throw new MessageTooLargeError(`inbound sync frame over maxSyncMessageBytes (${maxMessageBytes})`, {
        cause: err,
      })
    }
  }
  const io: FrameIO = {
    frame(type, payload) {
      const size = payload.byteLength + 1
      if (size > maxMessageBytes) {
        throw new MessageTooLargeError(
          `sync frame of ${size} bytes is over maxSyncMessageBytes (${maxMessageBytes})`,
        )
      }
      result.sentBytes += size
      return encodeFrame(type, payload)
    },
    async read(type) {
      const next = await nextFrame()
      if (next.done === true) throw new UnexpectedEndError('remote closed the sync stream early')
      result.receivedBytes += next.value.byteLength
      return decodeFrame(next.value, type)
    },
    async end() {
      const next = await nextFrame()
      if (next.done !== true) throw new InvalidMessageError('unexpected frame after the sync exchange')
    },
  }
  const onAbort = (): void => stream.abort(abortReason(signal))
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    signal.throwIfAborted()
    await sinkInto(stream, lp.encode(script(io), { maxDataLength: maxMessageBytes }), signal)
    if (drainAfter) await io.end()
    await stream.close({ signal })
    return result
  } catch (err) {
    const cause = signal.aborted ? abortReason(signal) : toError(err)
    stream.abort(cause)
    throw cause
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new SyncAbortedError('sync aborted', { cause: signal.reason })
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
