// The transport stack of the protocol tests' libp2p nodes: TCP on 127.0.0.1 (a free port), Noise,
// Yamux. Spread into createLibp2p beside the services each test needs.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'

export const loopbackStack = () => ({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
})

/**
 * serve() options of a farm node on loopback that finds its peers fast: a free port, no mDNS, a beat
 * every 200 ms, a peer suspect after 1 s and dead after 3 s.
 */
export const FAST_LOOPBACK_NODE = {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  mdns: false,
  heartbeatMs: 200,
  suspectAfterMs: 1_000,
  deadAfterMs: 3_000,
  antiEntropyMs: 1_000,
  redialMs: 300,
} as const
