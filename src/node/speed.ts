// How fast this host works, in work units per second (1.0 = the reference machine): a short benchmark
// at node start, then refined from the times of the tasks it really runs.

import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { MAX_SPEED, MIN_SPEED } from '../protocol/heartbeat/codec.ts'

/**
 * Benchmark units per second on the reference machine, which has speed 1.0 by definition. Measured on
 * 2026-11-23 on a 2-core AMD EPYC VM (Linux, Node 22.23.3): median of 18 runs of `benchmarkSpeed()`
 * (range 7344-8121, so two runs on one machine differ by up to ~10%).
 * Changing the unit (below) changes every host's speed: re-measure and update this together with it.
 */
export const REFERENCE_UNITS_PER_SECOND = 7900

/** Total Mandelbrot iterations in one unit: checks the workload is deterministic (and not optimised away). */
export const UNIT_CHECKSUM = 47270

const GRID = 48
const MAX_ITER = 64

/**
 * One unit of work: a GRID x GRID Mandelbrot image over [-2, 0.5] x [-1.25, 1.25], at most MAX_ITER
 * iterations per pixel. Floating-point bound like rendering, no allocation, no I/O; returns the total
 * iteration count.
 */
export function benchmarkUnit(): number {
  let total = 0
  for (let py = 0; py < GRID; py++) {
    const ci = -1.25 + (2.5 * py) / GRID
    for (let px = 0; px < GRID; px++) {
      const cr = -2 + (2.5 * px) / GRID
      let zr = 0
      let zi = 0
      let n = 0
      while (n < MAX_ITER && zr * zr + zi * zi <= 4) {
        const t = zr * zr - zi * zi + cr
        zi = 2 * zr * zi + ci
        zr = t
        n++
      }
      total += n
    }
  }
  return total
}

export interface BenchmarkOptions {
  /** Measured time, in ms (default 200), after a warm-up that lets the JIT compile the unit. */
  readonly durationMs?: number
  readonly warmupMs?: number
  /** Longest stretch without yielding to the event loop, in ms (default 10). */
  readonly sliceMs?: number
  readonly signal?: AbortSignal
}

export interface BenchmarkResult {
  /** Clamped to [MIN_SPEED, MAX_SPEED]. */
  readonly speed: number
  readonly unitsPerSecond: number
  readonly units: number
  readonly elapsedMs: number
  /** The longest the benchmark held the event loop, in ms. */
  readonly longestSliceMs: number
}

export class BenchmarkError extends Error {
  static override readonly name = 'BenchmarkError'
  override readonly name = 'BenchmarkError'
}

/**
 * Runs the reference workload in slices of about `sliceMs`, yielding to the event loop between them
 * (so heartbeats keep going), and returns the median rate over the slices: a slice the OS took the
 * CPU away from does not drag the figure down.
 */
export async function benchmarkSpeed(opts: BenchmarkOptions = {}): Promise<BenchmarkResult> {
  const { durationMs = 200, warmupMs = 50, sliceMs = 10, signal } = opts
  const rates: number[] = []
  let units = 0
  let longestSliceMs = 0
  const start = performance.now()
  const end = start + warmupMs + durationMs
  for (let now = start; now < end; now = performance.now()) {
    signal?.throwIfAborted()
    const sliceStart = performance.now()
    let done = 0
    let elapsed = 0
    do {
      if (benchmarkUnit() !== UNIT_CHECKSUM) throw new BenchmarkError('benchmark unit gave a wrong checksum')
      done++
      elapsed = performance.now() - sliceStart
    } while (elapsed < sliceMs)
    longestSliceMs = Math.max(longestSliceMs, elapsed)
    if (sliceStart >= start + warmupMs) {
      rates.push((done * 1000) / elapsed)
      units += done
    }
    await yieldToLoop()
  }
  if (rates.length === 0) throw new BenchmarkError('benchmark measured nothing: durationMs too short')
  const unitsPerSecond = median(rates)
  return {
    speed: clampSpeed(unitsPerSecond / REFERENCE_UNITS_PER_SECOND),
    unitsPerSecond,
    units,
    elapsedMs: performance.now() - start,
    longestSliceMs,
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** Never 0, never absurd: [MIN_SPEED, MAX_SPEED]; NaN counts as the slowest. */
export function clampSpeed(speed: number): number {
  if (Number.isNaN(speed)) return MIN_SPEED
  return Math.min(MAX_SPEED, Math.max(MIN_SPEED, speed))
}

/** A finished task: how long it was expected to take on this host at its current speed, how long it took. */
export interface SpeedSample {
  readonly expectedSeconds: number
  readonly actualSeconds: number
}

export const DEFAULT_ALPHA = 0.2
/** One task moves the estimate by at most this factor (times alpha): a task that failed early, or hung, is not a speed. */
export const MAX_SAMPLE_RATIO = 10

/**
 * EWMA of the speed each finished task shows (current x expected / actual). A sample that is not
 * positive and finite is ignored. Pure. A host whose owner fixed its speed does not call this.
 */
export function refineSpeed(current: number, sample: SpeedSample, alpha: number = DEFAULT_ALPHA): number {
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`alpha must be in (0, 1] (got ${alpha})`)
  const { expectedSeconds: e, actualSeconds: a } = sample
  if (!(e > 0 && a > 0 && Number.isFinite(e) && Number.isFinite(a))) return clampSpeed(current)
  const ratio = Math.min(MAX_SAMPLE_RATIO, Math.max(1 / MAX_SAMPLE_RATIO, e / a))
  return clampSpeed(current * (1 - alpha + alpha * ratio))
}
