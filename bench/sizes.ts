// The size side of replication: one job of 10,000 tasks fresh and after claim+start+done of every
// task (doc, disk, cold load in a fresh process, a newcomer's catch-up), then 100,000 task events.

import { cp } from 'node:fs/promises'
import { join } from 'node:path'
import * as Y from 'yjs'
import { DocStore } from '../src/crdt/store.ts'
import {
  addBigJob,
  batchTrend,
  eventCount,
  logLayout,
  newFarm,
  openStore,
  runClean,
  runRough,
  TASKS,
  viewCostAfterUpdate,
} from './bigfarm.ts'
import {
  type Cleanup,
  dirBytes,
  fmt,
  kb,
  type LoadReport,
  loadInChild,
  ms,
  percentile,
  round,
  type Table,
  tempDir,
} from './lib.ts'
import { measureNewcomer } from './newcomer.ts'

const WORKERS = 10

export interface SizesContext {
  readonly cleanup: Cleanup
  readonly t: Table
  readonly out: Record<string, number>
  readonly newcomers: number
  readonly progress: (line: string) => void
}

function loadRows(t: Table, r: LoadReport): void {
  t.row('cold load: open store (replay log)', ms(r.openMs), `${r.updates} log entries`)
  t.row(
    'cold load: FarmDoc + views()',
    ms(r.viewsMs),
    `${r.jobs} jobs, ${fmt(r.events)} events, ${fmt(r.doneTasks)} tasks DONE`,
  )
  t.row('cold load total', ms(r.loadMs))
  t.row(
    'RSS after load (after gc)',
    `${r.rssMb} MB`,
    `fresh process; ${r.baselineRssMb} MB before opening; heap used ${r.heapUsedMb} MB; gc ${r.gcExposed ? 'exposed' : 'NOT exposed'}`,
  )
}

export async function measureSizes(o: SizesContext): Promise<void> {
  o.progress(`building a ${TASKS}-task farm...`)
  const work = await tempDir(o.cleanup, 'bigfarm')
  const db10k = join(work, 'db10k')
  const farm = await newFarm(WORKERS)
  let store = await openStore(farm, db10k)
  addBigJob(farm, 'jbig10k')
  const fresh = Y.encodeStateAsUpdate(farm.doc).byteLength
  o.out.doc_bytes_10k = fresh
  const wall0 = performance.now()
  await runClean(farm, 'jbig10k')
  const cleanWall = performance.now() - wall0
  const cleanAppend = farm.appendMs
  const cleanTrend = batchTrend(farm.batchMs)
  const active = Y.encodeStateAsUpdate(farm.doc).byteLength
  await store.flush()
  await store.close()
  const disk10k = await dirBytes(db10k)
  o.out.disk_bytes_10k = disk10k

  o.t.section(`one job of ${fmt(TASKS)} tasks (echo 1-${TASKS}, chunk 1)`)
  o.t.row('doc bytes, fresh job', fmt(fresh), `${kb(fresh)}; JSON: doc_bytes_10k`)
  o.t.row(
    'doc bytes, after claim+start+done each',
    fmt(active),
    `${kb(active)}; ${round((active - fresh) / farm.events, 1)} B per event`,
  )
  o.t.row(
    'events appended',
    fmt(farm.events),
    `${farm.batchMs.length} transactions of 100, ${WORKERS} worker peers`,
  )
  o.t.row('time inside appendTaskEvents', ms(cleanAppend), `wall ${ms(cleanWall)} with the store writing`)
  o.t.row(
    'one append: first 20 / last 20 batches',
    `${ms(cleanTrend.first)} / ${ms(cleanTrend.last)}`,
    'mean per 100-event transaction',
  )
  o.t.row('disk bytes (level dir, flushed + closed)', fmt(disk10k), `${kb(disk10k)}; JSON: disk_bytes_10k`)

  const compactDir = join(work, 'db10k-compacted')
  await cp(db10k, compactDir, { recursive: true })
  const cdoc = new Y.Doc()
  const c = await DocStore.open(compactDir, cdoc)
  await c.store.compact()
  await c.store.close()
  const compacted = await dirBytes(compactDir)
  o.t.row(
    'disk bytes after store.compact() + close',
    fmt(compacted),
    `${kb(compacted)}; LevelDB keeps the deleted entries in its log until its own compaction`,
  )

  o.progress('cold load in a child process...')
  const load10k = await loadInChild(db10k, ['jbig10k'])
  if (load10k.events !== farm.events) throw new Error(`child loaded ${load10k.events} events`)
  loadRows(o.t, load10k)
  o.out.rss_mb_10k = load10k.rssMb
  o.out.load_ms_10k = round(load10k.loadMs)

  o.progress('newcomer catch-up...')
  const nc = await measureNewcomer(o.cleanup, db10k, 'jbig10k', farm.events, o.newcomers, o.progress)
  o.t.section('a newcomer (empty data dir) bootstraps to a node holding that farm')
  o.t.row('samples', nc.totalMs.length, 'a new node each time, same holder')
  o.t.row(
    'p50 from before serve()',
    ms(percentile(nc.totalMs, 0.5)),
    `max ${ms(percentile(nc.totalMs, 1))}; JSON: newcomer_sync_ms_10k`,
  )
  o.t.row('p50 from serve() returned', ms(percentile(nc.afterStartMs, 0.5)))
  o.t.row('p50 from first peer:connect', ms(percentile(nc.afterConnectMs, 0.5)))
  o.t.row('sync bytes received by a newcomer', fmt(nc.syncBytes), kb(nc.syncBytes))
  o.t.row('holder start (loads the db)', ms(nc.holderStartMs))
  o.out.newcomer_sync_ms_10k = round(percentile(nc.totalMs, 0.5))

  o.progress('growing to 100,000 task events...')
  let compactions = 0
  store = await openStore(farm, db10k, () => compactions++)
  const before = { appendMs: farm.appendMs, batches: farm.batchMs.length, events: farm.events }
  addBigJob(farm, 'jbig10k-b')
  const wall1 = performance.now()
  await runRough(farm, 'jbig10k-b')
  const roughWall = performance.now() - wall1
  const roughTrend = batchTrend(farm.batchMs.slice(before.batches))
  const bytes100k = Y.encodeStateAsUpdate(farm.doc).byteLength
  await store.flush()
  await store.close()
  const disk100k = await dirBytes(db10k)
  o.out.doc_bytes_100k_events = bytes100k
  const total = farm.workers[0]!.farm.jobIds().reduce((n, id) => n + eventCount(farm.workers[0]!.farm, id), 0)
  o.t.section(`${fmt(total)} task events in total`)
  o.t.row(
    'mix',
    '2 jobs x 10,000 tasks',
    'job A: claim+start+done (30,000); job B: claim x2 (contested), start, fail, claim, start, done (70,000)',
  )
  o.t.row(
    'doc bytes',
    fmt(bytes100k),
    `${kb(bytes100k)}; ${round(bytes100k / total, 1)} B per event; JSON: doc_bytes_100k_events`,
  )
  o.t.row(
    'time inside appendTaskEvents, job B',
    ms(farm.appendMs - before.appendMs),
    `wall ${ms(roughWall)}; ${farm.events - before.events} events`,
  )
  o.t.row(
    'one append: first 20 / last 20 batches',
    `${ms(roughTrend.first)} / ${ms(roughTrend.last)}`,
    'job B, mean per 100-event transaction',
  )
  o.t.row(
    'disk bytes (level dir, flushed + closed)',
    fmt(disk100k),
    `${kb(disk100k)}; the store compacts past 500 log entries`,
  )
  const layout = await logLayout(db10k)
  o.t.row('store compactions while growing', compactions, 'each one encodes the whole doc')
  o.t.row(
    'log entries / sorted before the snapshot',
    `${layout.entries} / ${layout.beforeLargest}`,
    `snapshot ${kb(layout.largest)}; entries before it replay as pending structs`,
  )
  o.progress('cold load of 100k events in a child process...')
  loadRows(o.t, await loadInChild(db10k, ['jbig10k', 'jbig10k-b']))
  const cost = viewCostAfterUpdate(farm, 'jbig10k')
  o.t.row('views(), cold caches', ms(cost.coldMs), 'in this process')
  o.t.row(
    'views() after one 100-event update',
    ms(cost.afterUpdateMs),
    "what every node's dispatcher pays per update",
  )
}
