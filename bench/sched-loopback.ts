// Scheduling latency on a real farm on loopback (3 in-process nodes, real libp2p): the time from a
// submit to the first task running on another peer (read in the submitter's document the moment the
// start lands there, no polling), and the gap between one task's end and the next one's start on a
// busy worker (from the workers' log stores).

import { join } from 'node:path'
import { ApiClient } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import type { RunningNode } from '../src/node/serve.ts'
import { addrOf, Cleanup, percentile, startNode, tempDir, waitFormed, workerGaps } from './lib.ts'

export interface LoopbackFigures {
  submit_to_start_ms: number
  task_gap_ms_p50: number
  task_gap_ms_p95: number
  samples: { submits: number; gaps: number }
}

/** Calls `onEvent(kind, peer, task)` for every new start/done event of job `id` in `node`'s doc. */
function watchEvents(
  node: RunningNode,
  id: string,
  onEvent: (kind: string, peer: string, task: number) => void,
) {
  const farm = node.node.farm
  const seen = new Set<string>()
  const check = () => {
    const job = farm.read(id)
    if (job === undefined) return
    for (const events of job.tasks) {
      for (const e of events) {
        if (e.kind !== 'start' && e.kind !== 'done') continue
        const k = `${e.kind}/${e.task}/${e.attempt}/${e.peer}`
        if (seen.has(k)) continue
        seen.add(k)
        onEvent(e.kind, e.peer, e.task)
      }
    }
  }
  farm.doc.on('update', check)
  return () => farm.doc.off('update', check)
}

export async function measureLoopback(quick: boolean): Promise<LoopbackFigures> {
  const cleanup = new Cleanup()
  try {
    const dir = await tempDir(cleanup, 'schedloop')
    const key = FarmKey.generate()
    const nodes: RunningNode[] = []
    for (const [i, speed] of ['1', '2', '4'].entries()) {
      nodes.push(
        await startNode(cleanup, join(dir, `n${i}`), `n${i}`, key, {
          bootstrap: i === 0 ? [] : [addrOf(nodes[0]!)],
          heartbeatMs: 250,
          flags: { name: `n${i}`, speed },
        }),
      )
    }
    await waitFormed(nodes)
    const submitter = nodes[0]!
    const client = await ApiClient.connect(join(dir, 'n0'))

    // 1. submit -> first task running on another peer (seen in the submitter's replica)
    const submits = quick ? 4 : 10
    const toStart: number[] = []
    for (let s = 0; s < submits; s++) {
      const t0 = performance.now()
      const { id } = await client.post<{ id: string }>('/v1/jobs', { app: 'echo', frames: '1-3' })
      const first = await new Promise<number>((resolve) => {
        const stop = watchEvents(submitter, id, (kind, peer) => {
          if (kind === 'start' && peer !== submitter.node.peerId) {
            stop()
            resolve(performance.now())
          }
        })
      })
      toStart.push(first - t0)
      await waitDone(client, id)
    }

    // 2. task gaps on busy workers: a job with more tasks than slots, each worker's end -> next start
    const gaps: number[] = []
    const tasks = quick ? 18 : 45
    const { id } = await client.post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: `1-${tasks}`,
      settings: { seconds: 0.2 },
    })
    await waitDone(client, id)
    gaps.push(...(await workerGaps(nodes, submitter.node.farm.view(id)!)))
    return {
      submit_to_start_ms: round(percentile(toStart, 0.5)),
      task_gap_ms_p50: round(percentile(gaps, 0.5)),
      task_gap_ms_p95: round(percentile(gaps, 0.95)),
      samples: { submits, gaps: gaps.length },
    }
  } finally {
    await cleanup.runAll()
  }
}

async function waitDone(client: ApiClient, id: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const j = await client.get<{ state: string }>(`/v1/jobs/${id}`)
    if (j.state === 'DONE') return
    if (Date.now() > deadline) throw new Error(`job ${id} not DONE in 60 s (${j.state})`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const round = (x: number) => Math.round(x * 10) / 10
