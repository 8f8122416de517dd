// Typed accessors over the farm's Y.Doc. Layout (version 1):
//   jobs: Y.Map<jobId, Y.Map{ spec: JobSpec (plain, immutable), events: Y.Array<StoredEvent> }>
// One append-only log per job holds both its task events and its job control events: one Yjs type
// per job instead of one per task keeps a 10,000-task job small, and an append never conflicts.

import * as Y from 'yjs'
import { type JobView, viewJob } from './jobview.ts'
import { LOCAL } from './origins.ts'
import {
  encodeJobEvent,
  encodeTaskEvent,
  type JobEvent,
  type JobEventKind,
  type JobSpec,
  parseJobSpec,
  parseStoredEvent,
  type TaskEvent,
} from './schema.ts'

export class InvalidJobError extends Error {
  static override readonly name = 'InvalidJobError'
  override readonly name = 'InvalidJobError'
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
}

export interface FarmDocInit {
  /** This peer's id, written into every event it appends. */
  readonly peer: string
  /** Told about every malformed entry found while reading. */
  readonly onInvalid?: (jobId: string, error: string) => void
}

export type NewTaskEvent = Omit<TaskEvent, 'peer' | 'lc'>

export class FarmDoc {
  readonly doc: Y.Doc
  readonly peer: string
  private readonly jobs: Y.Map<unknown>
  private readonly parsed = new Map<string, ParsedJob | null>()
  /** Views depend on other jobs (dependencies), so any change clears them all. */
  private readonly viewCache = new Map<string, JobView | null>()
  private readonly onInvalid: (jobId: string, error: string) => void

  constructor(doc: Y.Doc, init: FarmDocInit) {
    this.doc = doc
    this.peer = init.peer
    this.onInvalid = init.onInvalid ?? (() => {})
    this.jobs = doc.getMap('jobs')
    this.jobs.observeDeep((events) => {
      this.viewCache.clear()
      for (const ev of events) {
        if (ev.target === this.jobs)
          for (const key of (ev as Y.YMapEvent<unknown>).keysChanged) this.parsed.delete(key)
        else if (typeof ev.path[0] === 'string') this.parsed.delete(ev.path[0])
      }
    })
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
      this.jobs.set(spec.id, job)
    }, LOCAL)
    return spec
  }

  jobIds(): string[] {
    return [...this.jobs.keys()].sort()
  }

  has(id: string): boolean {
    return this.read(id) !== undefined
  }

  /** Resolves a full id or a unique prefix of one. */
  resolveJobId(idOrPrefix: string): string {
    if (this.read(idOrPrefix) !== undefined) return idOrPrefix
    const hits = this.jobIds().filter((id) => id.startsWith(idOrPrefix) && this.read(id) !== undefined)
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
    const v = viewJob(id, (jid) => this.read(jid))
    this.viewCache.set(id, v ?? null)
    return v
  }

  views(): JobView[] {
    const out: JobView[] = []
    for (const id of this.jobIds()) {
      const v = this.view(id)
      if (v !== undefined) out.push(v)
    }
    return out
  }

  /** Appends task events (all in one transaction), stamped with this peer and the next clock. */
  appendTaskEvents(jobId: string, events: readonly NewTaskEvent[]): void {
    const job = this.read(jobId)
    if (job === undefined) throw new UnknownJobError(`no job ${jobId}`)
    const lc = job.maxLc + 1
    const stored = events.map((e) => encodeTaskEvent({ ...e, peer: this.peer, lc }))
    this.doc.transact(() => this.eventsArray(jobId)?.push(stored), LOCAL)
  }

  appendJobEvent(jobId: string, kind: JobEventKind, value?: number): void {
    const job = this.read(jobId)
    if (job === undefined) throw new UnknownJobError(`no job ${jobId}`)
    const ev: JobEvent = {
      kind,
      peer: this.peer,
      lc: job.maxLc + 1,
      ...(value === undefined ? {} : { value }),
    }
    this.doc.transact(() => this.eventsArray(jobId)?.push([encodeJobEvent(ev)]), LOCAL)
  }

  private eventsArray(jobId: string): Y.Array<unknown> | undefined {
    const job = this.jobs.get(jobId)
    if (!(job instanceof Y.Map)) return undefined
    const events = job.get('events')
    return events instanceof Y.Array ? events : undefined
  }

  private parse(id: string): ParsedJob | null {
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
    const tasks: TaskEvent[][] = Array.from({ length: spec.taskCount }, () => [])
    const control: JobEvent[] = []
    let maxLc = 0
    let invalid = 0
    for (const raw of eventsType.toArray()) {
      const e = parseStoredEvent(raw, spec.taskCount)
      if (!e.ok) {
        invalid++
        if (invalid <= 3) this.onInvalid(id, `event: ${e.error}`)
        continue
      }
      const v = e.value
      if (v.type === 'task') tasks[v.event.task]!.push(v.event)
      else control.push(v.event)
      maxLc = Math.max(maxLc, v.event.lc)
    }
    return { spec, tasks, control, maxLc, invalid }
  }
}
