import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Figures } from './metrics.ts'
import { type Outcome, scenario, simulate } from './scenario.ts'

/** Everything but the scheduler's wall time, which is measured, never simulated. */
function replayable(o: Outcome) {
  const strip = (f: Figures | undefined) =>
    f && { ...f, decisionUsP50: 0, decisionUsP95: 0, decisionUsMax: 0 }
  return {
    auction: strip(o.auction),
    fcfs: strip(o.fcfs),
    random: strip(o.random),
    executions: o.run.executions,
    doneAt: [...o.run.doneAt],
    claims: o.run.claims,
    withdrawals: o.run.withdrawals,
    requeues: o.run.requeues,
    decisions: o.run.decisionsUs.length,
  }
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe('farm simulator', () => {
  it('replays a run from its seed, faults included', () => {
    const s = scenario({
      seed: 7,
      farm: { peers: 20 },
      work: { tasks: 300, jobs: 4 },
      net: { loss: 0.05, partitions: [{ at: 60, duration: 45, share: 0.5 }] },
      crash: 0.2,
    })
    const a = replayable(simulate(s))
    assert.deepEqual(replayable(simulate(s)), a)
    assert.notDeepEqual(replayable(simulate({ ...s, seed: 8 })).doneAt, a.doneAt)
  })

  it('runs every task of a small farm exactly once without faults', () => {
    const o = simulate(scenario({ farm: { peers: 10 }, work: { tasks: 200, jobs: 4 } }))
    const runs = new Map<number, number>()
    for (const e of o.run.executions) {
      assert.equal(e.outcome, 'done')
      runs.set(e.task, (runs.get(e.task) ?? 0) + 1)
    }
    assert.equal(runs.size, 200)
    assert.ok([...runs.values()].every((n) => n === 1))
    assert.equal(o.auction.lost, 0)
    assert.equal(o.auction.duplicatesPct, 0)
    assert.ok(o.auction.ratio >= 1 && o.auction.ratio < 1.5, `ratio ${o.auction.ratio}`)
  })

  it('beats FCFS pull on makespan over the bound on a heterogeneous farm', () => {
    const farm = { peers: 30, speedMin: 1, speedMax: 8 }
    // with exact per-task estimates, on every seed
    for (const seed of [1, 2, 3]) {
      const o = simulate(
        scenario({ seed, farm, work: { tasks: 900, estimate: 'exact' }, baselines: ['fcfs'] }),
      )
      assert.ok(o.auction.ratio < o.fcfs!.ratio, `seed ${seed}: ${o.auction.ratio} vs ${o.fcfs!.ratio}`)
    }
    // with per-job estimates (what a node learns), on average: single tails are luck
    const runs = [1, 2, 3, 4, 5, 6].map((seed) =>
      simulate(scenario({ seed, farm, work: { tasks: 900 }, baselines: ['fcfs'] })),
    )
    const auction = mean(runs.map((o) => o.auction.ratio))
    const fcfs = mean(runs.map((o) => o.fcfs!.ratio))
    assert.ok(auction < fcfs, `${auction} vs ${fcfs}`)
  })

  it('loses no task when 20% of the peers crash, and makes no duplicates', () => {
    const o = simulate(
      scenario({ farm: { peers: 50 }, work: { tasks: 1000 }, net: { loss: 0.01 }, crash: 0.2 }),
    )
    assert.equal(o.crashed, 10)
    assert.equal(o.auction.lost, 0)
    assert.ok(o.run.requeues > 0, 'crashed peers held tasks that had to be requeued')
    assert.ok(o.run.executions.some((e) => e.outcome === 'crashed'))
    assert.ok(o.auction.duplicatesPct < 0.5, `${o.auction.duplicatesPct}%`)
  })

  it('keeps duplicates under 0.5% without faults on a delayed, jittered network', () => {
    const o = simulate(scenario({ farm: { peers: 50 }, work: { tasks: 1000 }, baselines: [] }))
    assert.equal(o.auction.lost, 0)
    assert.ok(o.auction.duplicatesPct < 0.5, `${o.auction.duplicatesPct}%`)
  })

  it('runs tasks twice across a long partition, then heals and loses nothing', () => {
    const o = simulate(
      scenario({
        farm: { peers: 20 },
        work: { tasks: 400 },
        net: { partitions: [{ at: 30, duration: 60, share: 0.5 }] },
        baselines: [],
      }),
    )
    assert.equal(o.auction.lost, 0)
    assert.ok(o.auction.duplicatesPct > 0, 'both halves ran the head of the queue')
    assert.ok(
      o.run.executions.some((e) => e.outcome === 'aborted'),
      'the loser stops when it hears',
    )
  })
})
