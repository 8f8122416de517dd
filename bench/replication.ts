// Replication benchmark: submit-to-visible latency on 3 and 10 real nodes, the size of a 10,000-task
// farm in memory, on the wire and on disk, its cold load in a fresh process, a newcomer's catch-up,
// and the document after 100,000 task events.
// Usage: npm run bench:replication [-- [--quick] [--execute]]
// Prints a table, then as its last stdout line one JSON object. Progress goes to stderr.

import { loadavg } from 'node:os'
import { measureVisibility, type VisibilityResult } from './latency.ts'
import { Cleanup, ms, percentile, round, Table } from './lib.ts'
import { measureSizes } from './sizes.ts'

const quick = process.argv.includes('--quick')
const execute = process.argv.includes('--execute')
const cfg = quick
  ? { jobs: 10, warmup: 2, newcomers: 1, gapMs: 10 }
  : { jobs: 60, warmup: 3, newcomers: 5, gapMs: 20 }
const progress = (line: string) => console.error(line)

function visibilityRows(t: Table, n: number, r: VisibilityResult): void {
  t.section(`submit-to-visible, ${n} nodes on 127.0.0.1 in this process`)
  t.row(
    'samples',
    r.fromCall.length,
    `${cfg.jobs} jobs x ${n - 1} other nodes (${cfg.warmup} warm-up jobs not counted)`,
  )
  t.row('missing after 15 s', r.missing)
  t.row('p50 from before the POST', ms(percentile(r.fromCall, 0.5)), 'JSON: visible_ms_p50')
  t.row('p95 from before the POST', ms(percentile(r.fromCall, 0.95)), 'JSON: visible_ms_p95')
  t.row('max from before the POST', ms(percentile(r.fromCall, 1)))
  t.row(
    'p50 / p95 from the origin commit',
    `${ms(percentile(r.fromCommit, 0.5))} / ${ms(percentile(r.fromCommit, 0.95))}`,
  )
  t.row(
    'POST round trip p50 / p95',
    `${ms(percentile(r.submitMs, 0.5))} / ${ms(percentile(r.submitMs, 0.95))}`,
  )
  t.row('nodes started / meshed in', `${ms(r.startMs)} / ${ms(r.meshMs)}`, 'mesh: all see every host alive')
  t.row(
    'connections / doc-topic mesh peers',
    `${round(r.avgConnections, 1)} / ${round(r.avgDocMeshPeers, 1)}`,
    'per node, mean',
  )
  t.row(
    'event-loop delay mean / p99 / max',
    `${ms(r.loopDelay.mean)} / ${ms(r.loopDelay.p99)} / ${ms(r.loopDelay.max)}`,
    'this process, during the measured jobs (all nodes share it)',
  )
  t.row(
    'gossip updates received / syncs run',
    `${r.gossipUpdatesReceived} / ${r.syncs}`,
    'all nodes, during the measured jobs',
  )
}

async function main(cleanup: Cleanup, t: Table, out: Record<string, number>): Promise<void> {
  t.section('setup')
  t.row(
    'mode',
    quick ? 'quick' : 'default',
    execute ? 'nodes run the echo jobs' : 'echo/sleep disabled on every node: replication only',
  )
  t.row(
    'load average at start',
    loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
    '1 / 5 / 15 min',
  )
  t.row(
    'latency measured',
    'per (job, other node)',
    "t0 just before the POST; t1 = the observer's doc 'update' event",
  )

  for (const n of [3, 10]) {
    progress(`visibility with ${n} nodes...`)
    const r = await measureVisibility(cleanup, {
      nodes: n,
      jobs: cfg.jobs,
      warmup: cfg.warmup,
      gapMs: cfg.gapMs,
      execute,
      progress,
    })
    visibilityRows(t, n, r)
    out[`visible_ms_p50_${n}`] = round(percentile(r.fromCall, 0.5))
    out[`visible_ms_p95_${n}`] = round(percentile(r.fromCall, 0.95))
  }
  await measureSizes({ cleanup, t, out, newcomers: cfg.newcomers, progress })
}

async function run(): Promise<number> {
  const cleanup = new Cleanup()
  const table = new Table()
  const out: Record<string, number> = {}
  const started = performance.now()
  let code = 0
  const onSignal = () => {
    progress('interrupted: cleaning up')
    void cleanup.runAll().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await main(cleanup, table, out)
  } catch (err) {
    console.error('benchmark failed:', err)
    code = 1
  } finally {
    progress('cleaning up...')
    await cleanup.runAll()
  }
  table.section('run')
  table.row('wall time', ms(performance.now() - started))
  table.print()
  const keys = [
    'visible_ms_p50_3',
    'visible_ms_p95_3',
    'visible_ms_p50_10',
    'visible_ms_p95_10',
    'doc_bytes_10k',
    'disk_bytes_10k',
    'rss_mb_10k',
    'load_ms_10k',
    'newcomer_sync_ms_10k',
    'doc_bytes_100k_events',
  ]
  if (code === 0) console.log(JSON.stringify(Object.fromEntries(keys.map((k) => [k, out[k]]))))
  return code
}

// libp2p can leave handles behind: exit once everything is stopped and removed
run().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err)
    process.exit(1)
  },
)
