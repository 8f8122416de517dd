// Typed accessors over the farm's Y.Doc. Layout (version 1):
//   jobs: Y.Map<jobId, Y.Map{ spec: JobSpec (plain, immutable), events: Y.Array<StoredEvent>,
//                             outputs: Y.Map<path, StoredOutput> }>
// One append-only log per job holds both its task events and its job control events: one Yjs type
// per job instead of one per task keeps a 10,000-task job small, and an append never conflicts.

import * as Y from 'yjs'
import { encodeOutput, type OutputRecord, parseOutput } from './files.ts'
import { type JobView, type SoundViews, viewJob } from './jobview.ts'
import { LOCAL } from './origins.ts'
import type { JobControl, TaskView } from './reducer.ts'
import {
  encodeJobEvent,
  encodeTaskEvent,
  isId,
  type JobEvent,
  type JobEventKind,
  type JobSpec,
  MAX_CLOCK,
  parseJobSpec,
  parseStoredEvent,
  type TaskEvent,
} from './schema.ts'

export class InvalidJobError extends Error {
  static override readonly name = 'InvalidJobError'
  override readonly name = 'InvalidJobError'
}

/** A job whose log a hostile entry has closed (its clock at MAX_CLOCK): it takes no more events. */
export class FrozenJobError extends Error {
  static override readonly name = 'FrozenJobError'
  override readonly name = 'FrozenJobError'
}

export class UnknownJobError extends Error {
  static override readonly name = 'UnknownJobError'
  override readonly name = 'UnknownJobError'
}

export class AmbiguousJobIdError extends Error {
  static override readonly name = 'AmbiguousJobIdError'
  override readonly name = 'AmbiguousJobIdError'
}

export interface ParsedJob {
  readonly spec: JobSpec
  /** Task events grouped by task index. */
  readonly tasks: readonly (readonly TaskEvent[])[]
  readonly control: readonly JobEvent[]
  readonly maxLc: number
  /** Entries that did not validate (a buggy or hostile peer wrote them); ignored. */
  readonly invalid: number
  /** Reduced task views kept between changes; an entry is cleared when its task gets an event. */
  readonly memo: TaskMemo
}

/** Per-job cache of reduced task views, valid for one job control state. */
export interface TaskMemo {
  views: (TaskView | undefined)[]
  control: JobControl | undefined
}

interface MutableJob {
  spec: JobSpec
  tasks: TaskEvent[][]
  control: JobEvent[]
  maxLc: number
  invalid: number
  memo: TaskMemo
}

export interface FarmDocInit {
  /** This peer's id, written into every event it appends. */
  readonly peer: string
  /** Told about every malformed entry found while reading. */
  readonly onInvalid?: (jobId: string, error: string) => void
}

export type NewTaskEvent = Omit<TaskEvent, 'peer' | 'lc'>

interface OutputsParsed {
  readonly byPath: Map<string, OutputRecord>
  sorted: OutputRecord[] | null
  /** Malformed records seen (the first few are reported, each once). */
  invalid: number
}

export class FarmDoc {
  readonly doc: Y.Doc
  readonly peer: string
  private readonly jobs: Y.Map<unknown>
  private readonly parsed = new Map<string, MutableJob | null>()
  /** Views depend on other jobs (dependencies), so any change clears them all. */
  private readonly viewCache = new Map<string, JobView | null>()
  /** Views of jobs no dependency cycle reaches, for other jobs' views to use (see SoundViews). */
  private readonly soundViews: SoundViews = new Map()
  /**
   * Parsed output records per job, by path, kept in step with the job's outputs map one changed path
   * at a time (a job of 10,000 frames is not parsed again for each frame that lands); sorted when
   * asked.
   */
  private readonly outputCache = new Map<string, OutputsParsed>()
  private readonly outputListeners = new Set<(jobId: string) => void>()
  /** Output records of this peer not in the document yet (recordOutput's deferMs), by job. */
  private readonly pendingOutputs = new Map<
    string,
    { records: OutputRecord[]; timer: ReturnType<typeof setTimeout> | undefined }
  >()
  private readonly onInvalid: (jobId: string, error: string) => void
  /** License names whose malformed seats were reported already. */
  private readonly badLicenses = new Set<string>()

  constructor(doc: Y.Doc, init: FarmDocInit) {
    this.doc = doc
    this.peer = init.peer
    this.onInvalid = init.onInvalid ?? (() => {})
    this.jobs = doc.getMap('jobs')
    this.jobs.observeDeep((events) => this.onChanges(events))
  }

  /**
   * Keeps parsed jobs current: an append to a job's log (the only change a well-behaved peer makes)
   * parses just the new entries and clears the memo of the tasks they touch; anything else (a job
   * replaced, entries deleted) drops the job, to be parsed whole when next read.
   */
  private onChanges(events: Y.YEvent<Y.AbstractType<unknown>>[]): void {
    // the jobs whose outputs may have changed: told once everything here is parsed (a listener that
    // reads a view meanwhile would see, and leave cached, a job without this update's task events)
    const outputs = new Set<string>()
    for (const ev of events) {
      if (ev.target === this.jobs) {
        for (const key of (ev as Y.YMapEvent<unknown>).keysChanged) {
          this.parsed.delete(key)
          this.outputCache.delete(key)
          outputs.add(key)
        }
        continue
      }
      const id = ev.path[0]
      if (typeof id !== 'string') continue
      // a key of the job's own map set again (its outputs map replaced, by a buggy or hostile peer):
      // what was parsed of the old one goes
      if (ev.path.length === 1) this.outputCache.delete(id)
      if (ev.path[1] === 'outputs') {
        // outputs are single-writer facts beside the log: they never change a task's view
        const cached = this.outputCache.get(id)
        if (cached !== undefined && ev.path.length === 2 && ev.target instanceof Y.Map) {
          for (const path of (ev as Y.YMapEvent<unknown>).keysChanged)
            this.parseOne(id, cached, path, ev.target)
          cached.sorted = null
        } else {
          this.outputCache.delete(id)
        }
        outputs.add(id)
        continue
      }
      const job = this.parsed.get(id)
      if (job === undefined) continue
      const delta =
        ev.target instanceof Y.Array && ev.path.length === 2 && ev.path[1] === 'events' && ev.changes.delta
      if (job === null || !delta || delta.some((d) => d.delete !== undefined)) {
        this.parsed.delete(id)
        continue
      }
      for (const d of delta) {
        if (Array.isArray(d.insert)) for (const raw of d.insert) this.addEntry(id, job, raw)
      }
    }
    this.viewCache.clear()
    this.soundViews.clear()
    for (const id of outputs) for (const f of this.outputListeners) f(id)
  }

  private addEntry(id: string, job: MutableJob, raw: unknown): void {
    const e = parseStoredEvent(raw, job.spec.taskCount)
    if (!e.ok) {
      job.invalid++
      if (job.invalid <= 3) this.onInvalid(id, `event: ${e.error}`)
      return
    }
    const v = e.value
    if (v.type === 'task') {
      job.tasks[v.event.task]!.push(v.event)
      job.memo.views[v.event.task] = undefined
    } else {
      job.control.push(v.event)
      job.memo.control = undefined
    }
    job.maxLc = Math.max(job.maxLc, v.event.lc)
  }

  /** Adds a job with all its tasks in one transaction (one update, not one per task). */
  addJob(input: unknown): JobSpec {
    const r = parseJobSpec(input)
    if (!r.ok) throw new InvalidJobError(r.error)
    const spec = r.value
    if (this.jobs.has(spec.id)) throw new InvalidJobError(`job ${spec.id} already exists`)
    this.doc.transact(() => {
      const job = new Y.Map<unknown>()
      job.set('spec', { ...spec, args: { ...spec.args }, frames: spec.frames && { ...spec.frames } })
      job.set('events', new Y.Array<unknown>())
      job.set('outputs', new Y.Map<unknown>())
      this.jobs.set(spec.id, job)
    }, LOCAL)
    return spec
  }

  /**
   * License seats per name, farm-wide (a user's setting, last writer wins). Malformed entries are
   * reported and ignored.
   */
  licenses(): Map<string, number> {
    const out = new Map<string, number>()
    for (const [name, seats] of this.doc.getMap('licenses')) {
      if (
        isId(name) &&
        Number.isSafeInteger(seats) &&
        (seats as number) >= 0 &&
        (seats as number) <= 1_000_000
      ) {
        out.set(name, seats as number)
      } else if (!this.badLicenses.has(name) && this.badLicenses.size < 100) {
        // read on every dispatcher pass: said once per name (the first hundred), not every pass
        this.badLicenses.add(name)
        this.onInvalid(`license ${name.slice(0, 64)}`, 'seats must be a whole number')
      }
    }
    return out
  }

  setLicense(name: string, seats: number): void {
    if (!isId(name)) throw new InvalidJobError('a license name is letters, digits, . _ -')
    if (!Number.isSafeInteger(seats) || seats < 0 || seats > 1_000_000) {
      throw new InvalidJobError('license seats must be a whole number from 0 to 1,000,000')
    }
    this.doc.transact(() => this.doc.getMap('licenses').set(name, seats), LOCAL)
  }

  jobIds(): string[] {
    return [...this.jobs.keys()].sort()
  }

  has(id: string): boolean {
    return this.read(id) !== undefined
  }

  /** Resolves a full id or a unique prefix of one (of a job not removed). */
  resolveJobId(idOrPrefix: string): string {
    if (this.read(idOrPrefix) !== undefined) {
      if (this.view(idOrPrefix)?.removed === true) throw new UnknownJobError(`job ${idOrPrefix} was removed`)
      return idOrPrefix
    }
    const hits = this.jobIds().filter(
      (id) => id.startsWith(idOrPrefix) && this.read(id) !== undefined && this.view(id)?.removed !== true,
    )
    if (hits.length === 1) return hits[0]!
    if (hits.length === 0) throw new UnknownJobError(`no job ${JSON.stringify(idOrPrefix)} in this farm`)
    throw new AmbiguousJobIdError(
      `${JSON.stringify(idOrPrefix)} matches ${hits.length} jobs: give more of the id`,
    )
  }

  /** The validated content of a job; undefined when absent or malformed (reported once per change). */
  read(id: string): ParsedJob | undefined {
    const cached = this.parsed.get(id)
    if (cached !== undefined) return cached ?? undefined
    const parsed = this.parse(id)
    this.parsed.set(id, parsed)
    return parsed ?? undefined
  }

  view(id: string): JobView | undefined {
    const cached = this.viewCache.get(id)
    if (cached !== undefined) return cached ?? undefined
    const v = viewJob(id, (jid) => this.read(jid), this.soundViews)
    this.viewCache.set(id, v ?? null)
    return v
  }

  /** Every job's view, removed ones left out (they are scheduled, listed and kept by no one). */
  views(): JobView[] {
    const out: JobView[] = []
    for (const id of this.jobIds()) {
      const v = this.view(id)
      if (v !== undefined && !v.removed) out.push(v)
    }
    return out
  }

  /** Appends task events (all in one transaction), stamped with this peer and the next clock. */
  appendTaskEvents(jobId: string, events: readonly NewTaskEvent[]): void {
    const job = this.read(jobId)
    if (job === undefined) throw new UnknownJobError(`no job ${jobId}`)
    const lc = this.nextClock(jobId, job)
    const stored = events.map((e) => encodeTaskEvent({ ...e, peer: this.peer, lc }))
    for (const raw of stored) this.checkWritable(jobId, job, raw)
    // a task's end carries the outputs still waiting with it: one update, not two
    this.doc.transact(() => {
      this.writePendingOutputs(jobId)
      this.eventsArray(jobId)?.push(stored)
    }, LOCAL)
  }

  /** Runs `f` as one local transaction: what it appends and records goes out as one update. */
  transact(f: () => void): void {
    this.doc.transact(f, LOCAL)
  }

  appendJobEvent(jobId: string, kind: JobEventKind, value?: number): void {
    const job = this.read(jobId)
    if (job === undefined) throw new UnknownJobError(`no job ${jobId}`)
    const ev: JobEvent = {
      kind,
      peer: this.peer,
      lc: this.nextClock(jobId, job),
      ...(value === undefined ? {} : { value }),
    }
    const raw = encodeJobEvent(ev)
    this.checkWritable(jobId, job, raw)
    this.doc.transact(() => this.eventsArray(jobId)?.push([raw]), LOCAL)
  }

  /**
   * The clock of this peer's next event of a job. A hostile entry can push a job's clock to the
   * ceiling (MAX_CLOCK): every event after it would be malformed and dropped by every reader, so
   * the job takes no more events, and says so, rather than have claims and actions vanish.
   */
  private nextClock(jobId: string, job: ParsedJob): number {
    if (job.maxLc >= MAX_CLOCK) {
      throw new FrozenJobError(
        `job ${jobId} can take no more events: an entry in its log (another peer's) set its clock to the limit`,
      )
    }
    return job.maxLc + 1
  }

  /** What this peer writes, every reader must accept: an event they would drop is refused here. */
  private checkWritable(jobId: string, job: ParsedJob, raw: unknown): void {
    const r = parseStoredEvent(raw, job.spec.taskCount)
    if (!r.ok) throw new InvalidJobError(`job ${jobId}: refusing to record a malformed event (${r.error})`)
  }

  /**
   * The outputs recorded for a job, by path. A record that does not parse (a hostile path, a bad
   * hash) is reported and left out, so nothing downstream ever sees it.
   */
  outputs(jobId: string): OutputRecord[] {
    let cached = this.outputCache.get(jobId)
    if (cached === undefined) {
      const map = this.outputsMap(jobId)
      if (this.read(jobId) === undefined || map === undefined) return []
      cached = { byPath: new Map(), sorted: null, invalid: 0 }
      for (const path of map.keys()) this.parseOne(jobId, cached, path, map)
      this.outputCache.set(jobId, cached)
    }
    if (cached.sorted === null) {
      cached.sorted = [...cached.byPath.values()].sort((a, b) =>
        a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
      )
    }
    return cached.sorted
  }

  /** Parses the record at `path` of a job's outputs map into `cached` (gone or malformed: left out). */
  private parseOne(jobId: string, cached: OutputsParsed, path: string, map: Y.Map<unknown>): void {
    cached.byPath.delete(path)
    const raw = map.get(path)
    const job = this.read(jobId)
    if (raw === undefined || job === undefined) return
    const r = parseOutput(path, raw, job.spec.taskCount)
    if (r.ok) cached.byPath.set(path, r.value)
    else if (++cached.invalid <= 3) this.onInvalid(jobId, r.error)
  }

  /**
   * Records an output this peer made (its path, relative to the job's output directory). With
   * `deferMs`, the record waits up to that long so that outputs made close together (the frames of a
   * fast chunk) go into the document as one update, and it goes at once with the job's next task
   * events (the task's end): each update is signed, gossiped, verified, applied and stored on every
   * peer. The record is checked now either way; `flushOutputs` writes what waits.
   */
  recordOutput(jobId: string, rec: Omit<OutputRecord, 'peer'>, opts: { deferMs?: number } = {}): void {
    const job = this.read(jobId)
    if (job === undefined) throw new UnknownJobError(`no job ${jobId}`)
    const full: OutputRecord = { ...rec, peer: this.peer }
    const check = parseOutput(full.path, encodeOutput(full), job.spec.taskCount)
    if (!check.ok) throw new InvalidJobError(check.error)
    if (this.outputsMap(jobId) === undefined) throw new InvalidJobError(`job ${jobId} has no outputs map`)
    const waiting = this.pendingOutputs.get(jobId) ?? { records: [], timer: undefined }
    this.pendingOutputs.set(jobId, waiting)
    waiting.records.push(full)
    const deferMs = opts.deferMs ?? 0
    if (deferMs <= 0) this.flushOutputs(jobId)
    else waiting.timer ??= setTimeout(() => this.flushOutputs(jobId), deferMs).unref()
  }

  /**
   * The output records of `jobId` still waiting may wait up to `ms` from now instead of their own
   * deferMs: what is about to record task events (the end of the process that made them) takes them
   * along, in the same update.
   */
  deferOutputs(jobId: string, ms: number): void {
    const waiting = this.pendingOutputs.get(jobId)
    if (waiting === undefined) return
    clearTimeout(waiting.timer)
    waiting.timer = setTimeout(() => this.flushOutputs(jobId), ms).unref()
  }

  /** Writes the output records still waiting (of one job, or of all) into the document now. */
  flushOutputs(jobId?: string): void {
    const ids = jobId === undefined ? [...this.pendingOutputs.keys()] : [jobId]
    if (!ids.some((id) => this.pendingOutputs.has(id))) return
    this.doc.transact(() => {
      for (const id of ids) this.writePendingOutputs(id)
    }, LOCAL)
  }

  /** Inside a transaction: the waiting records of `jobId` (dropped if the job went meanwhile). */
  private writePendingOutputs(jobId: string): void {
    const waiting = this.pendingOutputs.get(jobId)
    if (waiting === undefined) return
    this.pendingOutputs.delete(jobId)
    clearTimeout(waiting.timer)
    const map = this.outputsMap(jobId)
    if (map === undefined) return
    for (const r of waiting.records) map.set(r.path, encodeOutput(r))
  }

  /** Calls `f(jobId)` whenever a job's outputs may have changed; returns the unsubscribe. */
  onOutputs(f: (jobId: string) => void): () => void {
    this.outputListeners.add(f)
    return () => this.outputListeners.delete(f)
  }

  private outputsMap(jobId: string): Y.Map<unknown> | undefined {
    const job = this.jobs.get(jobId)
    if (!(job instanceof Y.Map)) return undefined
    const outputs = job.get('outputs')
    return outputs instanceof Y.Map ? outputs : undefined
  }

  private eventsArray(jobId: string): Y.Array<unknown> | undefined {
    const job = this.jobs.get(jobId)
    if (!(job instanceof Y.Map)) return undefined
    const events = job.get('events')
    return events instanceof Y.Array ? events : undefined
  }

  private parse(id: string): MutableJob | null {
    const job = this.jobs.get(id)
    if (!(job instanceof Y.Map)) {
      if (job !== undefined) this.onInvalid(id, 'job entry is not a map')
      return null
    }
    const r = parseJobSpec(job.get('spec'))
    if (!r.ok) {
      this.onInvalid(id, `job spec: ${r.error}`)
      return null
    }
    const spec = r.value
    if (spec.id !== id) {
      this.onInvalid(id, `job spec id ${spec.id} does not match its key`)
      return null
    }
    const eventsType = job.get('events')
    if (!(eventsType instanceof Y.Array)) {
      this.onInvalid(id, 'job events is not a list')
      return null
    }
    const parsed: MutableJob = {
      spec,
      tasks: Array.from({ length: spec.taskCount }, () => []),
      control: [],
      maxLc: 0,
      invalid: 0,
      memo: { views: [], control: undefined },
    }
    for (const raw of eventsType.toArray()) this.addEntry(id, parsed, raw)
    return parsed
  }
}
