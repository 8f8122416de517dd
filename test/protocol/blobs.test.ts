// The blob protocol on real libp2p nodes on 127.0.0.1 (tcp, noise, yamux, identify, kad-dht under the
// farm's protocol id, the blob service): fetch through `have` and through DHT provider records,
// several holders sharing the load, a holder with a corrupted copy, a cut stream resumed, holders that
// lie (huge sizes, extra bytes, garbage), and the bounds a server keeps (bad requests, busy).

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { identify } from '@libp2p/identify'
import type { Stream } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { createLibp2p, type Libp2p } from 'libp2p'
import { writeOut } from '../../src/node/blobs/copyout.ts'
import { BlobStore } from '../../src/node/blobs/store.ts'
import { MAX_MANY_BLOB_BYTES } from '../../src/protocol/blobs/constants.ts'
import { encodeGrant, GrantQueue } from '../../src/protocol/blobs/credit.ts'
import {
  type BlobServiceInit,
  blobService,
  decodeRequest,
  encodeMessage,
  MessageReader,
  PROTOCOL,
} from '../../src/protocol/blobs/index.ts'
import { tempDir, waitFor } from '../helpers.ts'
import { loopbackStack } from '../loopback.ts'

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

let root: { path: string; remove: () => Promise<void> }
let n = 0
const nodes: Libp2p[] = []
const stores: BlobStore[] = []
before(async () => {
  root = await tempDir('blobs')
})
after(async () => {
  await Promise.allSettled(nodes.map((node) => node.stop()))
  await Promise.allSettled(stores.map((store) => store.close()))
  await root.remove()
})

interface PeerOpts extends Partial<Omit<BlobServiceInit, 'store'>> {
  dht?: boolean
  maxBlobBytes?: number
}

/** A node with the farm's stack (no pnet) and a blob store of its own. */
async function makePeer(opts: PeerOpts = {}) {
  const { dht = true, maxBlobBytes, ...init } = opts
  const store = await BlobStore.open(join(root.path, `n${n++}`), maxBlobBytes ? { maxBlobBytes } : {})
  const node = await createLibp2p({
    ...loopbackStack(),
    services: {
      identify: identify(),
      ping: ping(),
      ...(dht
        ? {
            dht: kadDHT({
              protocol: '/openfarm/kad/1.0.0',
              clientMode: false,
              peerInfoMapper: passthroughMapper,
            }),
          }
        : {}),
      blobs: blobService({ store, findTimeoutMs: 2_000, dhtTimeoutMs: 1_500, ...init }),
    },
  })
  nodes.push(node)
  stores.push(store)
  return { node, store, blobs: node.services.blobs, id: node.peerId.toString() }
}

type Peer = Awaited<ReturnType<typeof makePeer>>

/** A node with the same stack whose blob protocol handler is `handler` (a holder that misbehaves). */
async function makeFake(handler: (stream: Stream, req: ReturnType<typeof decodeRequest>) => Promise<void>) {
  const node = await createLibp2p({
    ...loopbackStack(),
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/openfarm/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper }),
    },
  })
  await node.handle(PROTOCOL, async ({ stream }) => {
    const req = decodeRequest(await new MessageReader(stream.source).readMessage(16384))
    await handler(stream, req).catch(() => undefined)
  })
  nodes.push(node)
  return node
}

async function connect(a: Libp2p, b: Libp2p): Promise<void> {
  await a.dial(b.getMultiaddrs()[0]!)
  // identify must have told both sides the other's protocols (and filled the DHT routing tables)
  await waitFor('identify', async () => {
    const pa = await a.peerStore.get(b.peerId).catch(() => null)
    const pb = await b.peerStore.get(a.peerId).catch(() => null)
    return (pa?.protocols.length ?? 0) > 0 && (pb?.protocols.length ?? 0) > 0
  })
}

async function send(stream: Stream, ...parts: Uint8Array[]): Promise<void> {
  await stream.sink(parts)
}

describe('blob protocol', () => {
  let a: Peer
  let b: Peer
  let c: Peer
  before(async () => {
    ;[a, b, c] = await Promise.all([makePeer(), makePeer(), makePeer()])
    await connect(a.node, b.node)
    await connect(b.node, c.node)
    await connect(a.node, c.node)
  })

  it('fetches from a connected holder found with `have`, then announces it', async () => {
    const bytes = randomBytes(1024 * 1024 + 5)
    const { hash } = await a.store.addBytes(bytes)
    assert.deepEqual((await c.blobs.holders(hash)).map(String), [a.id], 'only A holds it')
    const served = a.blobs.stats.bytesServed
    await c.blobs.fetch(hash, { job: 'job-1' })
    assert.deepEqual(await readFile(c.store.pathOf(hash)), bytes)
    assert.deepEqual(await c.store.refsOf(hash), ['job-1'])
    assert.equal(a.blobs.stats.bytesServed - served, bytes.byteLength)
    await c.blobs.fetch(hash) // held: a no-op
    assert.equal(a.blobs.stats.bytesServed - served, bytes.byteLength)
    await c.blobs.whenIdle()
    assert.ok(c.blobs.stats.provided >= 1, 'announced after the fetch')
    assert.deepEqual((await b.blobs.holders(hash)).map(String).sort(), [a.id, c.id].sort())
  })

  it('asks a named holder straight away, and falls back when it does not have the blob', async () => {
    const bytes = randomBytes(64 * 1024)
    const { hash, size } = await a.store.addBytes(bytes, { announce: false })
    const answered = [a.blobs.stats.haveAnswered, b.blobs.stats.haveAnswered]
    await c.blobs.fetch(hash, { size, from: [a.id] })
    assert.deepEqual(await readFile(c.store.pathOf(hash)), bytes)
    assert.deepEqual([a.blobs.stats.haveAnswered, b.blobs.stats.haveAnswered], answered, 'no have round')
    // named wrongly: B has nothing, so C's fetch goes on to ask around and gets it from A or C
    const other = await a.store.addBytes(randomBytes(1000), { announce: false })
    await b.blobs.fetch(other.hash, { size: other.size, from: [b.id, 'not-a-peer-id'] })
    assert.equal(await b.store.has(other.hash), true)
  })

  it('does not announce what it fetched with announce: false (an output pulled home)', async () => {
    const { hash, size } = await a.store.addBytes(randomBytes(2000), { announce: false })
    await c.blobs.whenIdle()
    const provided = c.blobs.stats.provided
    await c.blobs.fetch(hash, { size, from: [a.id], announce: false })
    await c.blobs.whenIdle()
    assert.equal(await c.store.has(hash), true)
    assert.equal(c.blobs.stats.provided, provided, 'no provider record')
  })

  it("serves an output from the submitter's home copy after the maker and the store's copy are gone", async () => {
    // A made two outputs (one small, one over the get-many limit); B pulled them home
    const small = randomBytes(3000)
    const large = randomBytes(MAX_MANY_BLOB_BYTES + 10)
    const homes: string[] = []
    const hashes: string[] = []
    for (const [i, bytes] of [small, large].entries()) {
      const { hash, size } = await a.store.addBytes(bytes, { announce: false })
      await b.blobs.fetch(hash, { size, from: [a.id], announce: false })
      const home = join(root.path, 'render', `frame_000${i + 1}.png`)
      await b.store.copyOut(hash, home, { verify: true })
      await b.store.keepHome(hash, home)
      homes.push(home)
      hashes.push(hash)
    }
    // the maker left the farm with its copies, and B's store collected its own
    for (const hash of hashes) {
      await a.store.drop(hash)
      await b.store.drop(hash)
    }
    // C gets both from B: the small one over get-many, the large one by get
    const many = b.blobs.stats.manyBlobsServed
    const got = await c.blobs.getSmall([{ hash: hashes[0]!, size: small.byteLength }], { from: b.id })
    assert.deepEqual([...got.keys()], [hashes[0]])
    assert.deepEqual(Buffer.from(got.get(hashes[0]!)!), small)
    assert.equal(b.blobs.stats.manyBlobsServed - many, 1)
    await c.blobs.fetch(hashes[0]!, { size: small.byteLength })
    await c.blobs.fetch(hashes[1]!, { size: large.byteLength })
    assert.deepEqual(await readFile(c.store.pathOf(hashes[0]!)), small)
    assert.deepEqual(await readFile(c.store.pathOf(hashes[1]!)), large)
    // B itself needs no peer for it (an assemble job on the submitter)
    await b.store.drop(hashes[1]!)
    await c.store.drop(hashes[1]!)
    const served = a.blobs.stats.uploads + c.blobs.stats.uploads
    await b.blobs.fetch(hashes[1]!, { size: large.byteLength, job: 'assemble' })
    assert.deepEqual(await b.store.refsOf(hashes[1]!), ['assemble'])
    assert.equal(a.blobs.stats.uploads + c.blobs.stats.uploads, served, 'taken from the home copy')
    // a home copy the user changed is not served
    await b.store.drop(hashes[1]!)
    await chmod(homes[1]!, 0o644)
    await writeFile(homes[1]!, randomBytes(large.byteLength))
    await assert.rejects(
      c.blobs.fetch(hashes[1]!, { size: large.byteLength, signal: AbortSignal.timeout(3_000) }),
    )
    assert.equal(await c.store.has(hashes[1]!), false)
  })

  it('serves a small output written home straight from get-many, which its store never held', async () => {
    // the submitter's pull (homes.ts): bytes from the maker, written home with writeOut, remembered
    const bytes = randomBytes(5000)
    const { hash, size } = await a.store.addBytes(bytes, { announce: false })
    const got = await b.blobs.getSmall([{ hash, size }], { from: a.id })
    const home = join(root.path, 'render-direct', 'frame_0001.png')
    const st = await writeOut(got.get(hash)!, hash, home)
    assert.ok(st !== null)
    await b.store.keepHome(hash, home, st)
    assert.equal(await b.store.has(hash), false, 'no copy in the store')
    // the maker leaves: a third peer gets it from the submitter's home copy
    await a.store.drop(hash)
    const fromHome = await c.blobs.getSmall([{ hash, size }], { from: b.id })
    assert.deepEqual(Buffer.from(fromHome.get(hash)!), bytes)
    await c.blobs.fetch(hash, { size, from: [b.id] })
    assert.deepEqual(await readFile(c.store.pathOf(hash)), bytes)
  })

  it('announces a blob when a fetch that asks to joins one that does not', async () => {
    const { hash, size } = await a.store.addBytes(randomBytes(300_000), { announce: false })
    await c.blobs.whenIdle()
    const provided = c.blobs.stats.provided
    const quiet = c.blobs.fetch(hash, { size, from: [a.id], announce: false }) // an output pulled home
    const loud = c.blobs.fetch(hash, { size, from: [a.id] }) // an input, at the same time
    await Promise.all([quiet, loud])
    await c.blobs.whenIdle()
    assert.equal(c.blobs.stats.provided, provided + 1, 'one provider record')
  })

  it('shares a popular blob between the holders', async () => {
    // 16 blobs picked at random between two holders: all from one has odds of 2 in 65,536
    const blobs = await Promise.all(
      Array.from({ length: 16 }, () => a.store.addBytes(randomBytes(32 * 1024))),
    )
    await Promise.all(blobs.map(({ hash }) => b.blobs.fetch(hash)))
    const [fromA, fromB] = [a.blobs.stats.bytesServed, b.blobs.stats.bytesServed]
    const d = await makePeer()
    await connect(d.node, a.node)
    await connect(d.node, b.node)
    await Promise.all(blobs.map(({ hash }) => d.blobs.fetch(hash)))
    const servedA = a.blobs.stats.bytesServed - fromA
    const servedB = b.blobs.stats.bytesServed - fromB
    assert.equal(servedA + servedB, 16 * 32 * 1024)
    assert.ok(servedA > 0 && servedB > 0, `both holders served (A ${servedA} B ${servedB})`)
  })

  it('finds a holder it is not connected to through the DHT', async () => {
    const [x, y, z] = await Promise.all([makePeer(), makePeer(), makePeer()])
    await connect(x.node, y.node)
    await connect(y.node, z.node)
    const bytes = randomBytes(300_000)
    const { hash } = await x.store.addBytes(bytes)
    await x.blobs.whenIdle() // the provide that follows an add
    assert.ok(x.blobs.stats.provided >= 1)
    await z.blobs.fetch(hash)
    assert.deepEqual(await readFile(z.store.pathOf(hash)), bytes)
    assert.equal(x.blobs.stats.bytesServed, bytes.byteLength)
  })

  it('announces what its store already held once it connects', async () => {
    const x = await makePeer({ announceDelayMs: 1 })
    const hashes = []
    for (let i = 0; i < 3; i++) hashes.push((await x.store.addBytes(randomBytes(1000))).hash)
    // added before any connection: those announcements reached nobody
    await x.blobs.whenIdle()
    const [y, z] = await Promise.all([makePeer(), makePeer()])
    await connect(x.node, y.node)
    await connect(y.node, z.node)
    await waitFor('the start-up announcements', async () => {
      await x.blobs.whenIdle()
      return x.blobs.stats.provided >= 3
    })
    for (const hash of hashes) assert.deepEqual((await z.blobs.holders(hash)).map(String), [x.id])
  })

  it('works without a DHT, by asking connected peers', async () => {
    const [x, y] = await Promise.all([makePeer({ dht: false }), makePeer({ dht: false, findTimeoutMs: 300 })])
    await connect(x.node, y.node)
    const { hash } = await x.store.addBytes(randomBytes(50_000))
    await y.blobs.fetch(hash)
    assert.equal(await y.store.has(hash), true)
    const empty = await x.store.addBytes(new Uint8Array(0))
    await y.blobs.fetch(empty.hash)
    assert.equal((await y.store.stat(empty.hash))?.size, 0)
    await assert.rejects(y.blobs.fetch('e'.repeat(64)), { name: 'BlobUnavailableError' })
    await assert.rejects(y.blobs.fetch('nope'), { name: 'InvalidBlobHashError' })
  })

  it('discards a copy that fails its hash and gets it from another holder', async () => {
    const [x, y, z] = await Promise.all([makePeer(), makePeer(), makePeer()])
    await connect(x.node, y.node)
    await connect(y.node, z.node)
    const bytes = randomBytes(400_000)
    const { hash } = await x.store.addBytes(bytes)
    await z.blobs.fetch(hash)
    await z.blobs.whenIdle()
    // x's copy rots on disk (same size, other bytes); y, connected to x only, asks x first
    const path = x.store.pathOf(hash)
    await chmod(path, 0o644)
    await writeFile(path, randomBytes(bytes.byteLength))
    const w = await makePeer()
    await connect(w.node, x.node)
    await connect(w.node, y.node)
    await w.blobs.fetch(hash)
    assert.deepEqual(await readFile(w.store.pathOf(hash)), bytes)
    assert.equal(w.blobs.stats.mismatches, 1)
    assert.equal(x.blobs.stats.bytesServed, bytes.byteLength * 2, 'x served z, then its rotten copy to w')
    assert.ok(z.blobs.stats.bytesServed >= bytes.byteLength, 'z (found in the DHT) served the good copy')
  })
})

describe('resuming', () => {
  it('resumes from the offset after a cut stream, with another holder', async () => {
    const bytes = randomBytes(2 * 1024 * 1024)
    const hash = sha(bytes)
    const cut = 700_000
    const offsets: number[] = []
    const holder = await makePeer()
    // a holder that sends part of the blob, cuts the stream, then no longer has it; the other holder
    // gets its copy (and announces it) only while the first stream runs, so it cannot be picked first
    const fake = await makeFake(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      offsets.push(req.offset)
      if (offsets.length > 1) return send(stream, encodeMessage({ error: 'not-found' }))
      await stream.sink(
        (async function* () {
          yield encodeMessage({ ok: true, size: bytes.byteLength })
          yield bytes.subarray(0, cut)
          await holder.store.addBytes(bytes)
          await holder.blobs.whenIdle()
          stream.abort(new Error('cut'))
        })(),
      )
    })
    const fetcher = await makePeer()
    await connect(holder.node, fake)
    await connect(fetcher.node, fake)
    await fetcher.blobs.fetch(hash)
    assert.deepEqual(await readFile(fetcher.store.pathOf(hash)), bytes)
    assert.deepEqual(offsets.length, 2)
    assert.equal(offsets[0], 0)
    assert.equal(fetcher.blobs.stats.resumes, 1)
    const resumedAt = bytes.byteLength - holder.blobs.stats.bytesServed
    assert.ok(resumedAt > 0 && resumedAt <= cut, `holder sent only the rest (resumed at ${resumedAt})`)
    assert.equal(offsets[1], resumedAt, 'the fake was asked again from the same offset first')
  })

  it('resumes with the same holder', async () => {
    const bytes = randomBytes(1024 * 1024)
    const hash = sha(bytes)
    const offsets: number[] = []
    const fake = await makeFake(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      offsets.push(req.offset)
      const end = offsets.length === 1 ? 300_000 : bytes.byteLength
      // an early end of stream, as when a holder's process dies between two chunks
      await send(stream, encodeMessage({ ok: true, size: bytes.byteLength }), bytes.subarray(req.offset, end))
      await stream.close()
    })
    const fetcher = await makePeer()
    await connect(fetcher.node, fake)
    await fetcher.blobs.fetch(hash)
    assert.deepEqual(await readFile(fetcher.store.pathOf(hash)), bytes)
    assert.deepEqual(offsets, [0, 300_000])
  })
})

describe('relaying', () => {
  it('serves a blob it is still downloading, as it arrives', async () => {
    const bytes = randomBytes(4 * 1024 * 1024)
    const hash = sha(bytes)
    const half = 2.5 * 1024 * 1024
    let release = () => {}
    const released = new Promise<void>((r) => {
      release = r
    })
    // the only whole copy: sends part of the blob, then the rest when the test says so
    const upstream = await makeFake(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      await stream.sink(
        (async function* () {
          yield encodeMessage({ ok: true, size: bytes.byteLength })
          yield bytes.subarray(req.offset, half)
          await released
          yield bytes.subarray(half)
        })(),
      )
    })
    const [relay, downstream] = await Promise.all([makePeer(), makePeer()])
    await connect(relay.node, upstream)
    await connect(downstream.node, relay.node)
    const relaying = relay.blobs.fetch(hash)
    await waitFor(
      'the relay to write part of it',
      () => (relay.store.partialOf(hash)?.written ?? 0) >= 2 * 1024 * 1024,
    )
    // the downstream peer knows only the relay, which is still downloading
    const fetching = downstream.blobs.fetch(hash, { size: bytes.byteLength })
    await waitFor('the bytes the relay has', () => downstream.blobs.stats.bytesFetched >= 2 * 1024 * 1024)
    assert.equal(await relay.store.has(hash), false, 'the relay is not done yet')
    release()
    await Promise.all([relaying, fetching])
    assert.deepEqual(await readFile(downstream.store.pathOf(hash)), bytes)
    assert.equal(relay.blobs.stats.relays, 1)
    assert.equal(relay.blobs.stats.bytesServed, bytes.byteLength)
  })
})

describe('giving up', () => {
  it('gives up when the maker is gone and the only other copy is a download behind its own', async () => {
    const bytes = randomBytes(4 * 1024 * 1024) // over MAX_MANY_BLOB_BYTES: a download with a partial
    const hash = sha(bytes)
    // the maker: sends each asker part of the blob (more to the first), then goes away
    let asked = 0
    const maker = await makeFake(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      const upTo = asked++ === 0 ? 2_500_000 : 1_200_000
      await stream.sink(
        (async function* () {
          yield encodeMessage({ ok: true, size: bytes.byteLength })
          yield bytes.subarray(req.offset, upTo)
          await new Promise(() => {}) // then nothing, until the maker is gone
        })(),
      )
    })
    const [a, b] = await Promise.all([makePeer({ dht: false }), makePeer({ dht: false })])
    await Promise.all([connect(a.node, maker), connect(b.node, maker), connect(a.node, b.node)])
    const fetchA = a.blobs.fetch(hash, { size: bytes.byteLength, from: [maker.peerId.toString()] })
    await waitFor(
      'the first download to get its part',
      () => (a.store.partialOf(hash)?.written ?? 0) >= 2_000_000,
    )
    const fetchB = b.blobs.fetch(hash, { size: bytes.byteLength, from: [maker.peerId.toString()] })
    await waitFor(
      'the second download to get its part',
      () => (b.store.partialOf(hash)?.written ?? 0) >= 1_000_000,
    )
    await maker.stop()
    // each sees the other downloading it too: a sees b behind it, b sees a ahead and takes what a
    // has; then neither can get the rest, and both say so rather than waiting for each other for ever
    const outcomes = await Promise.allSettled([fetchA, fetchB])
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected')
      assert.equal((o.reason as Error).name, 'BlobUnavailableError', (o.reason as Error).message)
    }
    assert.ok((await b.store.partialLength(hash)) >= 2_000_000, 'b took what a had')
  })
})

describe('stopping', () => {
  it('aborts a running fetch and keeps its partial for a resume', async () => {
    const bytes = randomBytes(1024 * 1024)
    const hash = sha(bytes)
    let sent = false
    let release = () => {}
    const released = new Promise<void>((r) => {
      release = r
    })
    const fake = await makeFake(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      // half the blob, then nothing: the fetch waits until the service stops
      await stream.sink(
        (async function* () {
          yield encodeMessage({ ok: true, size: bytes.byteLength })
          yield bytes.subarray(0, 600_000)
          sent = true
          await released
        })(),
      )
    })
    const fetcher = await makePeer()
    await connect(fetcher.node, fake)
    const fetching = fetcher.blobs.fetch(hash)
    await waitFor('the first bytes', () => sent && fetcher.blobs.stats.bytesFetched >= 600_000)
    await fetcher.node.stop()
    await assert.rejects(fetching, { name: 'BlobAbortedError' })
    assert.ok((await fetcher.store.partialLength(hash)) >= 600_000, 'the partial stays for a resume')
    await assert.rejects(fetcher.blobs.fetch(hash), { name: 'NotStartedError' })
    release()
  })
})

describe('holders that lie', () => {
  const bytes = randomBytes(100_000)
  const hash = sha(bytes)

  async function lone(handler: Parameters<typeof makeFake>[0]) {
    const fake = await makeFake(handler)
    const fetcher = await makePeer({ findTimeoutMs: 300 })
    await connect(fetcher.node, fake)
    return fetcher
  }

  it('refuses a holder claiming a huge size in `have`', async () => {
    let gets = 0
    const fetcher = await lone(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [2 ** 50] }))
      gets++
    })
    await assert.rejects(fetcher.blobs.fetch(hash), {
      name: 'BlobUnavailableError',
      message: /over the limit/,
    })
    assert.equal(gets, 0)
    assert.equal(await fetcher.store.partialLength(hash), 0)
  })

  it('aborts a holder whose header lies about the size, or that sends more', async () => {
    for (const mode of ['header', 'extra'] as const) {
      let gets = 0
      const fetcher = await lone(async (stream, req) => {
        if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
        gets++
        const size = mode === 'header' ? 2 ** 40 : bytes.byteLength
        await send(stream, encodeMessage({ ok: true, size }), bytes, randomBytes(10_000))
      })
      await assert.rejects(fetcher.blobs.fetch(hash), { name: 'BlobUnavailableError' })
      assert.equal(gets, 1, `${mode}: asked once, never again`)
      assert.equal(fetcher.blobs.stats.liars, 1)
      assert.equal(await fetcher.store.has(hash), false)
    }
  })

  it('drops garbage that fails the hash', async () => {
    let gets = 0
    const fetcher = await lone(async (stream, req) => {
      if (req.op !== 'get') return send(stream, encodeMessage({ have: [bytes.byteLength] }))
      gets++
      await send(stream, encodeMessage({ ok: true, size: bytes.byteLength }), randomBytes(bytes.byteLength))
    })
    await assert.rejects(fetcher.blobs.fetch(hash), {
      name: 'BlobUnavailableError',
      message: /failed the hash/,
    })
    assert.equal(gets, 1)
    assert.equal(fetcher.blobs.stats.mismatches, 1)
    assert.equal(await fetcher.store.partialLength(hash), 0)
  })
})

describe('get-many (small blobs over one stream)', () => {
  it('gets the small blobs it lacks in one request, and leaves the rest to fetch', async () => {
    const [holder, fetcher] = await Promise.all([makePeer(), makePeer()])
    await connect(fetcher.node, holder.node)
    const small = await Promise.all(
      [1000, 20_000, 0, 300_000].map((n) => holder.store.addBytes(randomBytes(n), { announce: false })),
    )
    const large = await holder.store.addBytes(randomBytes(MAX_MANY_BLOB_BYTES + 1), { announce: false })
    const missing = { hash: sha(randomBytes(10)), size: 10 }
    const held = await fetcher.store.addBytes(randomBytes(500), { announce: false })
    await holder.store.addBytes(await readFile(fetcher.store.pathOf(held.hash)), { announce: false })
    const got = await fetcher.blobs.getSmall([...small, large, missing, held, small[0]!], {
      from: holder.id,
    })
    assert.deepEqual(
      [...got.keys()].sort(),
      small.map((b) => b.hash).sort(),
      'the small ones it lacked, each once',
    )
    for (const b of small) {
      assert.deepEqual(Buffer.from(got.get(b.hash)!), await readFile(holder.store.pathOf(b.hash)))
      assert.equal(await fetcher.store.has(b.hash), false, 'handed over, not stored')
    }
    assert.equal(got.has(large.hash), false, 'a large blob goes by get')
    assert.equal(holder.blobs.stats.manyAnswered, 1, 'one request')
    assert.equal(holder.blobs.stats.manyBlobsServed, 4)
    assert.equal(holder.blobs.stats.uploads, 0, 'no get')
    // what is left comes by fetch as before
    await fetcher.blobs.fetch(large.hash, { size: large.size, from: [holder.id] })
    assert.equal(await fetcher.store.has(large.hash), true)
  })

  it('keeps what hashed right and drops the rest when a holder lies', async () => {
    const good = randomBytes(3000)
    const bad = randomBytes(4000)
    const after = randomBytes(5000)
    const list = [good, bad, after].map((b) => ({ hash: sha(b), size: b.byteLength }))
    for (const mode of ['garbage', 'size', 'extra', 'short'] as const) {
      const fake = await makeFake(async (stream, req) => {
        if (req.op !== 'get-many') return
        const sizes = list.map((b) => b.size)
        if (mode === 'size') sizes[1] = 4001
        const second = mode === 'garbage' ? randomBytes(bad.byteLength) : bad
        const tail = mode === 'extra' ? [after, randomBytes(10)] : mode === 'short' ? [] : [after]
        await send(stream, encodeMessage({ sizes }), good, second, ...tail)
      })
      const fetcher = await makePeer()
      await connect(fetcher.node, fake)
      const got = [...(await fetcher.blobs.getSmall(list, { from: fake.peerId.toString() })).keys()]
      const want =
        mode === 'size'
          ? []
          : mode === 'garbage'
            ? [list[0]!.hash]
            : mode === 'extra'
              ? [list[0]!.hash, list[1]!.hash, list[2]!.hash]
              : [list[0]!.hash, list[1]!.hash]
      assert.deepEqual(got, want, mode)
    }
  })

  it('refuses a malformed request', async () => {
    const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v))
    const many = Array.from({ length: 129 }, (_, i) => sha(Buffer.from([i])))
    for (const hashes of [[], ['x'], many, 'h']) {
      assert.throws(() => decodeRequest(json({ op: 'get-many', hashes })), {
        name: 'InvalidRequestError',
        message: /get-many/,
      })
    }
    assert.equal(decodeRequest(json({ op: 'get-many', hashes: many.slice(0, 128) })).op, 'get-many')
  })
})

describe('server bounds', () => {
  it('answers bad requests with bad-request and busy when at its upload limit', async () => {
    const server = await makePeer({ maxUploads: 1 })
    const client = await makeFake(async () => undefined)
    await connect(client, server.node)
    const { hash } = await server.store.addBytes(randomBytes(8 * 1024 * 1024))
    const ask = async (...parts: Uint8Array[]) => {
      const stream = await client.dialProtocol(server.node.peerId, PROTOCOL)
      await send(stream, ...parts)
      return { stream, reader: new MessageReader(stream.source) }
    }
    const answer = async (...parts: Uint8Array[]) => {
      const { reader } = await ask(...parts)
      return JSON.parse(new TextDecoder().decode(await reader.readMessage(16384)))
    }
    const W = 1024 * 1024
    assert.deepEqual(await answer(encodeMessage({ op: 'get', hash, offset: 0, window: 10 })), {
      error: 'bad-request',
    })
    assert.deepEqual(await answer(encodeMessage({ op: 'get', hash: 'ABC', offset: 0, window: W })), {
      error: 'bad-request',
    })
    assert.deepEqual(await answer(encodeMessage({ op: 'have', hashes: Array(129).fill(hash) })), {
      error: 'bad-request',
    })
    assert.deepEqual(await answer(encodeMessage({ op: 'get', hash, offset: 9e9, window: W })), {
      error: 'bad-offset',
    })
    assert.deepEqual(await answer(encodeMessage({ op: 'have', hashes: [hash, 'f'.repeat(64)] })), {
      have: [8 * 1024 * 1024, -1],
    })
    // a length prefix of 1 MiB: the server aborts without reading it
    const { reader: big } = await ask(new Uint8Array([0x80, 0x80, 0x40]))
    await assert.rejects(big.readMessage(16384))
    // one upload whose reader does not read holds the only slot
    const { reader: slow, stream: slowStream } = await ask(
      encodeMessage({ op: 'get', hash, offset: 0, window: W }),
    )
    assert.deepEqual(JSON.parse(new TextDecoder().decode(await slow.readMessage(16384))), {
      ok: true,
      size: 8 * 1024 * 1024,
    })
    assert.deepEqual(await answer(encodeMessage({ op: 'get', hash, offset: 0, window: W })), {
      error: 'busy',
    })
    assert.equal(server.blobs.stats.uploadsRefusedBusy, 1)
    assert.equal(server.blobs.stats.requestsRejected, 4)
    // the reader goes away: its slot is free again
    slowStream.abort(new Error('gone'))
    await waitFor('the slot to free', async () => {
      const { reader, stream } = await ask(encodeMessage({ op: 'get', hash, offset: 0, window: W }))
      const header = JSON.parse(new TextDecoder().decode(await reader.readMessage(16384)))
      stream.abort(new Error('enough'))
      return header.ok === true
    })
  })
  it('sends no more than the asker granted', async () => {
    const server = await makePeer()
    const client = await makeFake(async () => undefined)
    await connect(client, server.node)
    const size = 2 * 1024 * 1024
    const { hash } = await server.store.addBytes(randomBytes(size))
    const stream = await client.dialProtocol(server.node.peerId, PROTOCOL)
    const grants = new GrantQueue()
    grants.push(encodeMessage({ op: 'get', hash, offset: 0, window: 256 * 1024 }))
    void stream.sink(grants).catch(() => undefined)
    const reader = new MessageReader(stream.source)
    assert.deepEqual(JSON.parse(new TextDecoder().decode(await reader.readMessage(16384))), {
      ok: true,
      size,
    })
    const served = () => server.blobs.stats.bytesServed
    await waitFor('the window', () => served() === 256 * 1024)
    grants.push(encodeGrant(512 * 1024))
    await waitFor('the window and one grant', () => served() === 768 * 1024)
    let got = 0
    for await (const buf of reader.rest()) {
      got += buf.byteLength
      if (got >= 768 * 1024) break
    }
    assert.equal(got, 768 * 1024)
    assert.equal(served(), 768 * 1024, 'nothing past the grants')
    grants.push(encodeGrant(size))
    await waitFor('the rest', () => served() === size)
    grants.end()
  })
})
