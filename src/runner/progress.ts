// Progress of a running task from its output lines, driven by the app's config: the frame rendering
// now, samples (and auto-tiles) of it, frames finished (an output line each, or the app's own count).
// The fraction never goes down: Blender's sample count dips before `Finished`, and a new auto-tile
// restarts its sample count.

import type { AppDef } from './apps.ts'

export interface Progress {
  /** The frame rendering now (as the app prints it), or null before the first. */
  readonly frame: number | null
  /** Frames of this task finished. */
  readonly framesDone: number
  /** Of the whole task, from 0 to 1, never decreasing. */
  readonly fraction: number
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
  #fraction = 0
  #last: Progress

  /** `frames`: how many frames the task renders (its chunk); at least 1. */
  constructor(app: AppDef, frames: number) {
    this.#patterns = compiledPatterns(app)
    this.#total = Number.isSafeInteger(frames) && frames > 0 ? frames : 1
    this.#last = { frame: null, framesDone: 0, fraction: 0 }
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
    }
    for (const re of progress) {
      const m = re.exec(line)
      if (m === null) continue
      const frame = groupInt(m, 'frame')
      if (frame !== undefined && frame !== this.#frame) {
        this.#frame = frame
        this.#within = 0
      }
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
