// Finding the peers that hold a blob: `have` to (a sample of) the connected peers that speak the
// protocol, and at the same time a kad-dht provider lookup (CID v1 raw over the sha256) whose
// providers are asked `have` too. Every holder found therefore comes with the size it claims.

import type { ContentRouting, Logger, PeerId, PeerInfo, PeerStore } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import type { HaveEntry } from './codec.ts'
import { PROTOCOL } from './constants.ts'
import { deadline } from './signals.ts'

const RAW = 0x55
const SHA2_256 = 0x12

/** The CID a blob is provided under in the DHT. */
export function blobCid(hash: string): CID {
  return CID.createV1(RAW, Digest.create(SHA2_256, Buffer.from(hash, 'hex')))
}

export interface Holder {
  readonly peer: PeerId
  /** The size the holder claims the blob has, or -1 if it is still downloading it. */
  readonly size: number
  /** Bytes it had when asked while still downloading (it relays them), else -1. */
  readonly partial: number
}

export interface FinderDeps {
  readonly self: PeerId
  readonly connectionManager: ConnectionManager
  readonly peerStore: PeerStore
  readonly contentRouting: ContentRouting
  readonly log: Logger
  readonly random: () => number
  readonly haveTimeoutMs: number
  readonly maxHavePeers: number
  readonly dhtTimeoutMs: number
  /** One `have` of one hash to one peer. */
  readonly have: (peer: PeerId, hash: string, signal: AbortSignal) => Promise<HaveEntry>
}

export interface FindOptions {
  /** Peers not to ask. */
  readonly skip?: (peer: string) => boolean
  /** Also look up DHT provider records (default true; a fetch waiting on busy holders asks peers only). */
  readonly dht?: boolean
}

/**
 * Holders of `hash` (keyed by peer id string), whole or still downloading it: the connected peers
 * that answer `have`, or when none does, the providers a DHT lookup finds (asked `have` too).
 */
export async function findHolders(
  deps: FinderDeps,
  hash: string,
  signal: AbortSignal,
  opts: FindOptions = {},
): Promise<Map<string, Holder>> {
  const skip = opts.skip ?? (() => false)
  const found = new Map<string, Holder>()
  const asked = new Set<string>([deps.self.toString()])
  const ask = async (peer: PeerId): Promise<void> => {
    const id = peer.toString()
    if (asked.has(id) || skip(id)) return
    asked.add(id)
    const d = deadline(deps.haveTimeoutMs, `have from ${id}`, signal)
    try {
      const { size, partial } = await deps.have(peer, hash, d.signal)
      if (size >= 0 || partial > 0) found.set(id, { peer, size, partial })
    } catch (err) {
      deps.log('have %s from %p failed - %e', hash.slice(0, 12), peer, err)
    } finally {
      d.clear()
    }
  }

  const connected = await speakers(deps)
  const sample = shuffle(connected, deps.random).slice(0, deps.maxHavePeers)
  // Connected peers first: on a LAN farm (every peer connected to every other) they are the
  // answer, and a DHT lookup per fetch costs more CPU than the transfer of a small frame. The DHT is
  // asked when none of them has it (a holder this node is not connected to, a larger farm).
  await Promise.all(sample.map(ask))
  if (found.size > 0 || opts.dht === false) return found
  await lookup(deps, hash, signal, ask)
  return found
}

async function lookup(
  deps: FinderDeps,
  hash: string,
  signal: AbortSignal,
  ask: (peer: PeerId) => Promise<void>,
): Promise<void> {
  const d = deadline(deps.dhtTimeoutMs, 'DHT provider lookup', signal)
  const asks: Promise<void>[] = []
  try {
    for await (const provider of deps.contentRouting.findProviders(blobCid(hash), { signal: d.signal })) {
      if (provider.id.equals(deps.self)) continue
      await remember(deps, provider)
      asks.push(ask(provider.id))
    }
  } catch (err) {
    // no DHT configured, a timeout, an empty routing table: the `have` round still counts
    deps.log('DHT lookup of %s ended - %e', hash.slice(0, 12), err)
  } finally {
    await Promise.all(asks)
    d.clear()
  }
}

/** A provider found in the DHT may not be in the peer store yet; its addresses make it dialable. */
async function remember(deps: FinderDeps, provider: PeerInfo): Promise<void> {
  if (provider.multiaddrs.length === 0) return
  try {
    await deps.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs })
  } catch (err) {
    deps.log('could not record the addresses of %p - %e', provider.id, err)
  }
}

/** Connected peers that speak the blob protocol (or whose protocols identify has not told us yet). */
async function speakers(deps: FinderDeps): Promise<PeerId[]> {
  const peers = new Map<string, PeerId>()
  for (const conn of deps.connectionManager.getConnections()) {
    if (conn.status === 'open') peers.set(conn.remotePeer.toString(), conn.remotePeer)
  }
  const out: PeerId[] = []
  for (const peer of peers.values()) {
    const protocols = await deps.peerStore
      .get(peer)
      .then((p): string[] => p.protocols)
      .catch((): string[] => [])
    if (protocols.length === 0 || protocols.includes(PROTOCOL)) out.push(peer)
  }
  return out
}

function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const a = [...items]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}
