// Scheduler benchmark: the auction (src/sched/auction.ts) in the discrete-event farm simulator of
// test/sim, against FCFS pull and random on the same farms and tasks, for 10, 100 and 1,000 peers.
// Usage: npm run bench:sched [-- --seed N] [-- --quick]
// Prints a table, then as its last stdout line one JSON object (the 100-peer mix). Progress: stderr.

import { cpus } from 'node:os'
import type { Figures } from '../test/sim/metrics.ts'
import { instantNet, lanNet, type NetSpec } from '../test/sim/net.ts'
import { type Outcome, type Scenario, scenario, simulate } from '../test/sim/scenario.ts'
import { Grid, loopbackFigures, round } from './sched-report.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const seedAt = args.indexOf('--seed')
const seed = seedAt >= 0 ? Number(args[seedAt + 1]) : 1
if (!Number.isInteger(seed)) throw new Error(`--seed needs an integer, got ${args[seedAt + 1]}`)
const progress = (line: string) => console.error(line)

const CHEAP = { kind: 'cheap', slack: 0.25 } as const

interface Size {
  readonly peers: number
  readonly tasks: number
  readonly net: NetSpec
  readonly tick: number
  /** The extra fault and single-job runs: only on the size the JSON reports. */
  readonly detail: boolean
}

const sizes: Size[] = quick
  ? [
      { peers: 10, tasks: 200, net: lanNet, tick: 0.02, detail: false },
      { peers: 100, tasks: 1000, net: lanNet, tick: 0.02, detail: true },
      { peers: 1000, tasks: 2000, net: instantNet, tick: 1, detail: false },
    ]
  : [
      { peers: 10, tasks: 500, net: lanNet, tick: 0.02, detail: false },
      { peers: 100, tasks: 5000, net: lanNet, tick: 0.02, detail: true },
      { peers: 1000, tasks: 5000, net: instantNet, tick: 0.5, detail: false },
    ]

interface SizeResult {
  readonly size: Size
  readonly fast: Outcome
  readonly exact: Figures
  readonly cheap: Outcome
  readonly crash: Outcome
  readonly chaos?: Outcome
  readonly oneJob?: Outcome
  readonly wallS: number
}

function run(label: string, s: Scenario): Outcome {
  const t0 = performance.now()
  const o = simulate(s)
  const wall = ((performance.now() - t0) / 1000).toFixed(1)
  progress(`  ${s.farm.peers} peers, ${label}: ${o.auction.decisions} schedule() calls, ${wall} s`)
  return o
}

function runSize(size: Size): SizeResult {
  const t0 = performance.now()
  const base = scenario({
    seed,
    farm: { peers: size.peers },
    work: { tasks: size.tasks },
    net: size.net,
    tick: size.tick,
  })
  const varied = { ...base.farm, watts: 'varied' as const }
  const fast = run('fast (job estimates) + baselines', base)
  const exact = run('fast (exact estimates)', {
    ...base,
    work: { ...base.work, estimate: 'exact' },
    baselines: [],
  }).auction
  const cheap = run('cheap on varied W/speed', {
    ...base,
    farm: varied,
    work: { ...base.work, policy: CHEAP },
    baselines: ['fcfs'],
  })
  const crash = run('20% crash', { ...base, crash: 0.2, baselines: [] })
  let chaos: Outcome | undefined
  let oneJob: Outcome | undefined
  if (size.detail) {
    const partitions = [{ at: 0.3 * fast.bound, duration: 60, share: 0.5 }]
    chaos = run('20% crash + 60 s partition + 2% loss', {
      ...base,
      crash: 0.2,
      net: { ...base.net, loss: 0.02, partitions },
      baselines: [],
    })
    oneJob = run('cheap, one job', {
      ...base,
      farm: varied,
      work: { ...base.work, jobs: 1, policy: CHEAP },
      baselines: ['fcfs'],
    })
  }
  return { size, fast, exact, cheap, crash, chaos, oneJob, wallS: (performance.now() - t0) / 1000 }
}

const netLabel = (n: NetSpec) =>
  n.delay === 0 && n.jitter === 0
    ? 'instant (one shared view)'
    : `${n.delay * 1000}+U(0,${n.jitter * 1000}) ms`
const ratioOf = (a: Figures, b: Figures) => a.energy / b.energy
const pct = (x: number) => `${x.toFixed(2)}%`
/** A ratio, or how far a run got when it had not finished by its horizon. */
const unfinished = (o: Outcome) => {
  const n = o.run.doneAt.length
  if (o.auction.lost === 0) return o.auction.ratio
  return `> ${(o.run.end / o.bound).toFixed(1)}: ${n - o.auction.lost}/${n} done`
}

async function main(): Promise<void> {
  progress(`bench:sched seed ${seed}${quick ? ' (quick)' : ''} on ${cpus().length} CPUs`)
  const results = sizes.map(runSize)
  const mid = results.find((r) => r.size.detail)!
  const loop = await loopbackFigures(quick)

  const g = new Grid(results.map((r) => `${r.size.peers.toLocaleString('en-US')} peers`))
  const row = (label: string, f: (r: SizeResult) => string | number | null | undefined, note = '') =>
    g.row(
      label,
      results.map((r) => f(r)),
      note,
    )
  g.section(`farm (seed ${seed}): speeds log-uniform 1x-8x, 1 slot, task works lognormal sigma 0.5`)
  row('tasks (20 jobs, job medians 30-120 s)', (r) => r.size.tasks)
  row('gossip delay', (r) => netLabel(r.size.net))
  row('decision tick / settle window', (r) => `${r.size.tick * 1000} / 50 ms`)
  row('lower bound (s)', (r) => r.fast.bound, 'max_k sum(k largest works) / sum(min(k,m) fastest speeds)')
  g.section('makespan / bound (no faults)')
  row('auction, per-job work estimates', (r) => r.fast.auction.ratio, 'what a node learns (JSON)')
  row('auction, exact per-task estimates', (r) => r.exact.ratio, 'upper bound on what estimates allow')
  row('FCFS pull (no poll delay)', (r) => r.fast.fcfs!.ratio)
  row('random free host', (r) => r.fast.random!.ratio)
  row('auction better than FCFS', (r) => (r.fast.auction.ratio < r.fast.fcfs!.ratio ? 'yes' : 'NO'))
  row(
    'ready -> start p50 / p95 (s)',
    (r) => `${r.fast.auction.waitP50.toFixed(0)} / ${r.fast.auction.waitP95.toFixed(0)}`,
  )
  row('duplicates (no faults)', (r) => pct(r.fast.auction.duplicatesPct))
  row('claims withdrawn (lost the settle)', (r) => r.fast.run.withdrawals)
  g.section(`energy, hosts differ in W per unit of speed (8x spread), prices 0.08-0.40, 20% unknown`)
  row(
    `prefer cheap (slack ${CHEAP.slack}) cost / FCFS cost`,
    (r) => ratioOf(r.cheap.auction, r.cheap.fcfs!),
    'JSON',
  )
  row('prefer cheap makespan / bound', (r) => unfinished(r.cheap), `promise: <= ${1 + CHEAP.slack}`)
  row('one cheap job: cost / FCFS', (r) => r.oneJob && ratioOf(r.oneJob.auction, r.oneJob.fcfs!))
  row('one cheap job: makespan / bound', (r) => r.oneJob && unfinished(r.oneJob))
  g.section('faults')
  row('20% crash: lost tasks', (r) => r.crash.auction.lost, 'JSON (100 peers)')
  row(
    '20% crash: duplicates / requeues',
    (r) => `${pct(r.crash.auction.duplicatesPct)} / ${r.crash.run.requeues}`,
  )
  row('20% crash: makespan / fault-free bound', (r) => r.crash.auction.ratio)
  row('+ 60 s partition + 2% loss: lost', (r) => r.chaos?.auction.lost)
  row('+ 60 s partition + 2% loss: duplicates', (r) => r.chaos && pct(r.chaos.auction.duplicatesPct))
  g.section('scheduler CPU (real time of schedule(), this machine)')
  row(
    'calls / answered from an equal view',
    (r) => `${r.fast.auction.decisions} / ${r.fast.run.sharedDecisions}`,
  )
  row('per call p50 (us)', (r) => r.fast.auction.decisionUsP50, 'JSON: decision_us (100 peers)')
  row(
    'per call p95 / max (us)',
    (r) => `${r.fast.auction.decisionUsP95.toFixed(0)} / ${r.fast.auction.decisionUsMax.toFixed(0)}`,
  )
  g.section('real loopback farm (filled by loopbackFigures())')
  const lf = (x: number | null) => (x === null ? 'not measured here' : x)
  row('submit -> start (ms)', (r) => (r === mid ? lf(loop.submit_to_start_ms) : null))
  row('task gap p50 / p95 (ms)', (r) =>
    r !== mid
      ? null
      : loop.task_gap_ms_p50 === null
        ? 'not measured here'
        : `${loop.task_gap_ms_p50} / ${loop.task_gap_ms_p95}`,
  )
  row('simulation wall time (s)', (r) => r.wallS)
  console.log(g.render())
  console.log(
    [
      '',
      'model: each peer runs schedule() of src/sched/auction.ts on its own view (facts reach it after the',
      'gossip delay, lazily), claims only its own start-now placements, starts after the 50 ms settle if its',
      'claim is the best it knows (bestClaim), stops when it learns it lost; a sweeping peer requeues what a',
      'peer silent for the dead threshold held. Baselines: one central queue, no gossip, no settle, no faults.',
    ].join('\n'),
  )

  const m = mid.fast
  const targets = [
    ['auction <= 1.10 at 100 peers', m.auction.ratio <= 1.1],
    [
      'auction better than FCFS on every size',
      results.every((r) => r.fast.auction.ratio < r.fast.fcfs!.ratio),
    ],
    ['prefer cheap >= 20% below FCFS', ratioOf(mid.cheap.auction, mid.cheap.fcfs!) <= 0.8],
    ['duplicates < 0.5% without faults', results.every((r) => r.fast.auction.duplicatesPct < 0.5)],
    ['0 lost tasks with 20% crashing', results.every((r) => r.crash.auction.lost === 0)],
  ] as const
  console.log(`\ntargets: ${targets.map(([t, ok]) => `${ok ? 'met' : 'MISSED'}: ${t}`).join('; ')}`)
  console.log(
    JSON.stringify({
      seed,
      quick,
      peers: mid.size.peers,
      tasks: mid.size.tasks,
      auction_ratio: round(m.auction.ratio),
      auction_ratio_exact_estimates: round(mid.exact.ratio),
      fcfs_ratio: round(m.fcfs!.ratio),
      random_ratio: round(m.random!.ratio),
      cheap_cost_vs_fcfs: round(ratioOf(mid.cheap.auction, mid.cheap.fcfs!)),
      cheap_makespan_ratio: round(mid.cheap.auction.ratio),
      duplicates_pct: round(m.auction.duplicatesPct),
      lost_tasks_crash20: mid.crash.auction.lost,
      decision_us: round(m.auction.decisionUsP50, 0),
      ...loop,
    }),
  )
}

await main()
