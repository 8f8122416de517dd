// The pure compile step (Flamenco's compileJob): a submit request in, a JobSpec out. Everything a
// user or a remote client sends is checked here, so a bad job fails at submit with a clear message
// instead of failing on every host that claims it.

import type { InputFile } from '../crdt/files.ts'
import { DEFAULT_SCHED, type Policy, parseSchedSpec, type SchedSpec } from '../crdt/schedspec.ts'
import {
  type FrameRange,
  frameCount,
  isId,
  type JobSpec,
  LIMITS,
  parseFrameRange,
  parseJobSpec,
} from '../crdt/schema.ts'
import { type AppDef, getApp, usesSingleFrame, usesTiles } from './apps.ts'
import { tileGrid, tileRect } from './blender/tiles.ts'
import { InvalidSubmitError } from './errors.ts'
import { type SettingValue, validateSettings } from './settings.ts'

export interface SubmitInput {
  readonly app: string
  readonly name?: string
  /** '1-48', '7', '1-100x5' (every 5th frame), or a range object. */
  readonly frames?: string | FrameRange
  /** Frames per task; default 1. */
  readonly chunk?: number
  /** Tiles of one frame (a still): each tile is a task; needs one frame and an app that renders tiles. */
  readonly tiles?: number
  readonly settings?: Readonly<Record<string, SettingValue>>
  readonly priority?: number
  /** Attempts a task gets before it is FAIL; default 3. */
  readonly maxRetries?: number
  readonly dependsOn?: readonly string[]
  /** Process group id. */
  readonly group?: string | null
  /** Time against energy cost: 'fast' (default), 'cheap' (within `slack` of the fastest makespan), 'balanced', or weights. */
  readonly policy?: Policy | Policy['kind']
  /** For policy 'cheap': how much longer than the fastest makespan the job may take (default 0.2). */
  readonly slack?: number
  readonly requires?: {
    readonly tags?: readonly string[]
    readonly memoryMb?: number
    readonly gpus?: number
  }
  /** Hosts must have this version (or 'major.minor' prefix) of the application. */
  readonly appVersion?: string | null
  readonly license?: string | null
  /** Jobs whose task i must be DONE before this job's task i starts (frame by frame). */
  readonly taskDeps?: readonly string[]
  readonly notBefore?: number | null
  readonly waitFile?: string | null
  readonly manual?: boolean
  readonly blocklistAfter?: number
  readonly failRatio?: number
  /** Files every task needs (already in the submitting node's blob store). */
  readonly inputs?: readonly InputFile[]
  /** Jobs whose outputs are this job's inputs (an encode after a render). */
  readonly inputsFrom?: readonly string[]
}

export interface CompileContext {
  /** The new job's id. */
  readonly id: string
  /** The submitting peer. */
  readonly peer: string
  /** Wall clock, ms since the epoch (informational only). */
  readonly now: number
  /** Applications to compile against; default the built-ins. */
  readonly apps?: readonly AppDef[]
}

export const SUBMIT_DEFAULTS = { chunk: 1, priority: 0, maxRetries: 3 } as const

const SUBMIT_KEYS: ReadonlySet<string> = new Set([
  'app',
  'name',
  'frames',
  'chunk',
  'tiles',
  'settings',
  'priority',
  'maxRetries',
  'dependsOn',
  'group',
  'policy',
  'slack',
  'requires',
  'appVersion',
  'license',
  'taskDeps',
  'notBefore',
  'waitFile',
  'manual',
  'blocklistAfter',
  'failRatio',
  'inputs',
  'inputsFrom',
])

/** The scheduling part of a job: the submit's fields over the defaults, validated. */
export function compileSched(input: SubmitInput, id: string): SchedSpec {
  const d = DEFAULT_SCHED
  const policy =
    typeof input.policy === 'string'
      ? input.policy === 'cheap'
        ? { kind: 'cheap', slack: input.slack ?? 0.2 }
        : { kind: input.policy }
      : (input.policy ?? d.policy)
  const req: unknown = input.requires
  if (req !== undefined && req !== null && (typeof req !== 'object' || Array.isArray(req))) {
    throw new InvalidSubmitError(
      `requires must be an object ({tags, memoryMb, gpus}), not ${JSON.stringify(req).slice(0, 80)}`,
    )
  }
  const taskDeps = input.taskDeps ?? []
  if (taskDeps.includes(id)) throw new InvalidSubmitError('a job cannot wait for its own tasks')
  const r = parseSchedSpec({
    policy,
    requires: {
      tags: input.requires?.tags ?? d.requires.tags,
      memoryMb: input.requires?.memoryMb ?? d.requires.memoryMb,
      gpus: input.requires?.gpus ?? d.requires.gpus,
      appVersion: input.appVersion ?? d.requires.appVersion,
    },
    license: input.license ?? d.license,
    taskDeps,
    notBefore: input.notBefore ?? d.notBefore,
    waitFile: input.waitFile ?? d.waitFile,
    manual: input.manual ?? d.manual,
    blocklistAfter: input.blocklistAfter ?? d.blocklistAfter,
    failRatio: input.failRatio ?? d.failRatio,
  })
  if (!r.ok) throw new InvalidSubmitError(r.error)
  return r.value
}

/** Checks a submit request and turns it into a JobSpec that passes parseJobSpec; throws named errors. */
export function compileJob(input: SubmitInput, ctx: CompileContext): JobSpec {
  if (typeof input !== 'object' || input === null) throw new InvalidSubmitError('a job must be an object')
  for (const key of Object.keys(input)) {
    if (!SUBMIT_KEYS.has(key)) throw new InvalidSubmitError(`unknown field ${JSON.stringify(key)} in job`)
  }
  checkContext(ctx)
  const app = getApp(input.app, ctx.apps)
  const args = validateSettings(app, input.settings ?? {})

  let frames: FrameRange | null = null
  let chunk: number = SUBMIT_DEFAULTS.chunk
  let taskCount = 1
  const tiles = intField(input.tiles, 'tiles', 1, 1, LIMITS.tiles)
  if (app.usesFrames) {
    if (input.frames === undefined || input.frames === null) {
      throw new InvalidSubmitError(
        `app ${app.name} renders frames: give frames such as '1-48', '7' or '1-100x5'`,
      )
    }
    frames = typeof input.frames === 'string' ? parseFrames(input.frames) : normalizeRange(input.frames)
    // without --chunk, the app's own default (its config file's "chunk": 4 for Blender, "all" for
    // one task over the range); a job of tiles takes chunk 1 below, whatever this says
    const own = app.chunk === 'all' ? frameCount(frames) : (app.chunk ?? SUBMIT_DEFAULTS.chunk)
    const byDefault = usesSingleFrame(app) ? 1 : Math.min(own, LIMITS.frame)
    chunk = intField(input.chunk, 'chunk', byDefault, 1, LIMITS.frame)
    taskCount = Math.ceil(frameCount(frames) / chunk)
    if (taskCount > LIMITS.tasksPerJob) {
      throw new InvalidSubmitError(
        `frames ${formatFrames(frames)} in chunks of ${chunk} make ${taskCount} tasks, more than ` +
          `${LIMITS.tasksPerJob}: use a larger chunk`,
      )
    }
    if (chunk > 1 && usesSingleFrame(app)) {
      throw new InvalidSubmitError(`app ${app.name} renders one frame per task: chunk must be 1`)
    }
    if (tiles > 1) {
      checkTiles(app, frames, tiles, args)
      chunk = 1
      taskCount = tiles
    }
  } else {
    if (tiles > 1) throw new InvalidSubmitError(`app ${app.name} does not render tiles of a frame`)
    if (input.frames !== undefined && input.frames !== null) {
      throw new InvalidSubmitError(`app ${app.name} does not take frames`)
    }
    if (input.chunk !== undefined && input.chunk !== 1) {
      throw new InvalidSubmitError(`app ${app.name} does not take a chunk (it runs as one task)`)
    }
  }

  const spec: JobSpec = {
    id: ctx.id,
    name: jobName(input.name, app, frames),
    group: groupField(input.group),
    app: app.name,
    args,
    frames,
    chunk,
    tiles,
    taskCount,
    priority: intField(
      input.priority,
      'priority',
      SUBMIT_DEFAULTS.priority,
      -LIMITS.priority,
      LIMITS.priority,
    ),
    maxRetries: intField(input.maxRetries, 'maxRetries', SUBMIT_DEFAULTS.maxRetries, 1, LIMITS.maxRetries),
    // a job that takes another's outputs waits for all of them
    dependsOn: dependsOnField([...(input.dependsOn ?? []), ...(input.inputsFrom ?? [])], ctx.id),
    sched: compileSched(input, ctx.id),
    inputs: input.inputs ?? [],
    inputsFrom: input.inputsFrom ?? [],
    submittedBy: ctx.peer,
    submittedAt: ctx.now,
  }
  const parsed = parseJobSpec(spec)
  if (!parsed.ok) throw new InvalidSubmitError(`compiled job does not pass the schema: ${parsed.error}`)
  return parsed.value
}

// Tiles cut one frame of an app that renders them ({border}), whose frame size the job states.
function checkTiles(
  app: AppDef,
  frames: FrameRange,
  tiles: number,
  args: Readonly<Record<string, SettingValue>>,
): void {
  if (!usesTiles(app)) {
    throw new InvalidSubmitError(`app ${app.name} does not render tiles of a frame (blender does)`)
  }
  const n = frameCount(frames)
  if (n !== 1) {
    throw new InvalidSubmitError(
      `tiles cut one frame (a still), but frames ${formatFrames(frames)} are ${n}: give one frame, such as '7'`,
    )
  }
  const { width, height } = args
  if (typeof width !== 'number' || typeof height !== 'number' || width < 1 || height < 1) {
    throw new InvalidSubmitError(`tiles need the frame size: settings width and height of app ${app.name}`)
  }
  const grid = tileGrid(tiles)
  // throws InvalidSubmitError when the frame is too small for the grid
  tileRect(0, grid, width, height)
}

const FRAMES_RE = /^(-?\d{1,9})(?:-(-?\d{1,9})(?:x(\d{1,9}))?)?$/

/** Parses '1-48', '7' or '1-100x5' into a range whose end is its last frame on the step. */
export function parseFrames(text: string): FrameRange {
  if (typeof text !== 'string') throw new InvalidSubmitError('frames must be text such as 1-48')
  const m = FRAMES_RE.exec(text.trim())
  if (m === null) {
    const shown = JSON.stringify(text.slice(0, 40))
    throw new InvalidSubmitError(
      `frames ${shown} are not a range: write '1-48', '7' or '1-100x5' (every 5th)`,
    )
  }
  const start = Number(m[1])
  const end = m[2] === undefined ? start : Number(m[2])
  const step = m[3] === undefined ? 1 : Number(m[3])
  return normalizeRange({ start, end, step })
}

/** '1-48', '7', '1-96x5': the text form parseFrames reads back. */
export function formatFrames(r: FrameRange): string {
  if (r.start === r.end) return String(r.start)
  return r.step === 1 ? `${r.start}-${r.end}` : `${r.start}-${r.end}x${r.step}`
}

// Checks a range and moves its end onto the step, so a task's last frame is one it renders.
function normalizeRange(x: unknown): FrameRange {
  const r = parseFrameRange(x)
  if (!r.ok) throw new InvalidSubmitError(`${r.error} (frames are ${-LIMITS.frame}..${LIMITS.frame})`)
  const { start, step } = r.value
  return { start, end: start + (frameCount(r.value) - 1) * step, step }
}

function checkContext(ctx: CompileContext): void {
  if (!isId(ctx.id)) throw new InvalidSubmitError(`job id ${JSON.stringify(ctx.id)} is malformed`)
  if (typeof ctx.peer !== 'string' || ctx.peer.length === 0 || ctx.peer.length > LIMITS.peerChars) {
    throw new InvalidSubmitError('submitting peer id is malformed')
  }
  if (!Number.isSafeInteger(ctx.now) || ctx.now < 0) throw new InvalidSubmitError('submit time is malformed')
}

function intField(v: unknown, field: string, dflt: number, min: number, max: number): number {
  if (v === undefined || v === null) return dflt
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InvalidSubmitError(
      `${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`,
    )
  }
  return v
}

function jobName(name: unknown, app: AppDef, frames: FrameRange | null): string {
  if (name === undefined || name === null)
    return frames === null ? app.name : `${app.name} ${formatFrames(frames)}`
  if (typeof name !== 'string') throw new InvalidSubmitError('name must be text')
  const trimmed = name.trim()
  if (trimmed.length === 0 || trimmed.length > LIMITS.nameChars) {
    throw new InvalidSubmitError(`name must be 1 to ${LIMITS.nameChars} characters`)
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(trimmed))
    throw new InvalidSubmitError('name must not hold control characters')
  return trimmed
}

function groupField(group: unknown): string | null {
  if (group === undefined || group === null) return null
  if (!isId(group)) throw new InvalidSubmitError(`group ${JSON.stringify(group)} is not a valid id`)
  return group
}

function dependsOnField(deps: unknown, self: string): string[] {
  if (deps === undefined || deps === null) return []
  if (!Array.isArray(deps)) throw new InvalidSubmitError('dependsOn must be a list of job ids')
  const out = [...new Set<unknown>(deps)]
  if (out.length > LIMITS.dependsOn)
    throw new InvalidSubmitError(`dependsOn lists more than ${LIMITS.dependsOn} jobs`)
  for (const d of out) {
    if (!isId(d)) throw new InvalidSubmitError(`dependsOn holds ${JSON.stringify(d)}, which is not a job id`)
    if (d === self) throw new InvalidSubmitError('a job cannot depend on itself')
  }
  return out as string[]
}
