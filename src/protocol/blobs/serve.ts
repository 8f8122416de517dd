// The answering side: one request per stream, validated and bounded in size and time; `get` streams
// the file from the requested offset in CHUNK_BYTES reads, pulled by the muxer (so a slow reader holds
// at most its flow-control window here); `have` answers sizes. Never more than the header's size.

import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import type { Logger, PeerId, Stream } from '@libp2p/interface'
import type { BlobStore } from '../../node/blobs/store.ts'
import { type BlobRequest, decodeRequest, encodeMessage, MessageReader } from './codec.ts'
import { CHUNK_BYTES, LARGE_UPLOAD_BYTES, MAX_REQUEST_BYTES } from './constants.ts'
import { BlobTimeoutError, InvalidRequestError } from './errors.ts'
import { deadline, reasonOf, watchdog } from './signals.ts'
import type { BlobStats } from './stats.ts'

export interface ServeContext {
  readonly store: BlobStore
  readonly stats: BlobStats
  readonly log: Logger
  readonly requestTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxUploads: number
  /** Large uploads running now on this node (shared by all streams). */
  readonly uploads: { active: number }
  /** The service's shutdown. */
  readonly signal: AbortSignal
}

export async function serveStream(stream: Stream, peer: PeerId, ctx: ServeContext): Promise<void> {
  const onShutdown = (): void => stream.abort(reasonOf(ctx.signal))
  ctx.signal.addEventListener('abort', onShutdown, { once: true })
  try {
    const req = await readRequest(stream, ctx)
    if (req === undefined) return
    if (req.op === 'have') await answerHave(stream, req.hashes, ctx)
    else await answerGet(stream, req.hash, req.offset, peer, ctx)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  } finally {
    ctx.signal.removeEventListener('abort', onShutdown)
  }
}

async function readRequest(stream: Stream, ctx: ServeContext): Promise<BlobRequest | undefined> {
  const d = deadline(ctx.requestTimeoutMs, 'blob request', ctx.signal)
  const onAbort = (): void => stream.abort(reasonOf(d.signal))
  d.signal.addEventListener('abort', onAbort, { once: true })
  try {
    return decodeRequest(await new MessageReader(stream.source).readMessage(MAX_REQUEST_BYTES))
  } catch (err) {
    ctx.stats.requestsRejected++
    if (err instanceof InvalidRequestError) {
      await reply(stream, { error: 'bad-request' })
      ctx.log('refused a request - %e', err)
      return undefined
    }
    throw err
  } finally {
    d.signal.removeEventListener('abort', onAbort)
    d.clear()
  }
}

async function answerHave(stream: Stream, hashes: readonly string[], ctx: ServeContext): Promise<void> {
  const have = await Promise.all(hashes.map(async (h) => (await ctx.store.stat(h))?.size ?? -1))
  ctx.stats.haveAnswered++
  await reply(stream, { have })
}

async function answerGet(stream: Stream, hash: string, offset: number, peer: PeerId, ctx: ServeContext) {
  const { store, stats } = ctx
  const entry = await store.stat(hash)
  if (entry === null) return reply(stream, { error: 'not-found' })
  if (offset > entry.size) return reply(stream, { error: 'bad-offset' })
  const large = entry.size - offset > LARGE_UPLOAD_BYTES
  if (large && ctx.uploads.active >= ctx.maxUploads) {
    stats.uploadsRefusedBusy++
    return reply(stream, { error: 'busy' })
  }
  // the slot is taken before the first await, so two requests cannot both pass the check
  if (large) ctx.uploads.active++
  let fh: FileHandle | undefined
  const dog = watchdog(ctx.idleTimeoutMs, () => stream.abort(new BlobTimeoutError('upload stalled')))
  try {
    const { size } = entry
    try {
      fh = await open(store.pathOf(hash), 'r')
      if ((await fh.stat()).size !== size) throw new Error(`its file is not ${size} bytes`)
    } catch (err) {
      ctx.log.error('blob %s is in the index but its file is unusable; dropping it - %e', hash, err)
      await store.drop(hash)
      return await reply(stream, { error: 'not-found' })
    }
    const file = fh
    stats.uploads++
    ctx.log('sending %s from %d to %p', hash, offset, peer)
    await stream.sink(
      (async function* () {
        yield encodeMessage({ ok: true, size })
        // one chunk read ahead: the disk read overlaps with sending the previous chunk
        const readAt = async (position: number): Promise<Buffer> => {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size - position))
          const { bytesRead } = await file.read(buf, 0, buf.byteLength, position)
          if (bytesRead === 0) throw new Error(`blob ${hash} shrank on disk at ${position}`)
          return bytesRead === buf.byteLength ? buf : buf.subarray(0, bytesRead)
        }
        let position = offset
        let next = position < size ? readAt(position) : undefined
        try {
          while (next !== undefined) {
            const buf = await next
            position += buf.byteLength
            next = position < size ? readAt(position) : undefined
            next?.catch(() => undefined) // awaited above, or in finally if the stream ends first
            stats.bytesServed += buf.byteLength
            dog.touch()
            yield buf
          }
        } finally {
          await next?.catch(() => undefined)
        }
      })(),
    )
    await stream.close()
  } finally {
    dog.stop()
    if (large) ctx.uploads.active--
    await fh?.close()
  }
}

async function reply(stream: Stream, message: unknown): Promise<void> {
  await stream.sink([encodeMessage(message)])
  await stream.close()
}
