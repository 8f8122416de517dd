// Progress of a running task from its output lines, driven by the app's config: the frame rendering
// now, samples (and auto-tiles) of it, frames finished (an output line each, or the app's own count).
// The fraction never goes down: Blender's sample count dips before `Finished`, and a new auto-tile
// restarts its sample count.
//
// Between lines, an app's own estimate moves it on (tick()): Cycles in Blender 3.4 prints a frame
// of one tile (any frame up to 2048 px, the default tile size) at samples 0, 1 and N only, without
// adaptive sampling, so a frame of ten minutes would show 0% for ten minutes. Its line at sample 1
// says `Time:00:00.24 | Remaining:00:15.24`: the frame is taken to advance at that pace, short of
// done until its output line.

import type { AppDef } from './apps.ts'

export interface Progress {
  /** The frame rendering now (as the app prints it), or null before the first. */
  readonly frame: number | null
  /** Frames of this task finished. */
  readonly framesDone: number
  /** Of the whole task, from 0 to 1, never decreasing. */
  readonly fraction: number
}

/** A frame's progress by the app's own estimate: `elapsed` of `total` seconds when `at` (ms). */
interface Estimate {
  readonly elapsed: number
  readonly total: number
  readonly at: number
}

/** How far an estimate may take a frame before its output line says it is done. */
export const ESTIMATE_CAP = 0.99

/** 'MM:SS.cc' or 'HH:MM:SS.cc' (Blender's times) in seconds; NaN if it is neither. */
export function clockSeconds(text: string): number {
  if (!/^\d+(?::\d+){1,2}(?:\.\d+)?$/.test(text)) return Number.NaN
  return text.split(':').reduce((acc, part) => acc * 60 + Number(part), 0)
}

/** An app's progress and output patterns, compiled once. */
export interface CompiledPatterns {
  readonly progress: readonly RegExp[]
  readonly output: RegExp | null
  readonly errors: RegExp | null
}

const compiled = new WeakMap<AppDef, CompiledPatterns>()

/** The app's patterns as regular expressions (checked on load, so they compile). */
export function compiledPatterns(app: AppDef): CompiledPatterns {
  let c = compiled.get(app)
  if (c === undefined) {
    c = {
      progress: (app.progress ?? []).map((p) => new RegExp(p, 'u')),
      output: app.outputs?.pattern === undefined ? null : new RegExp(app.outputs.pattern, 'u'),
      errors: app.outputs?.errors === undefined ? null : new RegExp(app.outputs.errors, 'u'),
    }
    compiled.set(app, c)
  }
  return c
}

/** The integer a named group captured, or undefined. */
export function groupInt(m: RegExpExecArray, name: string): number | undefined {
  const v = m.groups?.[name]
  if (v === undefined) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : undefined
}

/** Feed it every output line of one task; it says when the progress changed. */
export class ProgressParser {
  readonly #patterns: CompiledPatterns
  readonly #total: number
  #frame: number | null = null
  #saved = new Set<string>()
  #counted = 0
  /** Of the frame rendering now, 0..1. */
  #within = 0
  #estimate: Estimate | null = null
  #fraction = 0
  #last: Progress
  readonly #now: () => number

  /**
   * `frames`: how many frames the task renders (its chunk); at least 1. `now`: a clock in ms, for
   * the app's estimates between lines (tick).
   */
  constructor(app: AppDef, frames: number, now: () => number = () => performance.now()) {
    this.#patterns = compiledPatterns(app)
    this.#total = Number.isSafeInteger(frames) && frames > 0 ? frames : 1
    this.#last = { frame: null, framesDone: 0, fraction: 0 }
    this.#now = now
  }

  get progress(): Progress {
    return this.#last
  }

  /** Reads one line; returns the new progress if it changed, else null. */
  push(line: string): Progress | null {
    const { output, progress } = this.#patterns
    const out = output?.exec(line)
    if (out?.groups?.path !== undefined) {
      if (this.#saved.size < this.#total) this.#saved.add(out.groups.path)
      this.#within = 0
      this.#estimate = null
    }
    for (const re of progress) {
      const m = re.exec(line)
      if (m === null) continue
      const frame = groupInt(m, 'frame')
      if (frame !== undefined && frame !== this.#frame) {
        this.#frame = frame
        this.#within = 0
        this.#estimate = null
      }
      const elapsed = clockSeconds(m.groups?.elapsed ?? '')
      const total = elapsed + clockSeconds(m.groups?.remaining ?? '')
      if (total > 0) this.#estimate = { elapsed, total, at: this.#now() }
      const done = groupInt(m, 'done')
      if (done !== undefined) this.#counted = Math.max(this.#counted, done)
      const sample = groupInt(m, 'sample')
      const samples = groupInt(m, 'samples')
      if (sample !== undefined && samples !== undefined && samples > 0) {
        const tile = groupInt(m, 'tile')
        const tiles = groupInt(m, 'tiles')
        // With auto-tiles, `tile` tiles are done and the next one is at `sample`; a full sample
        // count repeats the previous tile's last line, so it adds nothing of the next one.
        this.#within =
          tiles !== undefined && tiles > 0 && tile !== undefined
            ? (tile + (sample < samples ? sample / samples : 0)) / tiles
            : sample / samples
        this.#within = Math.min(1, Math.max(0, this.#within))
      }
    }
    return this.#update()
  }

  /**
   * Moves the frame rendering now on by the app's last estimate of it, as time passed since; returns
   * the new progress if it changed, else null. Call it every second or so while the task runs.
   */
  tick(): Progress | null {
    const e = this.#estimate
    if (e === null) return null
    const by = Math.min(ESTIMATE_CAP, (e.elapsed + (this.#now() - e.at) / 1000) / e.total)
    if (!(by > this.#within)) return null
    this.#within = by
    return this.#update()
  }

  #update(): Progress | null {
    const framesDone = Math.min(this.#total, Math.max(this.#saved.size, this.#counted))
    const now = framesDone >= this.#total ? 1 : Math.min(1, (framesDone + this.#within) / this.#total)
    this.#fraction = Math.max(this.#fraction, now)
    const prev = this.#last
    if (prev.frame === this.#frame && prev.framesDone === framesDone && prev.fraction === this.#fraction)
      return null
    this.#last = { frame: this.#frame, framesDone, fraction: this.#fraction }
    return this.#last
  }
}
