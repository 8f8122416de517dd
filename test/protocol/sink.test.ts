// sinkInto over real libp2p nodes on 127.0.0.1: a write whose connection closes under it settles
// instead of hanging (the plain negotiated sink never does, see src/protocol/sink.ts).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { createLibp2p, type Libp2p } from 'libp2p'
import { sinkInto } from '../../src/protocol/sink.ts'
import { loopbackStack } from '../loopback.ts'

const PROTOCOL = '/openfarm-test/sink/1'
const bytes = (...b: number[]) => new Uint8Array(b)

/** Settles `p` or says it did not, after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; pending?: true }> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<{ pending: true }>((r) => {
    timer = setTimeout(() => r({ pending: true }), ms)
  })
  try {
    return await Promise.race([
      p.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      late,
    ])
  } finally {
    clearTimeout(timer)
  }
}

describe('sinkInto', () => {
  let a: Libp2p
  let b: Libp2p
  const received: number[][] = []

  before(async () => {
    const make = () => createLibp2p(loopbackStack())
    ;[a, b] = await Promise.all([make(), make()])
    await b.handle(PROTOCOL, ({ stream }) => {
      const got: number[] = []
      received.push(got)
      void (async () => {
        for await (const chunk of stream.source) got.push(...chunk.subarray())
      })().catch(() => {})
    })
  })

  after(async () => {
    await Promise.all([a.stop(), b.stop()])
  })

  const open = async (): Promise<Stream> => {
    const stream = await a.dialProtocol(b.getMultiaddrs()[0]!, PROTOCOL)
    return stream
  }

  it('writes everything and resolves', async () => {
    const stream = await open()
    await sinkInto(stream, [bytes(1, 2), bytes(3)])
    await stream.close()
    const got = received.at(-1)!
    for (let i = 0; i < 50 && got.length < 3; i++) await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(got, [1, 2, 3])
  })

  /** Writes `before`, waits while the connection is closed gracefully, then writes `after`. */
  const closedWhileWriting = async (before: number[], after: number[]) => {
    const stream = await open()
    let release = (): void => {}
    const gate = new Promise<void>((r) => {
      release = r
    })
    const writing = sinkInto(
      stream,
      (async function* () {
        yield bytes(...before)
        await gate // e.g. a doc sync waiting for the peer's close
        for (const x of after) yield bytes(x)
      })(),
    )
    await new Promise((r) => setTimeout(r, 50))
    await Promise.all(a.getConnections(b.peerId).map((c) => c.close()))
    release()
    return within(writing, 5_000)
  }

  it('resolves when the connection closes while the source waits, and the source then ends', async () => {
    const outcome = await closedWhileWriting([1], [])
    assert.equal(outcome.pending, undefined, 'sinkInto settled')
    assert.equal(outcome.error, undefined)
  })

  it('rejects when the connection closes with data still to send', async () => {
    const outcome = await closedWhileWriting([1], [2, 3])
    assert.equal(outcome.pending, undefined, 'sinkInto settled')
    assert.ok(outcome.error instanceof Error, 'it rejected')
  })

  it('rejects with the reason when its signal aborts', async () => {
    const stream = await open()
    const stop = new AbortController()
    const writing = sinkInto(
      stream,
      (async function* () {
        yield bytes(1)
        await new Promise(() => {}) // a source that never ends
      })(),
      stop.signal,
    )
    stop.abort(new Error('stopping'))
    await assert.rejects(writing, /stopping/)
    stream.abort(new Error('test over'))
  })
})
