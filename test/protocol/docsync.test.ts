// doc-sync over real libp2p nodes on 127.0.0.1: gossip, catch-up by stream, large updates, garbage
// from peers (gossip and stream), a lone node, anti-entropy. Conditions are polled with a deadline.

import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { type GossipSub, gossipsub } from '@chainsafe/libp2p-gossipsub'
import { identify } from '@libp2p/identify'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import { createLibp2p, type Libp2p } from 'libp2p'
import * as Y from 'yjs'
import { fromGossip, LOCAL, STORE } from '../../src/crdt/origins.ts'
import {
  checkUpdate,
  type DocSyncInit,
  docSync,
  docTopic,
  encodeFrame,
  GossipType,
  PROTOCOL,
  SyncFrameType,
} from '../../src/protocol/docsync/index.ts'
import { loopbackStack } from '../loopback.ts'

const FARM = 'test-farm'
const TOPIC = docTopic(FARM)

class SchemaError extends Error {
  static override name = 'SchemaError'
  override name = 'SchemaError'
}

async function waitFor(cond: () => boolean, { timeoutMs = 10_000, stepMs = 20 } = {}): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms: ${cond.toString()}`)
    await new Promise((resolve) => setTimeout(resolve, stepMs))
  }
}

const running: Array<{ stop(): void | Promise<void> }> = []
after(async () => {
  await Promise.allSettled(running.map(async (n) => n.stop()))
})

type Peer = Awaited<ReturnType<typeof makePeer>>

/** A full farm node as far as replication goes: tcp, noise, yamux, identify, gossipsub, doc-sync. */
async function makePeer(init: Partial<DocSyncInit> = {}) {
  const doc = new Y.Doc()
  const node = await createLibp2p({
    ...loopbackStack(),
    services: {
      identify: identify(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }),
      // long enough that only the mechanism under test can deliver, unless a test says otherwise
      docSync: docSync({ doc, farmId: FARM, antiEntropyMs: 60_000, ...init }),
    },
  })
  running.push(node)
  const map = doc.getMap<unknown>('m')
  return {
    node,
    doc,
    map,
    sync: node.services.docSync,
    // the factory is typed as the generic PubSub; the tests also read gossipsub's mesh
    pubsub: node.services.pubsub as GossipSub,
    id: node.peerId.toString(),
    set(key: string, value: unknown) {
      doc.transact(() => map.set(key, value), LOCAL)
    },
  }
}

/** A libp2p node with identify only: no gossipsub, no doc-sync. */
async function makePlain() {
  const node = await createLibp2p({
    ...loopbackStack(),
    services: { identify: identify() },
  })
  running.push(node)
  return node
}

/** Dials b from a and waits until each has the other in its doc-topic mesh. */
async function link(a: Peer, b: Peer): Promise<void> {
  const addr = b.node.getMultiaddrs()[0]
  assert.ok(addr != null)
  await a.node.dial(addr)
  await waitFor(
    () => a.pubsub.getMeshPeers(TOPIC).includes(b.id) && b.pubsub.getMeshPeers(TOPIC).includes(a.id),
  )
}

const state = (p: Peer): Uint8Array => Y.encodeStateAsUpdate(p.doc)

describe('doc-sync', { timeout: 60_000 }, () => {
  it('converges two nodes via gossip', async () => {
    const a = await makePeer()
    const b = await makePeer()
    await link(a, b)
    await Promise.all([a.sync.whenIdle(), b.sync.whenIdle()])
    const origins: unknown[] = []
    b.doc.on('update', (_update: Uint8Array, origin: unknown) => origins.push(origin))
    a.set('from-a', 1)
    b.set('from-b', 2)
    await waitFor(() => a.map.get('from-b') === 2 && b.map.get('from-a') === 1)
    await Promise.all([a.sync.whenIdle(), b.sync.whenIdle()])
    assert.equal(a.sync.stats.gossipUpdatesSent, 1)
    assert.equal(b.sync.stats.gossipUpdatesReceived, 1)
    assert.equal(a.sync.stats.gossipUpdatesReceived, 1)
    assert.deepEqual(a.map.toJSON(), b.map.toJSON())
    // the author of a signed message, as a string, is the origin's peer
    assert.deepEqual(origins, [LOCAL, fromGossip(a.id)])
    // gossip-applied updates are never published again
    assert.equal(b.sync.stats.gossipUpdatesSent, 1)
  })

  it('lets a node that connects later catch up over the stream', async () => {
    const a = await makePeer()
    const b = await makePeer()
    // history that was never gossiped (as if a had loaded it from its store), so a later node can
    // only get it by stream, not from gossipsub's message cache (IHAVE/IWANT)
    a.doc.transact(() => {
      for (let i = 0; i < 50; i++) a.map.set(`k${i}`, i)
    }, STORE)
    await link(a, b)
    await waitFor(() => b.map.size === 50)
    const c = await makePeer()
    c.set('only-c', true) // no peers yet: stays local until a sync carries it
    await c.node.dial(a.node.getMultiaddrs()[0]!)
    await waitFor(() => c.map.size === 51 && a.map.get('only-c') === true)
    await Promise.all([a.sync.whenIdle(), c.sync.whenIdle()]) // counters move after the doc does
    assert.ok(c.sync.stats.syncsInitiated + c.sync.stats.syncsResponded >= 1, 'a sync ran between a and c')
    assert.ok(c.sync.stats.syncBytesReceived > 200, 'the history came by stream')
    assert.equal(c.sync.stats.gossipUpdatesReceived, 0)
    // syncWith resolves only once both sides applied what the other sent
    await waitFor(() => c.pubsub.getSubscribers(TOPIC).some((p) => p.equals(a.node.peerId)))
    c.set('after-connect', 'x')
    const before = a.sync.stats.syncsResponded + a.sync.stats.syncsInitiated
    const result = await c.sync.syncWith(a.node.peerId)
    assert.ok(result.sentBytes > 0 && result.receivedBytes > 0)
    assert.equal(a.map.get('after-connect'), 'x')
    await a.sync.whenIdle() // a counts its side once it has closed the stream
    assert.ok(a.sync.stats.syncsResponded + a.sync.stats.syncsInitiated >= before + 1)
    // b got c's second update by gossip (relayed by a) but never c's first, which reached a by
    // stream: the gap left pending structs in b, which triggers a sync rather than waiting for
    // anti-entropy (60 s here)
    await waitFor(() => b.map.get('only-c') === true && b.map.get('after-connect') === 'x')
  })

  it('carries an update larger than maxGossipBytes by announcement and stream', async () => {
    const a = await makePeer()
    const b = await makePeer()
    await link(a, b)
    await Promise.all([a.sync.whenIdle(), b.sync.whenIdle()])
    const blob = new Uint8Array(1024 * 1024)
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 2654435761) >>> 24
    a.set('blob', blob)
    await waitFor(() => b.map.get('blob') instanceof Uint8Array)
    assert.deepEqual(b.map.get('blob'), blob)
    await Promise.all([a.sync.whenIdle(), b.sync.whenIdle()]) // counters move after the doc does
    assert.equal(a.sync.stats.gossipAnnouncementsSent, 1)
    assert.equal(a.sync.stats.gossipUpdatesSent, 0)
    assert.equal(b.sync.stats.gossipAnnouncementsReceived, 1)
    assert.ok(b.sync.stats.syncBytesReceived > blob.length)
    assert.ok(a.sync.stats.gossipBytesSent < 1024, 'the announcement itself is tiny')
  })

  it('rejects garbage and schema-invalid gossip and keeps the document unchanged', async () => {
    const validateUpdate = (update: Uint8Array): void => {
      const probe = new Y.Doc()
      Y.applyUpdate(probe, update)
      if (probe.getMap('m').has('evil')) throw new SchemaError('key "evil" is not in the schema')
    }
    const a = await makePeer({ validateUpdate, maxGossipBytes: 1024 })
    const g = await makePeer()
    a.set('good', 1)
    await link(a, g)
    await waitFor(() => g.map.get('good') === 1)
    await Promise.all([a.sync.whenIdle(), g.sync.whenIdle()])
    const before = state(a)
    const garbage = [
      Uint8Array.of(GossipType.UPDATE, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0x0f), // does not decode
      Uint8Array.of(0x07, 1, 2, 3), // unknown type byte
      Uint8Array.of(), // empty
      new Uint8Array(2048), // type 0x00, payload over a's maxGossipBytes
    ]
    for (const data of garbage) await g.pubsub.publish(TOPIC, data)
    await waitFor(() => a.sync.stats.gossipRejected === garbage.length)
    g.set('evil', 'x') // well-formed, published by g's own doc-sync, refused by a's schema check
    await waitFor(() => a.sync.stats.gossipRejected === garbage.length + 1)
    assert.deepEqual(state(a), before)
    assert.equal(a.map.has('evil'), false)
    assert.equal(a.node.status, 'started')
    // the stream refuses the same update: a is untouched, its syncs with g now fail, it keeps running
    await assert.rejects(g.sync.syncWith(a.node.peerId))
    assert.ok(a.sync.stats.syncUpdatesRejected >= 1)
    assert.deepEqual(state(a), before)
  })

  it('says why the validator refused an update, in the message the log prints (not only its cause)', () => {
    const doc = new Y.Doc()
    const updates: Uint8Array[] = []
    doc.on('update', (u: Uint8Array) => updates.push(u))
    doc.getMap('m').set('evil', 1)
    const refuse = (): void => {
      throw new SchemaError('key "evil" is not in the schema')
    }
    assert.throws(() => checkUpdate(updates[0]!, refuse), {
      name: 'InvalidUpdateError',
      message: /SchemaError: key "evil" is not in the schema/,
    })
  })

  it('survives garbage sync frames and silent peers, and the document stays unchanged', async () => {
    // anti-entropy on, so the well-behaved peer at the end gets through even on a loaded machine
    const a = await makePeer({
      syncTimeoutMs: 1000,
      maxSyncMessageBytes: 4 * 1024 * 1024,
      antiEntropyMs: 200,
    })
    a.set('good', 1)
    // g speaks raw bytes and runs no doc-sync, so no automatic sync interleaves with its streams
    const g = await makePlain()
    await g.dial(a.node.getMultiaddrs()[0]!)
    const before = state(a)
    const failed = (): number => a.sync.stats.syncsFailed

    // 1. an unknown first frame
    await sendRaw(g, a, async function* () {
      yield encode(Uint8Array.of(0x09, 1, 2, 3))
    })
    await waitFor(() => failed() === 1)

    // 2. a valid step 1, then a step 2 that does not decode
    await sendRaw(g, a, async function* (frames) {
      yield encode(encodeFrame(SyncFrameType.STEP1, Y.encodeStateVector(new Y.Doc())))
      await frames.next()
      await frames.next()
      yield encode(encodeFrame(SyncFrameType.STEP2, Uint8Array.of(0xff, 0xff, 0xff, 0x0f, 1, 2)))
    })
    await waitFor(() => failed() === 2 && a.sync.stats.syncUpdatesRejected === 1)

    // 3. a length prefix announcing 100 MiB: refused before anything is buffered
    await sendRaw(g, a, async function* () {
      yield Uint8Array.of(0x80, 0x80, 0x80, 0x32, SyncFrameType.STEP1)
    })
    await waitFor(() => failed() === 3)

    // 4. a peer that opens a stream and never speaks: a's deadline ends it
    const silent = await g.dialProtocol(a.node.peerId, PROTOCOL)
    await waitFor(() => failed() === 4)
    silent.abort(new Error('test done'))

    assert.deepEqual(state(a), before)
    assert.equal(a.node.status, 'started')
    const h = await makePeer()
    h.set('later', 2)
    await h.node.dial(a.node.getMultiaddrs()[0]!)
    await waitFor(() => a.map.get('later') === 2 && h.map.get('good') === 1)
  })

  it('lets a lone node change its document without throwing', async () => {
    const a = await makePeer({ maxGossipBytes: 64 })
    a.set('solo', 1)
    a.set('big', 'x'.repeat(200)) // announcement path, also to nobody
    await a.sync.whenIdle()
    assert.equal(a.sync.stats.gossipUpdatesSent, 1)
    assert.equal(a.sync.stats.gossipAnnouncementsSent, 1)
    assert.equal(a.sync.stats.gossipPublishErrors, 0)
    assert.equal(a.map.get('solo'), 1)
  })

  it('heals by anti-entropy what gossip never carried, with the injected PRNG', async () => {
    let draws = 0
    const random = (): number => {
      draws++
      return 0.5
    }
    const a = await makePeer({ antiEntropyMs: 100, random })
    const b = await makePeer({ antiEntropyMs: 100, random })
    await link(a, b)
    a.doc.transact(() => a.map.set('untagged', 1), 'not-an-origin') // not gossiped
    b.doc.transact(() => b.map.set('from-store', 2), STORE) // never re-published
    await waitFor(() => b.map.get('untagged') === 1 && a.map.get('from-store') === 2)
    assert.equal(a.sync.stats.gossipUpdatesSent + b.sync.stats.gossipUpdatesSent, 0)
    assert.ok(draws > 0)
  })

  it('reports a peer without the protocol and refuses to sync while stopped', async () => {
    const a = await makePeer()
    const plain = await makePlain()
    await a.node.dial(plain.getMultiaddrs()[0]!)
    await assert.rejects(a.sync.syncWith(plain.peerId), { name: 'UnsupportedProtocolError' })
    await a.node.stop()
    await assert.rejects(a.sync.syncWith(plain.peerId), { name: 'NotStartedError' })
  })
})

function encode(frame: Uint8Array): Uint8Array {
  return lp.encode.single(frame).subarray()
}

/** Opens a raw doc-sync stream from `from` to `to` and writes what `script` yields. */
async function sendRaw(
  from: Libp2p,
  to: Peer,
  script: (frames: AsyncGenerator<unknown>) => AsyncGenerator<Uint8Array>,
): Promise<void> {
  const stream = await from.dialProtocol(to.node.peerId, PROTOCOL)
  const frames = lp.decode(stream.source)
  // the receiver aborts the stream: errors on this side are expected
  await pipe(script(frames), stream.sink).catch(() => {})
  await Promise.resolve(frames.next()).catch(() => {})
  stream.abort(new Error('test done'))
}
