// Did a phase produce what it should? Exit code 0 proves nothing (Blender exits 0 having rendered
// nothing for `-s 50 -e 40 -a` or a Python error), so success is: one output line per expected
// frame, naming a non-empty regular file inside the task's output directory.

import { lstat, readdir } from 'node:fs/promises'
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path'
import { type AppDef, appTitle } from './apps.ts'
import { type CompiledPatterns, compiledPatterns, groupInt } from './progress.ts'

export interface OutputFile {
  /** The frame it holds, or null for an output that is not per frame (a video). */
  readonly frame: number | null
  /** Absolute path. */
  readonly path: string
  readonly bytes: number
}

export interface OutputCheck {
  readonly ok: boolean
  /** The outputs found, in frame order (only the good ones when ok is false). */
  readonly files: readonly OutputFile[]
  /** One line when ok is false. */
  readonly reason: string | null
}

const MAX_ERRORS = 3
const MAX_SAVED = 100_000

/** Collects what a phase says it wrote, line by line (nothing else is kept). */
export class OutputTracker {
  readonly #app: AppDef
  readonly #patterns: CompiledPatterns
  /** Path by frame (or by order for lines whose frame is unknown). */
  readonly #saved: { frame: number | null; path: string }[] = []
  readonly #errors: string[] = []
  #frame: number | undefined

  constructor(app: AppDef) {
    this.#app = app
    this.#patterns = compiledPatterns(app)
  }

  push(line: string): void {
    const { output, errors, progress } = this.#patterns
    if (errors?.test(line) && this.#errors.length < MAX_ERRORS) this.#errors.push(line.trim())
    const m = output?.exec(line)
    const path = m?.groups?.path
    if (path !== undefined) {
      if (this.#saved.length < MAX_SAVED) this.#saved.push({ frame: this.#frame ?? frameOfName(path), path })
      this.#frame = undefined
      return
    }
    for (const re of progress) {
      const p = re.exec(line)
      const frame = p === null ? undefined : groupInt(p, 'frame')
      if (frame !== undefined) this.#frame = frame
    }
  }

  /**
   * Checks the outputs against the frames the task had to produce. `stored`: frames already taken
   * in whole (by their absolute path, and their size): a frame the store read from the very path
   * its Saved: line names is not looked at again.
   */
  async check(
    expectedFrames: readonly number[],
    outdir: string,
    stored?: ReadonlyMap<number, { readonly path: string; readonly bytes: number }>,
  ): Promise<OutputCheck> {
    const def = this.#app.outputs
    if (def === undefined) return { ok: true, files: [], reason: null }
    const title = appTitle(this.#app)
    const errorTail = this.#errors.length === 0 ? '' : `: ${this.#errors.join(' / ')}`
    const dir = resolve(outdir)
    if (def.pattern === undefined) return checkDirectory(title, dir, errorTail)

    const byFrame = new Map<number | null, string>()
    for (const s of this.#saved) byFrame.set(def.perFrame ? s.frame : byFrame.size, s.path)
    const wanted = def.perFrame ? [...new Set(expectedFrames)] : [...byFrame.keys()]
    const missing = wanted.filter((f) => !byFrame.has(f))
    if (wanted.length === 0 || missing.length > 0) {
      const got = wanted.length - missing.length
      const what = def.perFrame
        ? `${title} saved ${got} of ${wanted.length} frame${wanted.length === 1 ? '' : 's'} (missing ${ranges(missing as number[])})`
        : `${title} reported no output`
      return { ok: false, files: [], reason: `${what}${errorTail}` }
    }
    const files: OutputFile[] = []
    for (const frame of wanted) {
      const path = byFrame.get(frame)!
      const known = frame === null ? undefined : stored?.get(frame)
      const problem =
        def.perFrame && known !== undefined && known.bytes > 0 && known.path === resolve(dir, path)
          ? known
          : await fileProblem(path, dir)
      const label = def.perFrame ? `frame ${frame}` : 'output'
      if (typeof problem === 'string')
        return { ok: false, files, reason: `${title} ${label}: ${problem}${errorTail}` }
      files.push({ frame: def.perFrame ? frame : null, path: problem.path, bytes: problem.bytes })
    }
    return { ok: true, files, reason: null }
  }
}

/** checkOutputs over a whole list of lines (OutputTracker does it line by line). */
export async function checkOutputs(
  app: AppDef,
  lines: Iterable<string>,
  expectedFrames: readonly number[],
  outdir: string,
): Promise<OutputCheck> {
  const t = new OutputTracker(app)
  for (const line of lines) t.push(line)
  return t.check(expectedFrames, outdir)
}

/** The frames first, first+step, ... up to last. */
export function framesOf(first: number, last: number, step = 1): number[] {
  const out: number[] = []
  for (let f = first; f <= last && out.length < MAX_SAVED; f += Math.max(1, step)) out.push(f)
  return out
}

/** '1-3, 7, 9-10' */
export function ranges(frames: readonly number[]): string {
  const sorted = [...frames].sort((a, b) => a - b)
  const parts: string[] = []
  for (let i = 0; i < sorted.length; ) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`)
    i = j + 1
  }
  return parts.length > 8 ? `${parts.slice(0, 8).join(', ')}, ...` : parts.join(', ')
}

// The last run of digits in a file name ('frame_0012.png' -> 12), for apps that print no frame.
function frameOfName(path: string): number | null {
  const m = /(\d+)(?!.*\d)/u.exec(basename(path))
  return m === null ? null : Number(m[1])
}

async function fileProblem(path: string, dir: string): Promise<string | { path: string; bytes: number }> {
  const abs = isAbsolute(path) ? resolve(path) : resolve(dir, path)
  const rel = relative(dir, abs)
  if (rel === '' || rel.split(sep)[0] === '..' || isAbsolute(rel))
    return `${abs} is outside the output directory`
  try {
    const s = await lstat(abs)
    if (!s.isFile()) return `${abs} is not a regular file`
    if (s.size === 0) return `${abs} is empty`
    return { path: abs, bytes: s.size }
  } catch {
    return `${abs} does not exist`
  }
}

// Apps that print no output line (ffmpeg): every non-empty regular file in the output directory.
async function checkDirectory(title: string, dir: string, errorTail: string): Promise<OutputCheck> {
  let names: string[]
  try {
    names = (await readdir(dir)).sort()
  } catch {
    return { ok: false, files: [], reason: `${title}: output directory ${dir} not found${errorTail}` }
  }
  const files: OutputFile[] = []
  for (const name of names) {
    const r = await fileProblem(join(dir, name), dir)
    if (typeof r !== 'string') files.push({ frame: null, path: r.path, bytes: r.bytes })
  }
  if (files.length === 0) return { ok: false, files, reason: `${title} wrote no file in ${dir}${errorTail}` }
  return { ok: true, files, reason: null }
}
