// The Daemon's side of a task on this host: a work directory per attempt (in/ out/ tmp/), then the
// phases in order: fetch inputs -> the application's own phases -> publish outputs. Every output line
// goes to the log store and the progress parser; each frame the application reports saved is
// published at once (stored, and recorded in the job within OUTPUT_DEFER_MS, or with the task's end),
// so it can travel home while the rest of the chunk renders. The directory is removed after success
// and kept on failure for inspection. A task this node claimed is staged from its claim on (its
// directory made, its inputs fetched and laid out) while the claim settles and, claimed ahead, while
// its slot is still busy.

import { mkdir, writeFile } from 'node:fs/promises'
import { join, relative, resolve, sep } from 'node:path'
import type { Logger } from '@libp2p/interface'
import { type JobSpec, taskFrames, taskTile } from '../crdt/schema.ts'
import { type AppDef, getApp } from '../runner/apps.ts'
import { type CyclesDevice, renderPhase } from '../runner/argv.ts'
import { pyCacheEnv } from '../runner/blender/pycache.ts'
import { tilePath } from '../runner/blender/tiles.ts'
import { cancelled, type OutputStream, runPhase } from '../runner/execute.ts'
import { framesOf, OutputTracker } from '../runner/outputs.ts'
import { compiledPatterns, type Progress, ProgressParser } from '../runner/progress.ts'
import { forgetGroup, recordGroup, STAGED_FILE, unlinkIfThereSync } from './orphans.ts'
import { removeTree } from './rmtree.ts'
import type { TaskFiles } from './taskfiles.ts'
import type { ExecResult, Execute, Stager, TaskProgress } from './taskrun.ts'

export interface AttemptRef {
  readonly job: string
  readonly task: number
  readonly attempt: number
}

/** Where a task's lines go (the Log Router's store). */
export interface TaskLogSink {
  append(ref: AttemptRef, stream: OutputStream, line: string): void
  end(ref: AttemptRef, result: { ok: boolean; reason: string | null }): void
}

export interface WorkerInit {
  readonly workDir: string
  readonly apps: readonly AppDef[]
  readonly log: Logger
  /** Inputs and outputs; without it, a job that has files fails with a clear reason. */
  readonly files?: TaskFiles
  readonly logs?: TaskLogSink
  /** Threads one task may use (cores / slots). */
  readonly threads?: number
  /** The Cycles device for a job on this host. */
  readonly device?: (spec: JobSpec) => CyclesDevice
  /** Blender's bytecode cache for an app's phases once built (runner/blender/pycache.ts), if any. */
  readonly pycache?: (app: string) => string | undefined
  /** Every output line of every task, besides the log store (tests). */
  readonly onLine?: (job: string, task: number, stream: OutputStream, line: string) => void
}

/** frame_0042.png -> 42 (Workbench prints no Fra: line before its Saved: line). */
const frameOfName = (path: string): number | null => {
  const m = /(\d+)\.[A-Za-z0-9]+$/.exec(path)
  return m === null ? null : Number(m[1])
}

/** A line of the worker's own in the task's log (not the application's). */
const note = (text: string) => `openfarm: ${text}`

/** How often a task's progress moves on by the application's estimate between lines (the heartbeat's pace). */
export const PROGRESS_TICK_MS = 1000

/** A task's work directory made and its inputs in place: its first phase, or done ahead of its run. */
type Staged = { ok: true; inputs: number | null; ms: number } | { ok: false; reason: string }

interface Ahead {
  readonly abort: AbortController
  readonly ready: Promise<Staged>
  readonly dir: string
}

const dirOf = (init: WorkerInit, job: string, task: number, attempt: number) =>
  join(init.workDir, job, `${task}-${attempt}`)

export function worker(init: WorkerInit): Execute & Required<Stager> {
  const ahead = new Map<string, Ahead>()
  const keyOf = (job: string, task: number, attempt: number) => `${job}/${task}/${attempt}`
  // a succeeded task's directory goes after its result is back, off the path to the slot's next task:
  // on the next turn of the event loop, after the pass that records the result (its walk is inline)
  const removing = new Set<Promise<void>>()
  const removeLater = (dir: string) => {
    const p: Promise<void> = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => removeTree(dir))
      .catch((err: Error) => init.log.error('could not remove %s: %s', dir, err.message))
      .finally(() => removing.delete(p))
    removing.add(p)
  }
  const run: Execute = async (spec, task, attempt, signal, progress, released): Promise<ExecResult> => {
    const ref: AttemptRef = { job: spec.id, task, attempt }
    const dir = dirOf(init, spec.id, task, attempt)
    const key = keyOf(spec.id, task, attempt)
    const staged = ahead.get(key)
    ahead.delete(key)
    const line = (stream: OutputStream, text: string) => {
      init.logs?.append(ref, stream, text)
      init.onLine?.(spec.id, task, stream, text)
    }
    const fail = (reason: string): ExecResult => {
      init.log('%s/%d attempt %d failed: %s (work dir kept: %s)', spec.id, task, attempt, reason, dir)
      line('stderr', note(`failed: ${reason} (work dir kept on ${dir})`))
      return { ok: false, reason }
    }
    let result: ExecResult
    try {
      result = await runTask(init, spec, task, attempt, dir, signal, progress, line, fail, staged, released)
    } catch (err) {
      result = signal.aborted ? { ok: false, reason: cancelled(signal) } : fail((err as Error).message)
    }
    init.logs?.end(ref, result)
    if (result.ok) removeLater(dir)
    return result
  }
  return Object.assign(run, {
    stage(spec: JobSpec, task: number, attempt: number): void {
      const key = keyOf(spec.id, task, attempt)
      if (ahead.has(key)) return
      const abort = new AbortController()
      const dir = dirOf(init, spec.id, task, attempt)
      const ready = stageTask(init, spec, dir, abort.signal, true)
      ready.catch(() => undefined) // its run, or unstage, reads the outcome
      ahead.set(key, { abort, ready, dir })
    },
    async unstage(job: string, task: number, attempt: number): Promise<void> {
      const key = keyOf(job, task, attempt)
      const staged = ahead.get(key)
      if (staged === undefined) return
      ahead.delete(key)
      staged.abort.abort(new Error('the task will not run here'))
      await staged.ready.catch(() => undefined)
      await removeTree(staged.dir)
    },
    async settled(): Promise<void> {
      while (removing.size > 0) await Promise.all(removing)
    },
  })
}

/**
 * Makes the work directory and places the inputs (a failure that is the task's, not a throw). Ahead
 * of the run, the directory is marked as staged until the run takes it over (see orphans.ts).
 */
async function stageTask(
  init: WorkerInit,
  spec: JobSpec,
  dir: string,
  signal: AbortSignal,
  ahead = false,
): Promise<Staged> {
  const made = await Promise.all(['in', 'out', 'tmp'].map((d) => mkdir(join(dir, d), { recursive: true })))
  // what an earlier try of this attempt left in in/ and out/ goes first: the inputs go into a
  // directory nothing else has written to (taskfiles checks their paths by text alone), and the
  // outputs the store took by a hard link (taskfiles) must never be written again
  for (const [i, d] of ['in', 'out'].entries()) {
    if (made[i] !== undefined) continue
    await removeTree(join(dir, d))
    await mkdir(join(dir, d))
  }
  if (ahead) await writeFile(join(dir, STAGED_FILE), '')
  if (spec.inputs.length === 0 && spec.inputsFrom.length === 0) return { ok: true, inputs: null, ms: 0 }
  if (init.files === undefined) return { ok: false, reason: 'fetch inputs: this node has no blob store' }
  const t0 = performance.now()
  try {
    const n = await init.files.prepare(spec, join(dir, 'in'), signal)
    return { ok: true, inputs: n, ms: Math.round(performance.now() - t0) }
  } catch (err) {
    if (signal.aborted) throw err
    return { ok: false, reason: `fetch inputs: ${(err as Error).message}` }
  }
}

async function runTask(
  init: WorkerInit,
  spec: JobSpec,
  task: number,
  attempt: number,
  dir: string,
  signal: AbortSignal,
  progress: (p: TaskProgress) => void,
  line: (stream: OutputStream, text: string) => void,
  fail: (reason: string) => ExecResult,
  ahead: Ahead | undefined,
  released: (() => void) | undefined,
): Promise<ExecResult> {
  const app = getApp(spec.app, init.apps)
  const indir = join(dir, 'in')
  const outdir = join(dir, 'out')

  // phase 1: the work directory and the inputs, unless they were got ready ahead (from the claim on)
  let staged: Staged
  let when = ''
  if (ahead === undefined) staged = await stageTask(init, spec, dir, signal)
  else {
    when = ' (ahead, from its claim on)'
    // the run's cancel reaches the staging it takes over
    const onAbort = () => ahead.abort.abort(signal.reason)
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    try {
      staged = await ahead.ready
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
    unlinkIfThereSync(join(dir, STAGED_FILE))
  }
  // what failed ahead (a holder briefly unreachable, maybe) gets one more go now, as it would have
  if (!staged.ok && ahead !== undefined) {
    line('stderr', note(`getting ready ahead failed (${staged.reason}); trying again`))
    when = ''
    staged = await stageTask(init, spec, dir, signal)
  }
  if (!staged.ok) return fail(staged.reason)
  if (staged.inputs !== null) {
    line('stdout', note(`fetched ${staged.inputs} input file(s) in ${staged.ms} ms${when}`))
  }

  // phase 2: the application's phases, publishing each output as soon as it is reported
  const range = taskFrames(spec, task)
  const expected = range === null ? [] : framesOf(range[0], range[1], spec.frames?.step ?? 1)
  const parser = new ProgressParser(app, Math.max(1, expected.length))
  const report = (p: Progress) =>
    progress({ fraction: p.fraction, ...(p.frame === null ? {} : { frame: p.frame }) })
  const outputs = new OutputTracker(app)
  const { output: savedLine, errors: errorLine } = compiledPatterns(app)
  // the application's own error lines (Blender prints them on stdout): the reason a user can act on
  const appErrors: string[] = []
  // A tile task's one image goes under a name of its own (tiles/frame_0007_tile_003.png): every tile
  // of the frame has Blender's frame name; any other output keeps its path relative to outdir.
  const tile = taskTile(spec, task)
  const published = new Set<string>()
  const publishing: Promise<void>[] = []
  // the expected frames the store has taken whole, as they are recorded: once the chunk is complete
  // they wait for the application to quit (Blender 3.4 takes 10-60 ms after its last Saved: line) and
  // go into the job with the slot's next start, in one update (see holdForEnd). The check after the
  // run need not look at them again, and with nothing left to wait for the run's end follows its
  // processes' within the same turn of the event loop (the dispatcher records it in that update too)
  const stored = new Map<number, { path: string; bytes: number }>()
  const files = init.files
  const publish = (file: string, frame: number | null) => {
    const abs = resolve(outdir, file)
    if (!abs.startsWith(resolve(outdir) + sep) || files === undefined) return
    const path =
      tile === null || range === null
        ? relative(resolve(outdir), abs).split(sep).join('/')
        : tilePath(range[0], tile)
    if (published.has(path)) return
    published.add(path)
    const done = files.publish(spec, { file: abs, path, frame, task, attempt }).then(({ size }) => {
      if (frame === null || !expected.includes(frame)) return
      stored.set(frame, { path: abs, bytes: size })
      if (stored.size === expected.length) files.holdForEnd(spec.id)
    })
    publishing.push(done)
  }
  const pycache = init.pycache?.(spec.app)
  const ctx = {
    indir,
    outdir,
    workdir: dir,
    threads: init.threads ?? 1,
    device: init.device?.(spec) ?? 'CPU',
  } as const
  // between its lines, the application's own estimate moves the frame on (Blender 3.4 prints a
  // frame of one tile at samples 0, 1 and N only): what status shows, every PROGRESS_TICK_MS
  const ticking = setInterval(() => {
    const p = parser.tick()
    if (p !== null) report(p)
  }, PROGRESS_TICK_MS)
  try {
    for (const phase of app.phases) {
      let argv: string[]
      let env: Record<string, string>
      try {
        ;({ argv, env } = renderPhase(app, phase, spec, task, ctx))
      } catch (err) {
        return fail(`${phase.name}: ${(err as Error).message}`)
      }
      const r = await runPhase(argv, {
        cwd: dir,
        env: {
          ...env,
          ...(pycache === undefined ? {} : pyCacheEnv(pycache)),
          TMPDIR: join(dir, 'tmp'),
        },
        outputDir: dir,
        // a node killed with -9 cannot stop this group: the next start of the node does (orphans.ts)
        onSpawn: (pid) => {
          try {
            recordGroup(dir, pid)
          } catch (err) {
            init.log.error('could not record process group %d in %s: %s', pid, dir, (err as Error).message)
          }
        },
        signal,
        ...(phase.timeoutMs === undefined ? {} : { timeoutMs: phase.timeoutMs }),
        onLine: (stream, text) => {
          line(stream, text)
          outputs.push(text)
          if (errorLine?.test(text) && appErrors.length < 3) appErrors.push(text.trim())
          const frameBefore = parser.progress.frame
          const p = parser.push(text)
          if (p !== null) report(p)
          const saved = savedLine?.exec(text)?.groups?.path
          if (saved !== undefined && app.outputs?.perFrame) publish(saved, frameBefore ?? frameOfName(saved))
        },
      })
      forgetGroup(dir)
      if (!r.ok) {
        released?.()
        await Promise.allSettled(publishing)
        const said = appErrors.length === 0 ? '' : ` (${appErrors.join(' / ')})`
        return fail(`${phase.name}: ${r.reason ?? 'failed'}${said}`)
      }
    }
  } finally {
    clearInterval(ticking)
  }

  // phase 3: check and publish what is left (a video, or frames whose line came late). No process
  // runs any more: the slot is free for the next task meanwhile (on a fast chunk, this phase waits
  // 5-15 ms for the last frame's fsync in the blob store)
  released?.()
  const check = await outputs.check(expected, outdir, stored)
  if (!check.ok) {
    await Promise.allSettled(publishing)
    return fail(check.reason ?? 'outputs missing')
  }
  for (const f of check.files) publish(f.path, f.frame)
  const settled = await Promise.allSettled(publishing)
  const bad = settled.find((s) => s.status === 'rejected')
  if (bad !== undefined) return fail(`publish outputs: ${(bad as PromiseRejectedResult).reason?.message}`)
  if (published.size > 0) line('stdout', note(`published ${published.size} output(s)`))
  return { ok: true, reason: null }
}
