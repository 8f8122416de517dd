// Cold start of a farm database in a fresh process, as a restarting node does it:
// DocStore.open (replays the log into a Y.Doc) + FarmDoc + one views() of every job.
// Usage: node --expose-gc --import tsx bench/load-child.ts DBPATH [JOBID...]; prints one JSON line.

import * as Y from 'yjs'
import { FarmDoc } from '../src/crdt/farmdoc.ts'
import { DocStore } from '../src/crdt/store.ts'

const gc = (globalThis as { gc?: () => void }).gc
const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10

function settle(): void {
  gc?.()
  gc?.()
}

async function main(): Promise<void> {
  const [dbPath, ...expectJobs] = process.argv.slice(2)
  if (dbPath === undefined) throw new Error('usage: load-child.ts DBPATH [JOBID...]')
  settle()
  const baselineRssMb = mb(process.memoryUsage().rss)

  const t0 = performance.now()
  const doc = new Y.Doc({ gc: true })
  const { store, loaded } = await DocStore.open(dbPath, doc)
  const t1 = performance.now()
  const farm = new FarmDoc(doc, { peer: 'load-child' })
  const views = farm.views()
  const t2 = performance.now()

  for (const id of expectJobs) if (!farm.has(id)) throw new Error(`job ${id} missing after load`)
  let events = 0
  for (const id of farm.jobIds()) {
    const job = farm.read(id)
    if (job !== undefined) for (const t of job.tasks) events += t.length
  }
  const doneTasks = views.reduce((n, v) => n + v.counts.DONE, 0)

  settle()
  const mem = process.memoryUsage()
  const report = {
    gcExposed: gc !== undefined,
    baselineRssMb,
    rssMb: mb(mem.rss),
    heapUsedMb: mb(mem.heapUsed),
    openMs: t1 - t0,
    viewsMs: t2 - t1,
    loadMs: t2 - t0,
    updates: loaded.updates,
    jobs: views.length,
    events,
    doneTasks,
  }
  // keep the farm alive until measured
  if (views.length < 0 || doc.clientID < 0) console.log('unreachable')
  await store.close()
  console.log(JSON.stringify(report))
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
