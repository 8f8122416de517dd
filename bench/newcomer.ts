// Catch-up of a brand-new node: a real node serves a copy of the big farm's database, and a node
// with an empty data directory bootstraps to it; timed until the newcomer's FarmDoc has the job
// with every one of its events.

import { cp, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { FarmKey } from '../src/node/farmkey.ts'
import { eventCount } from './bigfarm.ts'
import { addrOf, type Cleanup, startNode, tempDir, waitUntil } from './lib.ts'

export interface NewcomerResult {
  /** From just before serve() of the newcomer until it has every event. */
  readonly totalMs: number[]
  /** From serve() returning (libp2p up, API listening) until it has every event. */
  readonly afterStartMs: number[]
  /** From the newcomer's first peer:connect until it has every event. */
  readonly afterConnectMs: number[]
  readonly holderStartMs: number
  readonly syncBytes: number
}

export async function measureNewcomer(
  cleanup: Cleanup,
  dbPath: string,
  job: string,
  expectEvents: number,
  samples: number,
  progress: (line: string) => void,
): Promise<NewcomerResult> {
  const dir = await tempDir(cleanup, 'newcomer')
  const key = FarmKey.generate()
  const quiet = { disable: ['echo', 'sleep'] }
  const holderDir = join(dir, 'holder')
  await mkdir(holderDir, { recursive: true, mode: 0o700 })
  await cp(dbPath, join(holderDir, 'db'), { recursive: true })
  const h0 = performance.now()
  const holder = await startNode(cleanup, holderDir, 'holder', key, quiet)
  const holderStartMs = performance.now() - h0
  const held = eventCount(holder.node.farm, job)
  if (held !== expectEvents)
    throw new Error(`the holder loaded ${held} events of ${job}, not ${expectEvents}`)

  const totalMs: number[] = []
  const afterStartMs: number[] = []
  const afterConnectMs: number[] = []
  let syncBytes = 0
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now()
    const nc = await startNode(cleanup, join(dir, `new${s}`), `new${s}`, key, {
      ...quiet,
      bootstrap: [addrOf(holder)],
    })
    const started = performance.now()
    let connected: number | undefined = nc.node.connectedPeers().length > 0 ? started : undefined
    let done: number | undefined
    const onConnect = () => {
      connected ??= performance.now()
    }
    const check = () => {
      if (done === undefined && eventCount(nc.node.farm, job) === expectEvents) done = performance.now()
    }
    nc.node.libp2p.addEventListener('peer:connect', onConnect)
    nc.node.farm.doc.on('update', check)
    check() // already there when serve() returned: `done` is then an upper bound
    try {
      await waitUntil(`newcomer ${s} to hold all ${expectEvents} events`, () => done !== undefined, 60_000, 2)
    } finally {
      nc.node.farm.doc.off('update', check)
      nc.node.libp2p.removeEventListener('peer:connect', onConnect)
    }
    totalMs.push(done! - t0)
    afterStartMs.push(done! - started)
    afterConnectMs.push(done! - (connected ?? started))
    await nc.node.libp2p.services.docSync.whenIdle() // stats count a sync once its stream closed
    syncBytes = nc.node.libp2p.services.docSync.stats.syncBytesReceived
    progress(`  newcomer ${s}: ${Math.round(done! - t0)} ms`)
    await nc.stopNow()
  }
  await holder.stopNow()
  return { totalMs, afterStartMs, afterConnectMs, holderStartMs, syncBytes }
}
