// The farm's gossipsub settings: a copy of a message seen already is dropped before its signature is
// verified again (fastMsgId), on real gossipsub nodes over loopback.

import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import { after, describe, it } from 'node:test'
import { type GossipSub, gossipsub } from '@chainsafe/libp2p-gossipsub'
import { identify } from '@libp2p/identify'
import { createLibp2p, type Libp2p } from 'libp2p'
import { fastMsgId } from '../../src/node/libp2p.ts'
import { waitFor } from '../helpers.ts'
import { loopbackStack } from '../loopback.ts'

const msg = {
  from: new Uint8Array([1, 2, 3]),
  seqno: new Uint8Array([0, 0, 0, 7]),
  data: new Uint8Array([9, 9]),
  signature: new Uint8Array(64).fill(5),
  key: new Uint8Array([4]),
  topic: 'openfarm/t',
}

describe('fastMsgId', () => {
  it('is the same for a byte-identical copy and differs when any field does', () => {
    assert.equal(fastMsgId({ ...msg }), fastMsgId(msg))
    const ids = new Set([fastMsgId(msg)])
    for (const field of ['from', 'seqno', 'data', 'signature', 'key'] as const) {
      const changed = Uint8Array.from(msg[field])
      changed[0]! ^= 1
      ids.add(fastMsgId({ ...msg, [field]: changed }))
    }
    ids.add(fastMsgId({ ...msg, topic: 'openfarm/u' }))
    // one field's bytes moved into the next one's must not give the same id
    ids.add(fastMsgId({ ...msg, from: new Uint8Array([1, 2]), seqno: new Uint8Array([3, 0, 0, 0, 7]) }))
    // absent and empty differ
    ids.add(fastMsgId({ ...msg, key: undefined }))
    ids.add(fastMsgId({ ...msg, key: new Uint8Array() }))
    assert.equal(ids.size, 10)
  })
})

const make = () =>
  createLibp2p({
    ...loopbackStack(),
    services: { identify: identify(), pubsub: gossipsub({ emitSelf: false, fastMsgIdFn: fastMsgId }) },
  })
// the factory is typed as the generic PubSub; the test also reads gossipsub's mesh
const pubsub = (n: Libp2p<{ pubsub: unknown }>) => n.services.pubsub as GossipSub

describe('gossip on a full mesh of three', () => {
  const nodes: Awaited<ReturnType<typeof make>>[] = []
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
  })

  it('verifies each message once per receiver, not once per copy', async () => {
    const topic = 'openfarm-test/fastmsgid'
    for (let i = 0; i < 3; i++) nodes.push(await make())
    const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]]
    await a.dial(b.getMultiaddrs()[0]!)
    await a.dial(c.getMultiaddrs()[0]!)
    await b.dial(c.getMultiaddrs()[0]!)
    for (const n of nodes) pubsub(n).subscribe(topic)
    await waitFor('a full mesh', () => nodes.every((n) => pubsub(n).getMeshPeers(topic).length === 2))
    const got = [0, 0]
    pubsub(b).addEventListener('message', () => got[0]!++)
    pubsub(c).addEventListener('message', () => got[1]!++)

    // @libp2p/crypto verifies ed25519 through node:crypto's default export
    const verify = crypto.verify
    let verifies = 0
    crypto.verify = ((...args: Parameters<typeof verify>) => {
      verifies++
      return verify(...args)
    }) as typeof verify
    const N = 20
    try {
      for (let i = 0; i < N; i++) await pubsub(a).publish(topic, new Uint8Array([i]))
      await waitFor('every message on both receivers', () => got[0] === N && got[1] === N)
      // and the copies forwarded between b and c, which each also sends on
      await new Promise((r) => setTimeout(r, 500))
    } finally {
      crypto.verify = verify
    }
    assert.deepEqual(got, [N, N])
    assert.equal(verifies, 2 * N, `${verifies} verifies for ${N} messages to 2 receivers`)
  })
})
