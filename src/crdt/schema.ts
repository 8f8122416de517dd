// The farm document's value types and their validators. Everything read from the document came from
// some peer, possibly a buggy or hostile one, so every read goes through a parse function here:
// a value that does not parse is reported and ignored, never trusted and never a crash.

import { type InputFile, parseInputs } from './files.ts'
import { parseSchedSpec, type SchedSpec } from './schedspec.ts'

export const TASK_STATES = ['WAIT', 'QUEUE', 'HOLD', 'CLAIM', 'RUN', 'DONE', 'FAIL', 'CANCEL'] as const
export type TaskState = (typeof TASK_STATES)[number]
export type JobState = TaskState

export const LIMITS = {
  idChars: 64,
  nameChars: 200,
  peerChars: 128,
  reasonChars: 500,
  argChars: 4096,
  args: 64,
  tasksPerJob: 100_000,
  dependsOn: 64,
  frame: 1_000_000,
  attempt: 10_000,
  maxRetries: 100,
  priority: 1_000_000,
  tiles: 256,
} as const

/** What a job asks for: fixed at submit, never edited afterwards (mutable things are events). */
export interface JobSpec {
  readonly id: string
  readonly name: string
  /** Process group: a bundle of related jobs (render + encode). */
  readonly group: string | null
  /** Application name; a host runs only applications its owner enabled. */
  readonly app: string
  /** Values for the application's argv template, validated by the runner before use. */
  readonly args: Readonly<Record<string, string | number | boolean>>
  readonly frames: FrameRange | null
  /** Frames per task (or 1 for non-frame jobs). */
  readonly chunk: number
  /**
   * Tiles each frame is cut into (1: whole frames). More than 1 only for a single-frame job with
   * chunk 1: task i then renders tile i of that frame. Absent in specs stored before tiles: 1.
   */
  readonly tiles: number
  /** ceil(frames / chunk) x tiles, or 1 for a job without frames. */
  readonly taskCount: number
  readonly priority: number
  /** Attempts a task gets before it is FAIL. */
  readonly maxRetries: number
  readonly dependsOn: readonly string[]
  /** Policy, requirements, license, conditions and failure rules for the scheduler. */
  readonly sched: SchedSpec
  /** Files every task needs, placed in its input directory (a scene and what it references). */
  readonly inputs: readonly InputFile[]
  /** Jobs whose outputs every task needs as inputs too (the frames an encode job assembles). */
  readonly inputsFrom: readonly string[]
  readonly submittedBy: string
  /** Submitter's wall clock, ms since the epoch: informational only, never used for ordering. */
  readonly submittedAt: number
}

export interface FrameRange {
  readonly start: number
  readonly end: number
  readonly step: number
}

export type TaskEventKind = 'claim' | 'start' | 'done' | 'fail' | 'requeue' | 'hold' | 'release' | 'cancel'
/**
 * release: an external condition of the job is met (manual release, or its file appeared).
 * remove: the job is gone from lists and scheduling for good, and its files from every store.
 */
export type JobEventKind = 'hold' | 'resume' | 'cancel' | 'retry' | 'priority' | 'release' | 'remove'

/** One entry of a job's append-only task log. */
export interface TaskEvent {
  readonly kind: TaskEventKind
  readonly task: number
  readonly attempt: number
  readonly peer: string
  /** Lamport clock within the job: orders control events (hold/release/cancel/retry). */
  readonly lc: number
  /** The claimer's score for this attempt (lower is better); claims only. */
  readonly bid?: number
  /** Why: a failure reason, or for requeue 'retry' (user), 'dead' (holder lost), 'hold', 'lost'. */
  readonly reason?: string
  /** done only: the work it took, in work units (seconds x the host's speed), for estimates. */
  readonly work?: number
}

export interface JobEvent {
  readonly kind: JobEventKind
  readonly peer: string
  readonly lc: number
  /** priority only */
  readonly value?: number
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string }

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value })
const bad = <T>(error: string): ParseResult<T> => ({ ok: false, error })

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
}

function isStr(x: unknown, max: number, min = 1): x is string {
  return typeof x === 'string' && x.length >= min && x.length <= max
}

function isInt(x: unknown, min: number, max: number): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= min && x <= max
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

export function isId(x: unknown): x is string {
  return isStr(x, LIMITS.idChars) && ID_RE.test(x)
}

export function parseFrameRange(x: unknown): ParseResult<FrameRange> {
  if (!isRecord(x)) return bad('frames must be an object {start, end, step}')
  const { start, end, step } = x
  if (!isInt(start, -LIMITS.frame, LIMITS.frame)) return bad('frames.start must be an integer')
  if (!isInt(end, -LIMITS.frame, LIMITS.frame)) return bad('frames.end must be an integer')
  if (!isInt(step, 1, LIMITS.frame)) return bad('frames.step must be a positive integer')
  if (end < start) return bad(`frames.end (${end}) is before frames.start (${start})`)
  return ok({ start, end, step })
}

/** Number of frames in a range. */
export function frameCount(r: FrameRange): number {
  return Math.floor((r.end - r.start) / r.step) + 1
}

function parseArgs(x: unknown): ParseResult<Record<string, string | number | boolean>> {
  if (!isRecord(x)) return bad('args must be an object')
  const keys = Object.keys(x)
  if (keys.length > LIMITS.args) return bad(`args has more than ${LIMITS.args} entries`)
  const out: Record<string, string | number | boolean> = {}
  for (const k of keys) {
    const v = x[k]
    if (!isId(k)) return bad(`args key ${JSON.stringify(k).slice(0, 80)} is not a valid name`)
    if (typeof v === 'string') {
      if (v.length > LIMITS.argChars) return bad(`args.${k} is longer than ${LIMITS.argChars} characters`)
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return bad(`args.${k} is not a finite number`)
    } else if (typeof v !== 'boolean') {
      return bad(`args.${k} must be a string, number or boolean`)
    }
    out[k] = v
  }
  return ok(out)
}

export function parseJobSpec(x: unknown): ParseResult<JobSpec> {
  if (!isRecord(x)) return bad('job spec must be an object')
  const { id, name, group, app, args, frames, chunk, taskCount, priority, maxRetries } = x
  const tiles = x.tiles ?? 1
  const { dependsOn, submittedBy, submittedAt } = x
  if (!isId(id)) return bad('job id is missing or malformed')
  if (!isStr(name, LIMITS.nameChars)) return bad('job name must be 1..200 characters')
  if (group !== null && !isId(group)) return bad('group must be null or an id')
  if (!isId(app)) return bad('app must be an application name')
  const a = parseArgs(args)
  if (!a.ok) return a
  let fr: FrameRange | null = null
  if (frames !== null) {
    const f = parseFrameRange(frames)
    if (!f.ok) return f
    fr = f.value
  }
  if (!isInt(chunk, 1, LIMITS.frame)) return bad('chunk must be a positive integer')
  if (!isInt(tiles, 1, LIMITS.tiles)) return bad(`tiles must be an integer from 1 to ${LIMITS.tiles}`)
  if (tiles > 1 && (fr === null || frameCount(fr) !== 1 || chunk !== 1)) {
    return bad('tiles need a job of one frame with chunk 1')
  }
  if (!isInt(taskCount, 1, LIMITS.tasksPerJob)) return bad(`taskCount must be 1..${LIMITS.tasksPerJob}`)
  if (fr !== null && taskCount !== Math.ceil(frameCount(fr) / chunk) * tiles) {
    return bad('taskCount does not match frames, chunk and tiles')
  }
  if (!isInt(priority, -LIMITS.priority, LIMITS.priority)) return bad('priority must be an integer')
  if (!isInt(maxRetries, 1, LIMITS.maxRetries)) return bad(`maxRetries must be 1..${LIMITS.maxRetries}`)
  if (!Array.isArray(dependsOn) || dependsOn.length > LIMITS.dependsOn || !dependsOn.every(isId)) {
    return bad('dependsOn must be a list of job ids')
  }
  if (!isStr(submittedBy, LIMITS.peerChars)) return bad('submittedBy must be a peer id')
  if (!isInt(submittedAt, 0, Number.MAX_SAFE_INTEGER)) return bad('submittedAt must be a timestamp')
  const sched = parseSchedSpec(x.sched)
  if (!sched.ok) return sched
  const inputs = parseInputs(x.inputs)
  if (!inputs.ok) return inputs
  const inputsFrom = x.inputsFrom ?? []
  if (!Array.isArray(inputsFrom) || inputsFrom.length > 16 || !inputsFrom.every(isId)) {
    return bad('inputsFrom must be a list of at most 16 job ids')
  }
  if (inputsFrom.includes(id)) return bad('a job cannot take its own outputs as inputs')
  return ok({
    id,
    name,
    group: group as string | null,
    app,
    args: a.value,
    frames: fr,
    chunk,
    tiles,
    taskCount,
    priority,
    maxRetries,
    dependsOn: [...dependsOn],
    sched: sched.value,
    inputs: inputs.value,
    inputsFrom: [...inputsFrom],
    submittedBy,
    submittedAt,
  })
}

const TASK_EVENT_KINDS: ReadonlySet<string> = new Set<TaskEventKind>([
  'claim',
  'start',
  'done',
  'fail',
  'requeue',
  'hold',
  'release',
  'cancel',
])
const JOB_EVENT_KINDS: ReadonlySet<string> = new Set<JobEventKind>([
  'hold',
  'resume',
  'cancel',
  'retry',
  'priority',
  'release',
  'remove',
])

// Stored form of an event: short keys, because a busy farm holds 100,000s of them.
// k: kind, t: task index (absent for job events), a: attempt, p: peer, c: lamport clock,
// b: bid, r: reason, v: value, w: work.
export type StoredEvent = Record<string, string | number>

export function encodeTaskEvent(e: TaskEvent): StoredEvent {
  const s: StoredEvent = { k: e.kind, t: e.task, a: e.attempt, p: e.peer, c: e.lc }
  if (e.bid !== undefined) s.b = e.bid
  if (e.reason !== undefined) s.r = e.reason
  if (e.work !== undefined) s.w = e.work
  return s
}

export function encodeJobEvent(e: JobEvent): StoredEvent {
  const s: StoredEvent = { k: e.kind, p: e.peer, c: e.lc }
  if (e.value !== undefined) s.v = e.value
  return s
}

export type ParsedEvent = { type: 'task'; event: TaskEvent } | { type: 'job'; event: JobEvent }

/** Lamport clocks stay far below 2^53 so that `max + 1` is always exact, even after a hostile entry. */
export const MAX_CLOCK = 2 ** 48

/** A stored event is either a task event (has `t`) or a job event. */
export function parseStoredEvent(x: unknown, taskCount: number): ParseResult<ParsedEvent> {
  if (!isRecord(x)) return bad('event must be an object')
  const { k, t, a, p, c, b, r, v, w } = x
  if (!isStr(p, LIMITS.peerChars)) return bad('event peer is malformed')
  if (!isInt(c, 0, MAX_CLOCK)) return bad('event clock is malformed')
  if (t === undefined) {
    if (typeof k !== 'string' || !JOB_EVENT_KINDS.has(k)) return bad(`unknown job event kind ${String(k)}`)
    const kind = k as JobEventKind
    if (kind === 'priority') {
      if (!isInt(v, -LIMITS.priority, LIMITS.priority)) return bad('priority event needs an integer value')
      return ok({ type: 'job', event: { kind, peer: p, lc: c, value: v } })
    }
    return ok({ type: 'job', event: { kind, peer: p, lc: c } })
  }
  if (typeof k !== 'string' || !TASK_EVENT_KINDS.has(k)) return bad(`unknown task event kind ${String(k)}`)
  if (!isInt(t, 0, taskCount - 1)) return bad(`task index ${String(t)} out of range`)
  if (!isInt(a, 0, LIMITS.attempt)) return bad('attempt is malformed')
  const kind = k as TaskEventKind
  const ev: { -readonly [K in keyof TaskEvent]: TaskEvent[K] } = { kind, task: t, attempt: a, peer: p, lc: c }
  if (kind === 'claim') {
    if (typeof b !== 'number' || !Number.isFinite(b)) return bad('claim needs a finite bid')
    ev.bid = b
  } else if (b !== undefined) {
    return bad(`${kind} event carries a bid`)
  }
  if (r !== undefined) {
    if (!isStr(r, LIMITS.reasonChars, 0)) return bad('reason is malformed')
    ev.reason = r
  }
  if (w !== undefined) {
    if (kind !== 'done' || typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 1e9) {
      return bad('work is malformed')
    }
    ev.work = w
  }
  return ok({ type: 'task', event: ev })
}

/**
 * The frames task `index` of a frame job renders: [first, last] inclusive, on the job's step. Every
 * tile task of a tiled job renders (a tile of) the same frame.
 */
export function taskFrames(
  spec: Pick<JobSpec, 'frames' | 'chunk'> & { readonly tiles?: number },
  index: number,
): [number, number] | null {
  const r = spec.frames
  if (r === null) return null
  const chunkIndex = Math.floor(index / (spec.tiles ?? 1))
  const first = r.start + chunkIndex * spec.chunk * r.step
  const last = Math.min(r.end, first + (spec.chunk - 1) * r.step)
  return [first, last]
}

/** The tile task `index` of a tiled job renders (0-based), or null for a job of whole frames. */
export function taskTile(spec: Pick<JobSpec, 'tiles'>, index: number): number | null {
  const tiles = spec.tiles ?? 1
  return tiles > 1 ? index % tiles : null
}
