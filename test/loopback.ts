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
