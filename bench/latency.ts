// Submit-to-visible latency: N real nodes on loopback in this process, jobs submitted one after
// another through the local HTTP API of rotating nodes, and the moment each OTHER node's FarmDoc has
// the job taken from that node's own doc 'update' event (no polling lag).

import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { ApiClient } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import type { RunningNode } from '../src/node/serve.ts'
import { addrOf, aliveHosts, type Cleanup, sleep, startNode, tempDir, waitUntil } from './lib.ts'

export interface VisibilityOptions {
  readonly nodes: number
  readonly jobs: number
  /** Jobs submitted first and not counted (first messages after the mesh forms). */
  readonly warmup: number
  /** Pause after a job is visible everywhere before the next submit. */
  readonly gapMs: number
  /** Let the nodes run the echo jobs (default: echo disabled, so only replication is measured). */
  readonly execute: boolean
  readonly progress: (line: string) => void
}

export interface VisibilityResult {
  /** From just before the POST to the observer's update event, one per (job, observer). */
  readonly fromCall: number[]
  /** From the submitting node's own commit (its doc update event) to the observer's. */
  readonly fromCommit: number[]
  /** Duration of the POST round trip as the client sees it. */
  readonly submitMs: number[]
  /** (job, observer) pairs never seen within the per-job timeout. */
  readonly missing: number
  readonly startMs: number
  readonly meshMs: number
  readonly avgConnections: number
  readonly avgDocMeshPeers: number
  /** Doc-sync activity over the measured jobs, summed over nodes. */
  readonly gossipUpdatesReceived: number
  readonly syncs: number
  /** Event-loop delay of this process (ms) while the measured jobs ran. */
  readonly loopDelay: { mean: number; p99: number; max: number }
}

/** gossipsub's own API; libp2p types the service as a plain PubSub. */
interface MeshPeers {
  getMeshPeers(topic: string): string[]
}

/** Node i bootstraps to i-1 and to (i-1)/2: a connected mesh of degree ~3, not a star. */
function bootstrapOf(i: number, nodes: readonly RunningNode[]): string[] {
  if (i === 0) return []
  return [...new Set([i - 1, Math.floor((i - 1) / 2)])].map((j) => addrOf(nodes[j]!))
}

export async function measureVisibility(cleanup: Cleanup, o: VisibilityOptions): Promise<VisibilityResult> {
  const dir = await tempDir(cleanup, `vis${o.nodes}`)
  const key = FarmKey.generate()
  const nodes: Awaited<ReturnType<typeof startNode>>[] = []
  const t0 = performance.now()
  for (let i = 0; i < o.nodes; i++) {
    nodes.push(
      await startNode(cleanup, join(dir, `n${i}`), `n${i}`, key, {
        bootstrap: bootstrapOf(i, nodes),
        disable: o.execute ? [] : ['echo', 'sleep'],
      }),
    )
  }
  const startMs = performance.now() - t0
  const docTopic = nodes[0]!.node.libp2p.services.docSync.topic
  const docMesh = (n: RunningNode) =>
    (n.node.libp2p.services.pubsub as unknown as MeshPeers).getMeshPeers(docTopic).length
  await waitUntil(
    `every node to see ${o.nodes} live hosts and a doc-topic mesh`,
    () => nodes.every((n) => aliveHosts(n) === o.nodes && docMesh(n) >= Math.min(2, o.nodes - 1)),
    60_000,
    50,
  )
  const meshMs = performance.now() - t0 - startMs
  o.progress(`  ${o.nodes} nodes up in ${Math.round(startMs)} ms, meshed after ${Math.round(meshMs)} ms more`)

  // when each node's FarmDoc first has each job, stamped inside the doc's own update event
  const seen = nodes.map(() => new Map<string, number>())
  const detach = nodes.map((n, i) => {
    const { farm } = n.node
    const jobs = farm.doc.getMap('jobs')
    const onUpdate = () => {
      const now = performance.now()
      for (const id of jobs.keys()) if (!seen[i]!.has(id) && farm.has(id)) seen[i]!.set(id, now)
    }
    farm.doc.on('update', onUpdate)
    return () => farm.doc.off('update', onUpdate)
  })
  const clients = await Promise.all(nodes.map((_, i) => ApiClient.connect(join(dir, `n${i}`))))
  const statsBefore = docStats(nodes)

  const fromCall: number[] = []
  const fromCommit: number[] = []
  const submitMs: number[] = []
  let missing = 0
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  try {
    for (let k = 0; k < o.warmup + o.jobs; k++) {
      const origin = k % o.nodes
      const before = performance.now()
      const job = await clients[origin]!.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-10' })
      const after = performance.now()
      await waitUntil(`job ${job.id} on every node`, () => seen.every((s) => s.has(job.id)), 15_000, 1).catch(
        (err: Error) => o.progress(`  ${err.message}`),
      )
      if (k >= o.warmup) {
        submitMs.push(after - before)
        const committed = seen[origin]!.get(job.id)!
        for (let i = 0; i < o.nodes; i++) {
          if (i === origin) continue
          const at = seen[i]!.get(job.id)
          if (at === undefined) missing++
          else {
            fromCall.push(at - before)
            fromCommit.push(at - committed)
          }
        }
      }
      await sleep(o.gapMs)
    }
  } finally {
    loop.disable()
    for (const off of detach) off()
  }
  const statsAfter = docStats(nodes)
  const result: VisibilityResult = {
    fromCall,
    fromCommit,
    submitMs,
    missing,
    startMs,
    meshMs,
    avgConnections: avg(nodes.map((n) => n.node.connectedPeers().length)),
    avgDocMeshPeers: avg(nodes.map(docMesh)),
    gossipUpdatesReceived: statsAfter.gossip - statsBefore.gossip,
    syncs: statsAfter.syncs - statsBefore.syncs,
    loopDelay: { mean: loop.mean / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
  }
  o.progress(`  stopping ${o.nodes} nodes`)
  await Promise.all(nodes.map((n) => n.stopNow()))
  return result
}

function docStats(nodes: readonly RunningNode[]): { gossip: number; syncs: number } {
  let gossip = 0
  let syncs = 0
  for (const n of nodes) {
    const s = n.node.libp2p.services.docSync.stats
    gossip += s.gossipUpdatesReceived
    syncs += s.syncsInitiated
  }
  return { gossip, syncs }
}

const avg = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
