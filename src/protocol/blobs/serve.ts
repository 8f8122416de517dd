// The answering side: one request per stream, validated and bounded in size and time; `get` streams
// the file from the requested offset in CHUNK_BYTES reads, pulled by the muxer (so a slow reader holds
// at most its flow-control window here); `have` answers sizes; `get-many` sends several small blobs,
// one file read at a time. Never more than the header's size.
// A blob this node is still downloading is relayed: the bytes it has, then the rest as they arrive.

import type { FileHandle } from 'node:fs/promises'
import { open, readFile } from 'node:fs/promises'
import type { Logger, PeerId, Stream } from '@libp2p/interface'
import type { PartialBlob } from '../../node/blobs/partial.ts'
import type { BlobStore } from '../../node/blobs/store.ts'
import { sinkInto } from '../sink.ts'
import { type BlobRequest, decodeRequest, encodeMessage, MessageReader } from './codec.ts'
import {
  CHUNK_BYTES,
  LARGE_UPLOAD_BYTES,
  MAX_MANY_BLOB_BYTES,
  MAX_MANY_BYTES,
  MAX_REQUEST_BYTES,
  MAX_WINDOW_BYTES,
} from './constants.ts'
import { Credit, readGrants } from './credit.ts'
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
    const got = await readRequest(stream, ctx)
    if (got === undefined) return
    const { req, reader } = got
    if (req.op === 'have') await answerHave(stream, req.hashes, ctx)
    else if (req.op === 'get-many') await answerGetMany(stream, req.hashes, peer, ctx)
    else await answerGet(stream, reader, req, peer, ctx)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  } finally {
    ctx.signal.removeEventListener('abort', onShutdown)
  }
}

async function readRequest(
  stream: Stream,
  ctx: ServeContext,
): Promise<{ req: BlobRequest; reader: MessageReader } | undefined> {
  const d = deadline(ctx.requestTimeoutMs, 'blob request', ctx.signal)
  const onAbort = (): void => stream.abort(reasonOf(d.signal))
  d.signal.addEventListener('abort', onAbort, { once: true })
  try {
    const reader = new MessageReader(stream.source)
    return { req: decodeRequest(await reader.readMessage(MAX_REQUEST_BYTES)), reader }
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
  // a home copy counts (taken back into the store when asked for its bytes): see BlobStore.restore
  const have = await Promise.all(
    hashes.map(async (h) => (await ctx.store.stat(h))?.size ?? (await ctx.store.homeOf(h))?.size ?? -1),
  )
  // what is held of blobs being downloaded here: a node relays them as they arrive
  const partial = hashes.map((h, i) => {
    const p = have[i] === -1 ? ctx.store.partialOf(h) : undefined
    return p?.state === 'open' ? p.written : -1
  })
  ctx.stats.haveAnswered++
  await reply(stream, partial.some((n) => n >= 0) ? { have, partial } : { have })
}

/**
 * The size of a blob held, or -1; a home copy small enough for get-many is taken back in first (a
 * larger one is not copied for an answer that will say -1).
 */
async function heldSmall(ctx: ServeContext, hash: string): Promise<number> {
  const held = await ctx.store.restore(hash, { maxBytes: MAX_MANY_BLOB_BYTES })
  return held ? ((await ctx.store.stat(hash))?.size ?? -1) : -1
}

/**
 * The sizes of the blobs it will send (held whole, each small, all within MAX_MANY_BYTES; -1 for the
 * others), then their bytes in order, read one file at a time. A file that no longer has its indexed
 * size aborts the stream (its header promised that size): the asker fetches what it lacks by `get`.
 */
async function answerGetMany(
  stream: Stream,
  hashes: readonly string[],
  peer: PeerId,
  ctx: ServeContext,
): Promise<void> {
  // looked up at once, as answerHave does; then what fits, in order
  const held = await Promise.all(hashes.map((h) => heldSmall(ctx, h)))
  const sizes: number[] = []
  let total = 0
  for (const size of held) {
    const fits = size >= 0 && size <= MAX_MANY_BLOB_BYTES && total + size <= MAX_MANY_BYTES
    sizes.push(fits ? size : -1)
    if (fits) total += size
  }
  ctx.stats.manyAnswered++
  const { store, stats, signal } = ctx
  const dog = watchdog(ctx.idleTimeoutMs, () => stream.abort(new BlobTimeoutError('upload stalled')))
  try {
    await sinkInto(
      stream,
      (async function* () {
        yield encodeMessage({ sizes })
        for (const [i, hash] of hashes.entries()) {
          if (sizes[i]! < 0) continue
          const bytes = await readFile(store.pathOf(hash))
          if (bytes.byteLength !== sizes[i]) {
            ctx.log.error('blob %s is in the index but its file is not %d bytes; dropping it', hash, sizes[i])
            await store.drop(hash)
            throw new Error(`blob ${hash} changed size while being sent`)
          }
          stats.bytesServed += bytes.byteLength
          stats.manyBlobsServed++
          dog.touch()
          yield bytes
        }
      })(),
      signal,
    )
    ctx.log('sent %d of %d blobs to %p (get-many)', sizes.filter((s) => s >= 0).length, hashes.length, peer)
    await stream.close()
  } finally {
    dog.stop()
  }
}

/** Where a `get` reads from: a blob in the store, or one still arriving. */
interface Source {
  readonly path: string
  readonly size: number
  /** Bytes readable now. */
  available(): number
  /** Resolves when more than `position` bytes are readable; throws if no more will come. */
  wait(position: number): Promise<void>
}

async function answerGet(
  stream: Stream,
  reader: MessageReader,
  req: Extract<BlobRequest, { op: 'get' }>,
  peer: PeerId,
  ctx: ServeContext,
) {
  const { store } = ctx
  const { hash, offset } = req
  const upload = new AbortController()
  // waits (for a relay's next bytes, for the asker's grants) end with the upload, or at shutdown
  const signal = AbortSignal.any([ctx.signal, upload.signal])
  const entry = (await store.restore(hash)) ? await store.stat(hash) : null
  let source: Source
  if (entry !== null) {
    source = { path: store.pathOf(hash), size: entry.size, available: () => entry.size, wait: async () => {} }
  } else {
    const partial = store.partialOf(hash)
    if (partial?.state !== 'open') return reply(stream, { error: 'not-found' })
    // only to a peer behind us: two peers relaying to each other would wait on each other
    if (offset <= partial.size && partial.written <= offset) return reply(stream, { error: 'busy' })
    source = relaySource(partial, signal)
  }
  if (offset > source.size) return reply(stream, { error: 'bad-offset' })
  const large = source.size - offset > LARGE_UPLOAD_BYTES
  if (large && ctx.uploads.active >= ctx.maxUploads) {
    ctx.stats.uploadsRefusedBusy++
    return reply(stream, { error: 'busy' })
  }
  // the slot is taken before the first await, so two requests cannot both pass the check
  if (large) ctx.uploads.active++
  let fh: FileHandle | undefined
  const dog = watchdog(ctx.idleTimeoutMs, () => {
    const err = new BlobTimeoutError('upload stalled')
    stream.abort(err)
    upload.abort(err)
  })
  try {
    try {
      fh = await open(source.path, 'r')
      if (entry !== null && (await fh.stat()).size !== entry.size) {
        throw new Error(`its file is not ${entry.size} bytes`)
      }
    } catch (err) {
      if (entry === null) return await reply(stream, { error: 'busy' }) // installed meanwhile: ask again
      ctx.log.error('blob %s is in the index but its file is unusable; dropping it - %e', hash, err)
      await store.drop(hash)
      return await reply(stream, { error: 'not-found' })
    }
    ctx.stats.uploads++
    if (entry === null) ctx.stats.relays++
    ctx.log('sending %s from %d to %p%s', hash, offset, peer, entry === null ? ' (relaying)' : '')
    const credit = new Credit(req.window)
    void (async () => {
      for await (const n of readGrants(reader.rest(), MAX_WINDOW_BYTES)) credit.add(n)
      credit.close()
    })().catch((err: Error) => credit.close(err))
    await sinkInto(
      stream,
      chunks(fh, source, offset, { stats: ctx.stats, credit, signal, touch: () => dog.touch() }),
      signal,
    )
    await stream.close()
  } catch (err) {
    upload.abort(err)
    throw err
  } finally {
    dog.stop()
    if (large) ctx.uploads.active--
    await fh?.close()
  }
}

function relaySource(partial: PartialBlob, signal: AbortSignal): Source {
  return {
    path: partial.path,
    size: partial.size,
    available: () => partial.written,
    async wait(position) {
      await partial.waitFor(position, signal)
      if (partial.written <= position && partial.state !== 'installed') {
        throw new Error(`the download being relayed ended (${partial.state}) at ${partial.written} bytes`)
      }
    },
  }
}

interface Pace {
  readonly stats: BlobStats
  /** What the asker granted: a chunk goes out only once it fits. */
  readonly credit: Credit
  readonly signal: AbortSignal
  /** Called for every chunk sent (the idle watchdog). */
  readonly touch: () => void
}

/**
 * The header, then the bytes from `offset` to the end, one chunk read ahead when it is available,
 * each sent once the asker's grants cover it.
 */
async function* chunks(
  file: FileHandle,
  source: Source,
  offset: number,
  pace: Pace,
): AsyncGenerator<Uint8Array> {
  const { size } = source
  yield encodeMessage({ ok: true, size })
  const readAt = async (position: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, source.available() - position))
    const { bytesRead } = await file.read(buf, 0, buf.byteLength, position)
    if (bytesRead === 0) throw new Error(`file ${source.path} shrank at ${position}`)
    return bytesRead === buf.byteLength ? buf : buf.subarray(0, bytesRead)
  }
  const ahead = (position: number): Promise<Buffer> | undefined => {
    if (position >= size || position >= source.available()) return undefined
    const p = readAt(position)
    p.catch(() => undefined) // awaited below, or in finally if the stream ends first
    return p
  }
  let position = offset
  let next = ahead(position)
  try {
    while (position < size) {
      if (next === undefined) {
        await source.wait(position)
        next = ahead(position)
        continue
      }
      const buf = await next
      position += buf.byteLength
      next = ahead(position)
      await pace.credit.take(buf.byteLength, pace.signal)
      pace.stats.bytesServed += buf.byteLength
      pace.touch()
      yield buf
    }
  } finally {
    await next?.catch(() => undefined)
  }
}

async function reply(stream: Stream, message: unknown): Promise<void> {
  await sinkInto(stream, [encodeMessage(message)])
  await stream.close()
}
