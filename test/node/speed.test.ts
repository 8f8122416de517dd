// The speed benchmark (deterministic work, bounded result, the event loop keeps turning) and its
// refinement from task times (pure EWMA, clamped, robust to nonsense samples).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  benchmarkSpeed,
  benchmarkUnit,
  clampSpeed,
  MAX_SAMPLE_RATIO,
  REFERENCE_UNITS_PER_SECOND,
  refineSpeed,
  UNIT_CHECKSUM,
} from '../../src/node/speed.ts'
import { MAX_SPEED, MIN_SPEED } from '../../src/protocol/heartbeat/codec.ts'

describe('speed benchmark', () => {
  it('one unit is deterministic', () => {
    assert.equal(benchmarkUnit(), UNIT_CHECKSUM)
    assert.equal(benchmarkUnit(), benchmarkUnit())
  })

  it('measures a bounded speed relative to the reference, and lets timers run meanwhile', async () => {
    let ticks = 0
    const timer = setInterval(() => ticks++, 5)
    try {
      const r = await benchmarkSpeed({ durationMs: 150, warmupMs: 30 })
      assert.ok(r.speed >= MIN_SPEED && r.speed <= MAX_SPEED)
      assert.ok(Math.abs(r.speed - r.unitsPerSecond / REFERENCE_UNITS_PER_SECOND) < 1e-9)
      assert.ok(r.units > 0 && r.elapsedMs >= 180, JSON.stringify(r))
      // ~10 ms of CPU per slice (13 ms seen when idle); the margin is for a busy machine that preempts the
      // process mid-slice (36 ms seen with load 2 on 2 cores)
      assert.ok(r.longestSliceMs < 100, `held the event loop for ${r.longestSliceMs} ms`)
      assert.ok(ticks >= 5, `only ${ticks} timer ticks during ${r.elapsedMs} ms`)
    } finally {
      clearInterval(timer)
    }
  })

  it('stops when aborted', async () => {
    const ac = new AbortController()
    const run = benchmarkSpeed({ durationMs: 10_000, signal: ac.signal })
    setTimeout(() => ac.abort(), 30)
    await assert.rejects(run, { name: 'AbortError' })
  })
})

describe('refineSpeed', () => {
  it('moves by alpha towards the speed a task showed', () => {
    // expected 10 s at speed 1, took 5 s: the task showed speed 2
    assert.equal(refineSpeed(1, { expectedSeconds: 10, actualSeconds: 5 }, 0.5), 1.5)
    assert.equal(refineSpeed(2, { expectedSeconds: 10, actualSeconds: 20 }, 0.25), 1.75)
    assert.equal(refineSpeed(3, { expectedSeconds: 7, actualSeconds: 7 }), 3)
    assert.equal(refineSpeed(1, { expectedSeconds: 10, actualSeconds: 5 }, 1), 2)
  })

  it('converges on the true speed', () => {
    const truth = 2.5
    let speed = 1
    for (let i = 0; i < 60; i++) {
      const work = 100 + i
      speed = refineSpeed(speed, { expectedSeconds: work / speed, actualSeconds: work / truth })
    }
    assert.ok(Math.abs(speed - truth) < 0.01, `${speed}`)
  })

  it('ignores samples that are not positive and finite', () => {
    for (const [e, a] of [
      [0, 5],
      [5, 0],
      [-1, 5],
      [5, Number.NaN],
      [Number.POSITIVE_INFINITY, 5],
    ] as const) {
      assert.equal(refineSpeed(1.3, { expectedSeconds: e, actualSeconds: a }), 1.3)
    }
  })

  it('one odd task moves the estimate by a bounded factor, and the result stays in bounds', () => {
    const up = refineSpeed(1, { expectedSeconds: 1000, actualSeconds: 1 }, 0.2)
    assert.equal(up, 0.8 + 0.2 * MAX_SAMPLE_RATIO)
    const down = refineSpeed(1, { expectedSeconds: 1, actualSeconds: 1000 }, 0.2)
    assert.ok(Math.abs(down - (0.8 + 0.2 / MAX_SAMPLE_RATIO)) < 1e-12)
    assert.equal(refineSpeed(999, { expectedSeconds: 10, actualSeconds: 1 }, 1), MAX_SPEED)
    assert.equal(refineSpeed(0.011, { expectedSeconds: 1, actualSeconds: 10 }, 1), MIN_SPEED)
  })

  it('refuses an alpha outside (0, 1]', () => {
    for (const alpha of [0, -0.1, 1.5, Number.NaN]) {
      assert.throws(() => refineSpeed(1, { expectedSeconds: 1, actualSeconds: 1 }, alpha), RangeError)
    }
  })

  it('clampSpeed: never 0, never absurd', () => {
    assert.equal(clampSpeed(0), MIN_SPEED)
    assert.equal(clampSpeed(-3), MIN_SPEED)
    assert.equal(clampSpeed(Number.NaN), MIN_SPEED)
    assert.equal(clampSpeed(Number.POSITIVE_INFINITY), MAX_SPEED)
    assert.equal(clampSpeed(1.7), 1.7)
  })
})
