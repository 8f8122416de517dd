// What the update guard (src/crdt/guard.ts) costs on a large sync: a farm of 200 jobs of 50 tasks
// written by 4 peers, every task run twice on different peers (300 events a job, and 10,000 output
// records overwritten: 10,000 ranges in the delete set). Times the guard on the full state against a
// newcomer, a replica that has it all and one without the re-runs, beside what a node pays for that
// update anyway (decoding it, applying it), and an anti-entropy sync between caught-up replicas.
// Usage: npm run bench:guard [-- --quick]
// Prints a table, then as its last stdout line one JSON object. Progress goes to stderr.

import * as Y from 'yjs'
import { FarmDoc } from '../src/crdt/farmdoc.ts'
import { updateGuard } from '../src/crdt/guard.ts'
import { DEFAULT_SCHED } from '../src/crdt/schedspec.ts'
import { fmt, kb, median, ms, round, Table } from './lib.ts'

const quick = process.argv.includes('--quick')
const cfg = quick ? { jobs: 40, runs: 5 } : { jobs: 200, runs: 15 }
const TASKS = 50
const PEERS = 4
const H = 'b'.repeat(64)

function spec(id: string) {
  return {
    id,
    name: `job ${id}`,
    group: null,
    app: 'blender',
    args: {},
    frames: { start: 1, end: TASKS, step: 1 },
    chunk: 1,
    taskCount: TASKS,
    priority: 0,
    maxRetries: 3,
    dependsOn: [],
    sched: DEFAULT_SCHED,
    submittedBy: 'p0',
    submittedAt: 1_700_000_000_000,
  }
}

/** Every peer gets what every other has (no guard: this is the farm being built). */
function syncAll(docs: readonly Y.Doc[]): void {
  for (const from of docs)
    for (const to of docs)
      if (from !== to) Y.applyUpdate(to, Y.encodeStateAsUpdate(from, Y.encodeStateVector(to)))
}

function buildFarm(): { full: Y.Doc; beforeOverwrites: Uint8Array } {
  const docs = Array.from({ length: PEERS }, () => new Y.Doc())
  const farms = docs.map((d, i) => new FarmDoc(d, { peer: `p${i}` }))
  // as a worker writes them: claim, start, then the task's output and its done in one update
  const run = (f: FarmDoc, job: string, task: number, attempt: number) => {
    f.appendTaskEvents(job, [{ kind: 'claim', task, attempt, bid: 1 }])
    f.appendTaskEvents(job, [{ kind: 'start', task, attempt }])
    const frame = task + 1
    const path = `frame_${String(frame).padStart(4, '0')}.png`
    f.recordOutput(job, { path, hash: H, size: 1000, frame, task, attempt }, { deferMs: 60_000 })
    f.appendTaskEvents(job, [{ kind: 'done', task, attempt }])
  }
  for (let j = 0; j < cfg.jobs; j++) farms[j % PEERS]!.addJob(spec(`job${j}`))
  syncAll(docs)
  for (let j = 0; j < cfg.jobs; j++)
    for (let t = 0; t < TASKS; t++) run(farms[(j + t) % PEERS]!, `job${j}`, t, 0)
  syncAll(docs)
  const beforeOverwrites = Y.encodeStateAsUpdate(docs[0]!)
  // a re-run of every job on other peers: every output is recorded again
  for (let j = 0; j < cfg.jobs; j++)
    for (let t = 0; t < TASKS; t++) run(farms[(j + t + 1) % PEERS]!, `job${j}`, t, 1)
  syncAll(docs)
  return { full: docs[0]!, beforeOverwrites }
}

/** Median wall time of `f` over cfg.runs runs, after one warm-up; `setup` runs outside the timing. */
function time<T>(setup: () => T, f: (x: T) => void): number {
  const samples: number[] = []
  for (let i = 0; i <= cfg.runs; i++) {
    const x = setup()
    const t0 = performance.now()
    f(x)
    if (i > 0) samples.push(performance.now() - t0)
  }
  return median(samples)
}

const progress = (line: string) => console.error(line)
progress(`building a farm of ${cfg.jobs} jobs x ${TASKS} tasks, each run twice ...`)
const { full, beforeOverwrites } = buildFarm()
const update = Y.encodeStateAsUpdate(full)
const decoded = Y.decodeUpdate(update)
let dsRanges = 0
for (const r of decoded.ds.clients.values()) dsRanges += r.length
const replica = (from?: Uint8Array) => {
  const d = new Y.Doc()
  if (from !== undefined) Y.applyUpdate(d, from)
  return d
}

// a sync between replicas that have it all: no structs, the farm's whole delete set
const dsOnly = Y.encodeStateAsUpdate(full, Y.encodeStateVector(full))

progress('timing ...')
const decodeMs = time(
  () => undefined,
  () => Y.decodeUpdate(update),
)
const applyMs = time(
  () => replica(),
  (d) => Y.applyUpdate(d, update),
)
// as doc-sync calls it: with the update it decoded for its own check
const guardMs = (to: () => Y.Doc, u = update, d = decoded) =>
  time(
    () => updateGuard(to()),
    (g) => g(u, d),
  )
const newcomerMs = guardMs(() => replica())
const caughtUpMs = guardMs(() => replica(update))
const staleMs = guardMs(() => replica(beforeOverwrites))
const dsOnlyMs = time(
  () => updateGuard(replica(update)),
  (g) => g(dsOnly),
)

const t = new Table()
t.section(`update guard on a full-state sync update (median of ${cfg.runs})`)
t.row(
  'farm',
  `${cfg.jobs} jobs`,
  `${TASKS} tasks each run twice: ${TASKS} outputs overwritten, ${TASKS * 6} events; ${PEERS} peers`,
)
t.row(
  'update',
  kb(update.byteLength),
  `${fmt(decoded.structs.length)} structs, ${fmt(dsRanges)} delete ranges`,
)
t.row('decode (Y.decodeUpdate)', ms(decodeMs), "doc-sync's own check, before the guard: paid anyway")
t.row('apply to an empty replica', ms(applyMs), 'what a newcomer pays for the update anyway')
t.row('guard, newcomer (empty replica)', ms(newcomerMs), 'every struct new, every delete of its own items')
t.row('guard, replica that has it all', ms(caughtUpMs), 'every deleted record already gone here')
t.row(
  'guard, replica without the re-run',
  ms(staleMs),
  `the delete set hits ${fmt(cfg.jobs * TASKS)} live records`,
)
t.row(
  'decode + guard, anti-entropy sync',
  ms(dsOnlyMs),
  `${kb(dsOnly.byteLength)}: no structs, the whole delete set, to a replica that has it all`,
)
t.print()
console.log(
  JSON.stringify({
    jobs: cfg.jobs,
    update_bytes: update.byteLength,
    delete_ranges: dsRanges,
    decode_ms: round(decodeMs),
    apply_ms: round(applyMs),
    guard_newcomer_ms: round(newcomerMs),
    guard_caught_up_ms: round(caughtUpMs),
    guard_stale_ms: round(staleMs),
    anti_entropy_ms: round(dsOnlyMs),
  }),
)
