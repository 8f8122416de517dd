// The scheduler benchmark's 100-peer x 5,000-task mix over many seeds: one seed can flatter or wrong
// any scheduler (a single 5x task landing on a slow host at the end decides a makespan), so this runs
// the auction (with and without its end-of-queue risk term) and FCFS pull on each seed's farm and tasks.
// Usage: npm run bench:sched-seeds [-- --seeds 1-12]
// Prints a table, then as its last stdout line one JSON object. Progress: stderr.

import { scenario, simulate } from '../test/sim/scenario.ts'
import { Grid, round } from './sched-report.ts'

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

const args = process.argv.slice(2)
const at = args.indexOf('--seeds')
const range = at >= 0 ? args[at + 1] : '1-12'
const m = /^(\d+)-(\d+)$/.exec(range ?? '')
if (m === null) throw new Error(`--seeds takes FIRST-LAST, got ${range}`)
const seeds = Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, i) => Number(m[1]) + i)

const rows: { seed: number; auction: number; noTail: number; fcfs: number }[] = []
for (const seed of seeds) {
  const t0 = performance.now()
  const o = simulate(scenario({ seed, baselines: ['fcfs'] }))
  const plain = simulate(scenario({ seed, baselines: [], work: { tailRisk: false } }))
  rows.push({ seed, auction: o.auction.ratio, noTail: plain.auction.ratio, fcfs: o.fcfs!.ratio })
  console.error(`seed ${seed}: ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

const g = new Grid(['auction', 'no tail term', 'FCFS pull'])
g.section('makespan / lower bound, 100 peers x 5,000 tasks (speeds 1-8x, lognormal tasks)')
for (const r of rows)
  g.row(`seed ${r.seed}`, [r.auction, r.noTail, r.fcfs], r.auction < r.fcfs ? '' : 'FCFS better')
const col = (k: 'auction' | 'noTail' | 'fcfs') => rows.map((r) => r[k])
g.row('mean', [mean(col('auction')), mean(col('noTail')), mean(col('fcfs'))])
g.row('worst', [Math.max(...col('auction')), Math.max(...col('noTail')), Math.max(...col('fcfs'))])
console.log(g.render())
console.log(
  JSON.stringify({
    seeds: rows.length,
    auction_mean: round(mean(col('auction')), 3),
    auction_max: round(Math.max(...col('auction')), 3),
    auction_over_1_10: rows.filter((r) => r.auction > 1.1).length,
    no_tail_mean: round(mean(col('noTail')), 3),
    no_tail_max: round(Math.max(...col('noTail')), 3),
    fcfs_mean: round(mean(col('fcfs')), 3),
    auction_beats_fcfs: rows.filter((r) => r.auction < r.fcfs).length,
  }),
)
