// One node of bench/files.ts, run in its own process (forked with an IPC channel): the farm's libp2p
// stack (the farm's private network when a key is given, or libp2p's pnet to compare) with a blob
// store and the blob service. Commands arrive as IPC messages; fetch reports its wall time and this
// process's RSS before and at peak (sampled every 50 ms).

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { BlobStore } from '../src/node/blobs/store.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import { farmNetwork } from '../src/node/farmnet.ts'
import { blobService } from '../src/protocol/blobs/index.ts'

export interface Reply {
  readonly id: number
  readonly error?: string
  readonly [key: string]: unknown
}

const rssMb = () => process.memoryUsage.rss() / (1024 * 1024)

export async function runChild(): Promise<void> {
  const [, , , dir, keyHex, maxUploads, protector, listen] = process.argv
  const store = await BlobStore.open(dir!)
  const key = keyHex ? FarmKey.parse(keyHex) : null
  const connectionProtector =
    key === null
      ? null
      : protector === 'pnet'
        ? preSharedKey({ psk: key.psk() })
        : farmNetwork({ psk: key.bytes() })
  const node = await createLibp2p({
    addresses: { listen: [listen ?? '/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    ...(connectionProtector ? { connectionProtector } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/openfarm/kad/1.0.0', clientMode: false, peerInfoMapper: passthroughMapper }),
      blobs: blobService({ store, ...(maxUploads ? { maxUploads: Number(maxUploads) } : {}) }),
    },
  })
  const blobs = node.services.blobs
  const handlers: Record<string, (m: Record<string, unknown>) => Promise<Record<string, unknown>>> = {
    start: async () => ({ addr: node.getMultiaddrs()[0]!.toString() }),
    dial: async (m) => {
      await node.dial(multiaddr(m.addr as string))
      return {}
    },
    add: async (m) => ({ ...(await store.addFile(m.path as string)) }),
    drop: async (m) => {
      await store.drop(m.hash as string)
      return {}
    },
    fetch: async (m) => {
      const before = rssMb()
      let peak = before
      let peakMem = process.memoryUsage()
      const timer = setInterval(() => {
        const m = process.memoryUsage()
        if (m.rss / (1024 * 1024) > peak) {
          peak = m.rss / (1024 * 1024)
          peakMem = m
        }
      }, 50)
      const t = performance.now()
      try {
        await blobs.fetch(m.hash as string)
      } finally {
        clearInterval(timer)
      }
      const mb = (n: number) => Math.round(n / (1024 * 1024))
      return {
        seconds: (performance.now() - t) / 1000,
        rssBeforeMb: before,
        rssPeakMb: Math.max(peak, rssMb()),
        atPeak: {
          heapMb: mb(peakMem.heapUsed),
          externalMb: mb(peakMem.external),
          buffersMb: mb(peakMem.arrayBuffers),
        },
      }
    },
    mem: async () => {
      ;(globalThis as { gc?: () => void }).gc?.()
      return { ...process.memoryUsage() }
    },
    stats: async () => {
      const cpu = process.cpuUsage()
      return { ...blobs.stats, cpuS: (cpu.user + cpu.system) / 1e6 }
    },
    stop: async () => {
      await node.stop()
      await store.close()
      setImmediate(() => process.exit(0))
      return {}
    },
  }
  process.on('message', (m: Record<string, unknown>) => {
    const handler = handlers[m.cmd as string]
    const run = handler ? handler(m) : Promise.reject(new Error(`unknown command ${String(m.cmd)}`))
    run.then(
      (r) => process.send?.({ ...r, id: m.id }),
      (err: Error) => process.send?.({ id: m.id, error: `${err.name}: ${err.message}` }),
    )
  })
  process.on('disconnect', () => process.exit(0))
}
