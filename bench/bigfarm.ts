// A big farm built the way a real one grows: a 10,000-task job added in one transaction, then its
// task events appended by several worker peers in batches of 100 (one transaction each), yielding to
// the event loop between batches so the level store writes (and compacts) as it would live.
// Each worker is its own FarmDoc (its peer id in every event) and its own Yjs client id.

import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Logger } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Level } from 'level'
import * as Y from 'yjs'
import { FarmDoc, type NewTaskEvent } from '../src/crdt/farmdoc.ts'
import { DocStore } from '../src/crdt/store.ts'
import { compileJob } from '../src/runner/compile.ts'

export const TASKS = 10_000
const BATCH = 100
const yieldLoop = () => new Promise<void>((r) => setImmediate(r))

interface Worker {
  readonly peer: string
  readonly clientId: number
  readonly farm: FarmDoc
}

export interface BigFarm {
  readonly doc: Y.Doc
  readonly workers: readonly Worker[]
  readonly jobIds: string[]
  /** Sum of the time spent inside appendTaskEvents (ms) and the batch durations. */
  appendMs: number
  batchMs: number[]
  events: number
}

export async function newFarm(workerCount: number): Promise<BigFarm> {
  const doc = new Y.Doc({ gc: true })
  const workers: Worker[] = []
  for (let i = 0; i < workerCount; i++) {
    const key = await generateKeyPair('Ed25519')
    // @libp2p/crypto types its keys with @libp2p/interface 3, @libp2p/peer-id with 2 (same objects)
    const peer = peerIdFromPrivateKey(key as unknown as Parameters<typeof peerIdFromPrivateKey>[0]).toString()
    workers.push({ peer, clientId: new Y.Doc().clientID, farm: new FarmDoc(doc, { peer }) })
  }
  return { doc, workers, jobIds: [], appendMs: 0, batchMs: [], events: 0 }
}

/** Acts as `w`: its Yjs client id for the transaction, its peer id in the events. */
function as<T>(farm: BigFarm, w: Worker, fn: (f: FarmDoc) => T): T {
  farm.doc.clientID = w.clientId
  return fn(w.farm)
}

/** Adds an echo job of 10,000 one-frame tasks (compileJob, as a submit would), submitted by worker 0. */
export function addBigJob(farm: BigFarm, id: string): void {
  const w = farm.workers[0]!
  const spec = compileJob(
    { app: 'echo', frames: `1-${TASKS}`, chunk: 1 },
    { id, peer: w.peer, now: Date.now() },
  )
  as(farm, w, (f) => f.addJob(spec))
  farm.jobIds.push(id)
}

async function append(farm: BigFarm, w: Worker, job: string, events: NewTaskEvent[]): Promise<void> {
  const t = performance.now()
  as(farm, w, (f) => f.appendTaskEvents(job, events))
  const ms = performance.now() - t
  farm.appendMs += ms
  farm.batchMs.push(ms)
  farm.events += events.length
  await yieldLoop()
}

/** A plausible bid as the auction makes them: a float64 just under 1. */
const bid = () => 1 - Math.random() / 2

function block(b: number): number[] {
  return Array.from({ length: BATCH }, (_, i) => b * BATCH + i)
}

/** Every task: claim, start, done at attempt 0, by the worker its block of 100 went to (3 events). */
export async function runClean(farm: BigFarm, job: string): Promise<void> {
  const n = farm.workers.length
  for (let b = 0; b < TASKS / BATCH; b++) {
    const w = farm.workers[b % n]!
    const tasks = block(b)
    await append(
      farm,
      w,
      job,
      tasks.map((task) => ({ kind: 'claim', task, attempt: 0, bid: bid() })),
    )
    await append(
      farm,
      w,
      job,
      tasks.map((task) => ({ kind: 'start', task, attempt: 0 })),
    )
    await append(
      farm,
      w,
      job,
      tasks.map((task) => ({ kind: 'done', task, attempt: 0 })),
    )
  }
}

/**
 * A rough job (7 events per task): attempt 0 is claimed by two workers (the auction settles it),
 * started and fails; attempt 1 is claimed by a third worker, started and done.
 */
export async function runRough(farm: BigFarm, job: string): Promise<void> {
  const n = farm.workers.length
  for (let b = 0; b < TASKS / BATCH; b++) {
    const [w0, w1, w2] = [0, 1, 2].map((d) => farm.workers[(b + d) % n]!) as [Worker, Worker, Worker]
    const tasks = block(b)
    const each = (kind: NewTaskEvent['kind'], attempt: number, extra: Partial<NewTaskEvent> = {}) =>
      tasks.map((task): NewTaskEvent => ({ kind, task, attempt, ...extra }))
    await append(
      farm,
      w0,
      job,
      tasks.map((task) => ({ kind: 'claim', task, attempt: 0, bid: bid() })),
    )
    await append(
      farm,
      w1,
      job,
      tasks.map((task) => ({ kind: 'claim', task, attempt: 0, bid: 1 + bid() })),
    )
    await append(farm, w0, job, each('start', 0))
    await append(farm, w0, job, each('fail', 0, { reason: 'run: exit code 1' }))
    await append(
      farm,
      w2,
      job,
      tasks.map((task) => ({ kind: 'claim', task, attempt: 1, bid: bid() })),
    )
    await append(farm, w2, job, each('start', 1))
    await append(farm, w2, job, each('done', 1))
  }
}

/** Mean of the first and of the last `k` batch durations: shows whether an append grows with the log. */
export function batchTrend(batchMs: readonly number[], k = 20): { first: number; last: number } {
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
  return { first: mean(batchMs.slice(0, k)), last: mean(batchMs.slice(-k)) }
}

/** Opens a store for the farm's doc at `path` (existing entries load as no-ops); counts compactions. */
export async function openStore(farm: BigFarm, path: string, onCompact = () => {}): Promise<DocStore> {
  const log = Object.assign(
    (format: string) => {
      if (format.startsWith('compacted')) onCompact()
    },
    { error: (format: string, ...args: unknown[]) => console.error(format, ...args), trace: () => {} },
    { enabled: true },
  )
  return (await DocStore.open(path, farm.doc, { log: log as unknown as Logger })).store
}

/**
 * What one more update costs every node of a farm this big: a FarmDoc with warm caches gets one
 * 100-event transaction from another peer, then computes views() (what the dispatcher does on every
 * update). Adds 100 'release' events (no-ops for the view) to `job`.
 */
export function viewCostAfterUpdate(farm: BigFarm, job: string): { coldMs: number; afterUpdateMs: number } {
  const [reader, writer] = farm.workers as [Worker, Worker]
  const t0 = performance.now()
  reader.farm.views()
  const coldMs = performance.now() - t0
  reader.farm.views()
  as(farm, writer, (f) =>
    f.appendTaskEvents(
      job,
      block(0).map((task) => ({ kind: 'release', task, attempt: 1 })),
    ),
  )
  const t1 = performance.now()
  reader.farm.views()
  return { coldMs, afterUpdateMs: performance.now() - t1 }
}

/** Layout of a store's log: entries, and how many sort before the largest one (the compacted state). */
export async function logLayout(
  path: string,
): Promise<{ entries: number; beforeLargest: number; largest: number }> {
  const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
  let entries = 0
  let beforeLargest = 0
  let largest = 0
  try {
    for await (const v of db.values()) {
      if (v.byteLength > largest) {
        largest = v.byteLength
        beforeLargest = entries
      }
      entries++
    }
  } finally {
    await db.close()
  }
  return { entries, beforeLargest, largest }
}

/** Total task events of a job as a node reads them. */
export function eventCount(farm: FarmDoc, job: string): number {
  const j = farm.read(job)
  return j === undefined ? -1 : j.tasks.reduce((n, t) => n + t.length, 0)
}
