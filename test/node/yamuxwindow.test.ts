// Yamux window updates at half the window (src/node/yamuxwindow.ts), on two real yamux muxers joined
// by an in-memory wire whose frames the test reads: small messages cost no update until half the
// window is used, a large transfer gets its updates and is never stalled by their scarcity, and
// opening a stream still acknowledges at once.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream, StreamMuxer } from '@libp2p/interface'
import { defaultLogger } from '@libp2p/logger'
import { Uint8ArrayList } from 'uint8arraylist'
import { halfWindowUpdates } from '../../src/node/yamuxwindow.ts'

const DATA = 0
const WINDOW_UPDATE = 1
const ACK = 2

/** What a muxer's source yields (its own Uint8ArrayList, or bytes). */
type Chunk = StreamMuxer['source'] extends AsyncIterable<infer T> ? T : never

/** Yamux frames read off one direction of the wire: type and flags of each. */
class FrameLog {
  readonly frames: { type: number; flags: number }[] = []
  #buf = new Uint8ArrayList()

  push(chunk: Chunk): void {
    this.#buf.append(chunk instanceof Uint8Array ? chunk : chunk.subarray())
    for (;;) {
      if (this.#buf.byteLength < 12) return
      const type = this.#buf.get(1)
      const flags = this.#buf.getUint16(2)
      const length = this.#buf.getUint32(8)
      const size = 12 + (type === DATA ? length : 0)
      if (this.#buf.byteLength < size) return
      this.frames.push({ type, flags })
      this.#buf.consume(size)
    }
  }

  /** Window updates that only give credit back (no SYN, ACK, FIN or RST). */
  credits(): number {
    return this.frames.filter((f) => f.type === WINDOW_UPDATE && f.flags === 0).length
  }
}

async function* tap(source: AsyncIterable<Chunk>, log: FrameLog): AsyncGenerator<Chunk> {
  for await (const chunk of source) {
    log.push(chunk)
    yield chunk
  }
}

/** A client and a server muxer; `back` logs what the server sends the client. */
function wire(onStream: (s: Stream) => void): { client: StreamMuxer; back: FrameLog } {
  const factory = yamux()({ logger: defaultLogger() })
  const client = factory.createStreamMuxer({ direction: 'outbound' })
  const server = factory.createStreamMuxer({ direction: 'inbound', onIncomingStream: onStream })
  const back = new FrameLog()
  void server.sink(client.source)
  void client.sink(tap(server.source, back))
  return { client, back }
}

/** Reads a stream to its end; resolves with the bytes and the number of chunks. */
function drain(stream: Stream): Promise<{ bytes: number; chunks: number }> {
  return (async () => {
    let bytes = 0
    let chunks = 0
    for await (const chunk of stream.source) {
      bytes += chunk.byteLength
      chunks++
    }
    return { bytes, chunks }
  })()
}

describe('yamux window updates at half the window', () => {
  halfWindowUpdates()

  it('sends no credit back for 400 small messages (120 KB, under half of the 256 KiB window)', async () => {
    let got: Promise<{ bytes: number; chunks: number }> | undefined
    const { client, back } = wire((s) => {
      got = drain(s)
    })
    const stream = await client.newStream()
    const message = new Uint8Array(300).fill(7)
    await stream.sink(
      (async function* () {
        for (let i = 0; i < 400; i++) {
          yield message
          // one message at a time, as gossip sends them, so each is its own frame
          await new Promise((r) => setImmediate(r))
        }
      })(),
    )
    await stream.closeWrite()
    const r = await got!
    assert.equal(r.bytes, 400 * 300)
    assert.ok(r.chunks >= 100, `the messages came as ${r.chunks} chunks, not one by one`)
    // the library's own rule sends one per chunk the reader takes: r.chunks of them
    assert.equal(back.credits(), 0)
    assert.ok(
      back.frames.some((f) => f.type === WINDOW_UPDATE && (f.flags & ACK) === ACK),
      'the stream was acknowledged at once',
    )
    await client.close()
  })

  it('gives credit back as a large transfer uses its window, and the transfer completes', async () => {
    let got: Promise<{ bytes: number; chunks: number }> | undefined
    const { client, back } = wire((s) => {
      got = drain(s)
    })
    const stream = await client.newStream()
    const total = 8 * 1024 * 1024
    const piece = new Uint8Array(16 * 1024).fill(1)
    await stream.sink(
      (async function* () {
        for (let sent = 0; sent < total; sent += piece.byteLength) yield piece
      })(),
    )
    await stream.closeWrite()
    const r = await got!
    assert.equal(r.bytes, total)
    // 8 MiB through a 256 KiB window (which may grow) needs credit: at least once per window,
    // at most once per half of the smallest one
    const credits = back.credits()
    assert.ok(credits >= 1, 'no credit was ever given back, yet 8 MiB went through')
    assert.ok(credits <= total / (128 * 1024), `${credits} updates for ${r.chunks} chunks`)
    await client.close()
  })
})
