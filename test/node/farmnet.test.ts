// The farm's private network (src/node/farmnet.ts) over an in-memory wire: the same key carries bytes
// both ways and the wire shows none of them; another key, an echoed nonce, a silent peer and a short
// hello are refused with clear errors. Real nodes with another key are in farm.test.ts.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import type { MultiaddrConnection } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { FarmHandshakeError, farmNetwork, OtherFarmKeyError } from '../../src/node/farmnet.ts'
import { GrantQueue } from '../../src/protocol/blobs/credit.ts'

/** Two ends of a wire; `wire[i]` records every byte end i sent. */
function pair(): { ends: [MultiaddrConnection, MultiaddrConnection]; wire: [Uint8Array[], Uint8Array[]] } {
  const q = [new GrantQueue(), new GrantQueue()]
  const wire: [Uint8Array[], Uint8Array[]] = [[], []]
  const end = (i: 0 | 1): MultiaddrConnection =>
    ({
      source: q[1 - i]![Symbol.asyncIterator](),
      sink: async (source: AsyncIterable<Uint8Array | Uint8ArrayList>) => {
        for await (const c of source) {
          const b = c instanceof Uint8Array ? c : c.subarray()
          wire[i].push(Uint8Array.from(b))
          q[i]!.push(b)
        }
        q[i]!.end()
      },
      close: async () => q[i]!.end(),
      abort: () => q[i]!.end(),
    }) as unknown as MultiaddrConnection
  return { ends: [end(0), end(1)], wire }
}

/** Chunks are Uint8Array or a Uint8ArrayList (of whichever copy of that package). */
type AnyChunk = Uint8Array | { subarray(): Uint8Array }

const collect = async (source: AsyncIterable<AnyChunk>): Promise<Buffer> => {
  const parts: Buffer[] = []
  for await (const c of source) parts.push(Buffer.from(c instanceof Uint8Array ? c : c.subarray()))
  return Buffer.concat(parts)
}

/** `data` in chunks of 1..5000 bytes, every third one as a Uint8ArrayList of two parts. */
async function* chunks(data: Buffer): AsyncGenerator<Uint8Array | Uint8ArrayList> {
  let at = 0
  for (let n = 0; at < data.length; n++) {
    const len = Math.min(data.length - at, 1 + ((n * 7919) % 5000))
    const piece = data.subarray(at, at + len)
    at += len
    if (n % 3 === 2 && len > 1) yield new Uint8ArrayList(piece.subarray(0, 1), piece.subarray(1))
    else yield piece
  }
}

const protector = (psk: Uint8Array, timeoutMs?: number) =>
  farmNetwork({ psk, ...(timeoutMs === undefined ? {} : { timeoutMs }) })()

describe('the farm network', () => {
  it("takes one sink, and a caller's abort ends the handshake with the caller's reason", async () => {
    const psk = randomBytes(32)
    const { ends } = pair()
    const [a] = await Promise.all([protector(psk).protect(ends[0]), protector(psk).protect(ends[1])])
    void a.sink((async function* () {})() as never)
    await assert.rejects(Promise.resolve(a.sink((async function* () {})() as never)), /one sink/)

    const silent = pair()
    const why = new Error('shutting down')
    const ac = new AbortController()
    const p = protector(psk).protect(silent.ends[0], { signal: ac.signal })
    ac.abort(why)
    await assert.rejects(p, (err) => err === why)
  })

  it('carries bytes both ways with the same key, and the wire shows none of them', async () => {
    const psk = randomBytes(32)
    const { ends, wire } = pair()
    const [a, b] = await Promise.all([protector(psk).protect(ends[0]), protector(psk).protect(ends[1])])
    // a marker that would show in the clear, then random bytes
    const marker = Buffer.from('/multistream/1.0.0\n/noise\n'.repeat(50))
    const toB = Buffer.concat([marker, randomBytes(300_000)])
    const toA = Buffer.concat([marker, randomBytes(200_000)])
    const [gotB, gotA] = await Promise.all([
      collect(b.source),
      collect(a.source),
      a.sink(chunks(toB) as never),
      b.sink(chunks(toA) as never),
    ])
    assert.ok(gotB.equals(toB), 'b got what a sent')
    assert.ok(gotA.equals(toA), 'a got what b sent')
    for (const side of wire) {
      const sent = Buffer.concat(side)
      assert.equal(sent.indexOf('/multistream/'), -1, 'no plaintext on the wire')
      assert.ok(sent.length > marker.length)
    }
  })

  it('sends each chunk from above as one write, a list of parts included', async () => {
    const psk = randomBytes(32)
    const { ends, wire } = pair()
    const [a, b] = await Promise.all([protector(psk).protect(ends[0]), protector(psk).protect(ends[1])])
    const before = wire[0].length
    // what Noise hands down: a 2-byte length, then the body, as one list
    const messages = [
      new Uint8ArrayList(Uint8Array.of(0, 3), Buffer.from('abc')),
      new Uint8ArrayList(Uint8Array.of(0, 5), Buffer.from('defgh')),
      Buffer.from('ij'),
    ]
    const [got] = await Promise.all([
      collect(b.source),
      a.sink(
        (async function* () {
          yield* messages
        })() as never,
      ),
    ])
    assert.equal(got.toString('latin1'), '\x00\x03abc\x00\x05defghij')
    assert.deepEqual(
      wire[0].slice(before).map((w) => w.byteLength),
      [5, 7, 2],
    )
  })

  it('refuses a peer with another key on both sides, naming the cause', async () => {
    const { ends } = pair()
    const results = await Promise.allSettled([
      protector(randomBytes(32)).protect(ends[0]),
      protector(randomBytes(32)).protect(ends[1]),
    ])
    for (const r of results) {
      assert.equal(r.status, 'rejected')
      assert.ok(r.reason instanceof OtherFarmKeyError)
      assert.match(r.reason.message, /another farm \(different key\)/)
    }
  })

  it('refuses a peer that echoes our own hello back', async () => {
    const psk = randomBytes(32)
    const { ends } = pair()
    // end 1 is a reflector: it sends back whatever end 0 sends
    void ends[1].sink(ends[1].source as never)
    await assert.rejects(protector(psk).protect(ends[0]), (err: Error) => {
      assert.ok(err instanceof FarmHandshakeError)
      assert.match(err.message, /our own nonce/)
      return true
    })
  })

  it('gives up on a peer that sends nothing, and on one that hangs up mid-hello', async () => {
    const psk = randomBytes(32)
    const silent = pair()
    // AbortSignal.timeout does not keep the process alive (a real socket would)
    const alive = setInterval(() => undefined, 1000)
    try {
      await assert.rejects(
        protector(psk, 200).protect(silent.ends[0]),
        /did not complete the farm handshake in time/,
      )
    } finally {
      clearInterval(alive)
    }

    const short = pair()
    void short.ends[1].sink(
      (async function* () {
        yield randomBytes(10)
      })() as never,
    )
    await assert.rejects(protector(psk).protect(short.ends[0]), /closed after 10 of the 51 handshake bytes/)
  })
})
