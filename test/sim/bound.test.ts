import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { energyCost, makespanBound, percentile } from './bound.ts'

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} != ${b}`)

/** Makespan of a simple greedy schedule: each task, largest first, to the machine finishing it first. */
function greedy(works: readonly number[], speeds: readonly number[]): number {
  const free = speeds.map(() => 0)
  for (const w of [...works].sort((a, b) => b - a)) {
    let best = 0
    for (let i = 1; i < speeds.length; i++) {
      if (free[i]! + w / speeds[i]! < free[best]! + w / speeds[best]!) best = i
    }
    free[best]! += w / speeds[best]!
  }
  return Math.max(...free)
}

describe('makespan bound', () => {
  it('is the largest task on the fastest host when that dominates (k = 1)', () => {
    close(makespanBound([10], [2, 1]), 5)
    close(makespanBound([10, 1, 1], [4, 1, 1]), 2.5) // k=1: 10/4; k=2: 11/5; k=3: 12/6
  })

  it('counts the k largest tasks on the k fastest hosts (1 < k <= m)', () => {
    close(makespanBound([6, 6], [4, 1]), 12 / 5)
    close(makespanBound([9, 9, 1], [6, 1, 1]), 18 / 7) // k=2: 18/7 beats k=1: 9/6 and k=3: 19/8
    close(makespanBound([8, 8, 8], [8, 4, 1]), 24 / 13)
  })

  it('uses all hosts for k > m: total work over total speed', () => {
    close(makespanBound([4, 4, 4, 4], [1, 1]), 8)
    close(makespanBound([3, 3, 3], [3]), 3)
    close(makespanBound([5, 1, 1, 1, 1, 1], [2, 2]), 10 / 4) // k=1: 5/2 = k=6: 10/4
    close(makespanBound([6, 1, 1, 1, 1, 1, 1], [2, 2]), 3) // k=1 wins: 6/2 > 12/4
  })

  it('handles the edges', () => {
    assert.equal(makespanBound([], [1]), 0)
    assert.equal(makespanBound([1], []), Number.POSITIVE_INFINITY)
  })

  it('never exceeds the makespan of a real schedule, and a greedy one stays near it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.1, max: 100, noNaN: true }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.double({ min: 1, max: 8, noNaN: true }), { minLength: 1, maxLength: 8 }),
        (works, speeds) => {
          const b = makespanBound(works, speeds)
          const g = greedy(works, speeds)
          assert.ok(b <= g * (1 + 1e-9), `bound ${b} > greedy ${g}`)
          // and the bound is not absurdly low: a plain greedy schedule lands near it
          assert.ok(g <= 2 * b + Math.max(...works) / Math.min(...speeds), `greedy ${g} far from ${b}`)
        },
      ),
    )
  })
})

describe('figures', () => {
  it('prices energy in kWh x price', () => {
    close(energyCost(3600, 1000, 0.25), 0.25) // 1 kW for an hour at 0.25 per kWh
  })

  it('interpolates percentiles', () => {
    assert.equal(percentile([3, 1, 2], 0.5), 2)
    assert.equal(percentile([1, 2, 3, 4], 0.5), 2.5)
    assert.equal(percentile([5], 0.95), 5)
    assert.ok(Number.isNaN(percentile([], 0.5)))
  })
})
