// One peer's libp2p: TCP + the farm's private network (farmnet.ts, the farm key) + Noise + Yamux, identify, ping, gossipsub, kad-dht
// under an /openfarm prefix, mDNS tagged with the farm id, plus the farm's own services: doc sync,
// heartbeats, blobs (files by hash) and logs (the Log Router).
// libp2p 2.x does not dial what it discovers, so `Dialer` below dials on discovery and redials.

import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type * as Y from 'yjs'
import { blobService } from '../protocol/blobs/index.ts'
import { docSync, type UpdateValidator } from '../protocol/docsync/index.ts'
import { type HeartbeatInit, heartbeat } from '../protocol/heartbeat/index.ts'
import { type LogSource, logService } from '../protocol/logs/index.ts'
import type { BlobStore } from './blobs/store.ts'
import type { FarmKey } from './farmkey.ts'
import { farmNetwork } from './farmnet.ts'
import { halfWindowUpdates } from './yamuxwindow.ts'

export interface FarmLibp2pInit {
  readonly key: FarmKey
  readonly privateKey: PrivateKey
  readonly listen: readonly string[]
  readonly doc: Y.Doc
  readonly mdns: boolean
  readonly heartbeat: Omit<HeartbeatInit, 'farmId'>
  readonly antiEntropyMs?: number
  /** Peers this node refuses to talk to (tests split a farm with it). */
  readonly blocked?: ReadonlySet<string>
  /** Refuses an update from the network before it is applied (gossip and sync alike). */
  readonly validateUpdate?: UpdateValidator
  /** Served to peers and fetched into by the blob protocol. */
  readonly blobs: BlobStore
  /** Task output lines this node holds, served by the Log Router. */
  readonly logs: LogSource
}

export async function createFarmLibp2p(init: FarmLibp2pInit) {
  const farmId = init.key.farmId()
  const blocked = init.blocked ?? new Set<string>()
  const isBlocked = (p: PeerId) => blocked.has(p.toString())
  halfWindowUpdates()
  return createLibp2p({
    privateKey: init.privateKey,
    addresses: { listen: [...init.listen] },
    transports: [tcp()],
    connectionProtector: farmNetwork({ psk: init.key.bytes() }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: init.mdns ? [mdns({ serviceTag: `_openfarm-${farmId}._udp.local`, interval: 5_000 })] : [],
    connectionGater: {
      denyDialPeer: isBlocked,
      denyInboundEncryptedConnection: isBlocked,
      denyOutboundEncryptedConnection: isBlocked,
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // the default (4 MiB) would let one update crowd a link; large ones go by stream sync
        maxInboundDataLength: 1024 * 1024,
        fastMsgIdFn: fastMsgId,
      }),
      dht: kadDHT({ protocol: '/openfarm/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper }),
      docSync: docSync({
        doc: init.doc,
        farmId,
        ...(init.antiEntropyMs === undefined ? {} : { antiEntropyMs: init.antiEntropyMs }),
        ...(init.validateUpdate === undefined ? {} : { validateUpdate: init.validateUpdate }),
      }),
      heartbeat: heartbeat({ ...init.heartbeat, farmId }),
      blobs: blobService({ store: init.blobs }),
      logs: logService({ store: init.logs }),
    },
  })
}

export type FarmLibp2p = Awaited<ReturnType<typeof createFarmLibp2p>>

/** The fields of a gossipsub message on the wire (its RPC.Message). */
interface WireMessage {
  readonly from?: Uint8Array
  readonly seqno?: Uint8Array
  readonly data?: Uint8Array
  readonly signature?: Uint8Array
  readonly key?: Uint8Array
  readonly topic: string
}

/**
 * gossipsub verifies a message's signature before it asks whether it has seen the message, unless it
 * can look up a fast id first. In a mesh each message arrives from several peers, and each copy cost
 * an ed25519 verify (about 140 µs here; 4 verifies per message on a 3-node farm, more in a bigger
 * mesh). This id hashes every field, the signature too: only a byte-identical copy counts as seen, and
 * a copy with another signature (a forgery) is verified, and rejected, on its own.
 */
export function fastMsgId(msg: WireMessage): string {
  const h = createHash('sha256')
  const length = Buffer.alloc(4)
  for (const part of [msg.from, msg.seqno, msg.data, msg.signature, msg.key, Buffer.from(msg.topic)]) {
    length.writeUInt32BE(part?.byteLength ?? 0xffffffff) // absent and empty differ
    h.update(length)
    if (part !== undefined) h.update(part)
  }
  return h.digest('base64')
}

/**
 * The node's identity survives restarts, so the events it wrote stay its own.
 * (@libp2p/crypto 5.1.x types its keys with @libp2p/interface 3 while libp2p 2.x takes interface 2's;
 * the runtime objects are the same, hence the casts.)
 */
export async function loadOrCreatePeerKey(path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(path)) as unknown as PrivateKey
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600 })
  return key as unknown as PrivateKey
}
