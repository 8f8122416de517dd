// Log Router, worker side: each attempt's stdout/stderr lines in this node's own level database
// (<dataDir>/logs). Keys sort so one range read returns one attempt's lines in order. append() is
// sync for the runner; lines go out in small batches (every flushMs) and wake live followers.
// Bounds: a line is cut at maxLineChars; past maxLinesPerAttempt an attempt keeps its first and last
// lines (a reader gets a marker line counting what it missed); lines waiting for the disk are capped
// at maxPendingBytes (the rest counted in a marker); prune() drops the oldest finished attempts.

import { logger } from '@libp2p/logger'
import { Level } from 'level'
import { untilOrAbort } from '../protocol/logs/answer.ts'
import { checkInt, checkRef, cutText, describeRef } from '../protocol/logs/codec.ts'
import { MAX_LINE_CHARS, MAX_REASON_CHARS, MAX_SEQ } from '../protocol/logs/constants.ts'
import { UnknownAttemptError } from '../protocol/logs/errors.ts'
import type {
  AttemptEnd,
  AttemptRef,
  AttemptStatus,
  LogLine,
  LogSource,
  LogStream,
  PageOptions,
} from '../protocol/logs/types.ts'

export type { AttemptEnd, AttemptRef, AttemptStatus, LogLine, LogStream } from '../protocol/logs/types.ts'

export class LogStoreError extends Error {
  static override readonly name = 'LogStoreError'
  override readonly name = 'LogStoreError'
}

export class LogStoreClosedError extends Error {
  static override readonly name = 'LogStoreClosedError'
  override readonly name = 'LogStoreClosedError'
}

export interface LogStoreOptions {
  /** Lines kept per attempt: the first half and the last half (default 50,000). */
  readonly maxLinesPerAttempt?: number
  /** Pause before a batch goes to disk (default 20 ms); 1000 waiting records go at once. */
  readonly flushMs?: number
  readonly maxLineChars?: number
  /** Bytes of lines not yet on disk; past it lines are counted as lost (default 16 MiB). */
  readonly maxPendingBytes?: number
  /** Wall clock, ms since the epoch (default Date.now). */
  readonly now?: () => number
}

export interface ReadResult {
  readonly lines: LogLine[]
  /** The `from` of the next read. */
  readonly next: number
  readonly ended: boolean
  readonly end?: AttemptEnd
}

/** Stored per attempt, in the same batch as its lines: started, lines appended, dropped, bytes, end. */
interface Meta {
  s: number
  n: number
  d: number
  b: number
  e?: AttemptEnd
}

/** An attempt this process writes; `ring` holds the byte sizes of its kept tail lines. */
type Active = { readonly meta: Meta; ring?: Uint32Array }
type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string }
type Op = { rk: string; t: number } & (
  | { kind: 'line'; stream: LogStream; line: string }
  | { kind: 'start' | 'lost' }
  | { kind: 'end'; end: AttemptEnd }
)

const BATCH_RECORDS = 1000
const INTERRUPTED = 'interrupted: the node stopped while this attempt ran'
const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0')
const refKey = (r: AttemptRef): string => `${r.job}!${hex(r.task, 8)}!${hex(r.attempt, 8)}`
const metaKey = (rk: string): string => `m!${rk}`
const linePrefix = (rk: string): string => `l!${rk}!`
const lineKey = (rk: string, seq: number): string => linePrefix(rk) + hex(seq, 12)

export class LogStore implements LogSource {
  readonly #db: Level<string, string>
  readonly #log = logger('openfarm:logstore')
  readonly #cap: number
  readonly #head: number
  readonly #opts: Required<Omit<LogStoreOptions, 'maxLinesPerAttempt'>>
  readonly #active = new Map<string, Active>()
  readonly #waiters = new Map<string, { promise: Promise<void>; wake: () => void }>()
  readonly #lost = new Map<string, number>()
  #queue: Op[] = []
  /** Bytes of lines not yet on disk (queued, or in the batch being written), and of the queue alone. */
  #pendingBytes = 0
  #queuedBytes = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #tail: Promise<void> = Promise.resolve()
  #closed = false
  /** The last ref append() checked and its key: a task's lines come one after another, all for it. */
  #last: { job: string; task: number; attempt: number; rk: string } | undefined

  private constructor(db: Level<string, string>, opts: LogStoreOptions) {
    this.#db = db
    this.#cap = opts.maxLinesPerAttempt ?? 50_000
    this.#head = Math.floor(this.#cap / 2)
    this.#opts = {
      flushMs: opts.flushMs ?? 20,
      maxLineChars: opts.maxLineChars ?? MAX_LINE_CHARS,
      maxPendingBytes: opts.maxPendingBytes ?? 16 * 1024 * 1024,
      now: opts.now ?? Date.now,
    }
  }

  /** Opens (or creates) the store in `dir`; attempts a previous process left open are ended as interrupted. */
  static async open(dir: string, opts: LogStoreOptions = {}): Promise<LogStore> {
    for (const [k, v] of Object.entries(opts)) {
      if (k === 'now' || v === undefined) continue
      if (!Number.isSafeInteger(v) || v < (k === 'flushMs' ? 0 : 2)) {
        throw new LogStoreError(`LogStore: ${k} must be a whole number of at least 2 (flushMs: 0), got ${v}`)
      }
    }
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw new LogStoreError(`cannot open the log database at ${dir}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const store = new LogStore(db, opts)
    const e: AttemptEnd = { ok: false, reason: INTERRUPTED, t: store.#opts.now() }
    const orphans: BatchOp[] = []
    for await (const [key, value] of db.iterator({ gte: 'm!', lt: 'm!~' })) {
      const meta = parseMeta(value)
      if (meta != null && meta.e == null)
        orphans.push({ type: 'put', key, value: JSON.stringify({ ...meta, e }) })
    }
    await db.batch(orphans)
    return store
  }

  /** Records that an attempt began, so followers can attach before its first line. */
  start(ref: AttemptRef): void {
    this.#push({ kind: 'start', rk: refKey(checkRef(ref)), t: this.#opts.now() }, 0)
  }

  append(ref: AttemptRef, stream: LogStream, line: string): void {
    const rk = this.#lineRef(ref)
    const t = this.#opts.now()
    if (this.#pendingBytes > this.#opts.maxPendingBytes && !this.#closed) {
      // the marker takes the place of the first lost line and counts every loss until it is written
      if (!this.#lost.has(rk)) this.#push({ kind: 'lost', rk, t }, 0)
      this.#lost.set(rk, (this.#lost.get(rk) ?? 0) + 1)
      return
    }
    const cut = cutText(line, this.#opts.maxLineChars)
    this.#push({ kind: 'line', rk, t, stream, line: cut }, cut.length)
  }

  /** checkRef and refKey, once per run of lines of one attempt rather than once per line. */
  #lineRef(ref: AttemptRef): string {
    const l = this.#last
    if (l !== undefined && l.job === ref.job && l.task === ref.task && l.attempt === ref.attempt) return l.rk
    const rk = refKey(checkRef(ref))
    this.#last = { job: ref.job, task: ref.task, attempt: ref.attempt, rk }
    return rk
  }

  /** Marks the attempt finished (later lines are dropped); resolves once that is on disk. */
  async end(ref: AttemptRef, result: { ok: boolean; reason?: string }): Promise<void> {
    const end: AttemptEnd = { ok: result.ok === true, t: this.#opts.now() }
    if (result.reason != null)
      Object.assign(end, { reason: cutText(String(result.reason), MAX_REASON_CHARS) })
    if (this.#closed) throw new LogStoreClosedError('the log store is closed')
    this.#push({ kind: 'end', rk: refKey(checkRef(ref)), t: end.t, end }, 0)
    await this.flush()
  }

  /** Resolves once everything appended before the call is on disk (and followers were woken). */
  flush(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#queue.length > 0) {
      const [ops, bytes] = [this.#queue, this.#queuedBytes]
      this.#queue = []
      this.#queuedBytes = 0
      this.#tail = this.#tail.then(async () => {
        await this.#write(ops)
        this.#pendingBytes -= bytes
      })
    }
    return this.#tail
  }

  async status(ref: AttemptRef): Promise<AttemptStatus | undefined> {
    const m = await this.#meta(refKey(checkRef(ref)))
    if (m == null) return undefined
    const s = { started: m.s, lines: m.n, dropped: m.d, bytes: m.b }
    return m.e == null ? s : { ...s, end: m.e }
  }

  /** Lines from `from` (default 0), at most `limit` (default 1000), plus a marker where lines were dropped. */
  async read(ref: AttemptRef, opts: { from?: number; limit?: number } = {}): Promise<ReadResult> {
    const rk = refKey(checkRef(ref))
    const from = checkInt('from', opts.from ?? 0, 0, MAX_SEQ)
    const limit = checkInt('limit', opts.limit ?? 1000, 1, 100_000)
    const meta = await this.#meta(rk) // before the lines: an end seen here means all its lines are on disk
    if (meta == null) throw new UnknownAttemptError(`no log of ${describeRef(ref)} on this node`)
    const lines: LogLine[] = []
    let next = from
    const prefix = linePrefix(rk)
    for await (const [key, value] of this.#db.iterator({ gte: lineKey(rk, from), lt: `${prefix}~`, limit })) {
      const seq = Number.parseInt(key.slice(prefix.length), 16)
      const line = parseLine(seq, value)
      if (line == null) {
        this.#log.error('skipping a corrupt log entry %s', key)
        continue
      }
      if (seq > next) {
        const note = `[openfarm: ${seq - next} lines dropped, over the attempt's line cap]`
        lines.push({ seq: seq - 1, t: line.t, stream: 'stderr', line: note })
      }
      lines.push(line)
      next = seq + 1
    }
    return meta.e == null ? { lines, next, ended: false } : { lines, next, ended: true, end: meta.e }
  }

  /** Pages of lines from `from`; with `follow`, waits for new ones until the attempt ends or `signal` aborts. */
  async *pages(ref: AttemptRef, opts: PageOptions = {}): AsyncGenerator<readonly LogLine[]> {
    const rk = refKey(checkRef(ref))
    let from = opts.from ?? 0
    for (;;) {
      if (opts.signal?.aborted === true) return
      const changed = this.#nextChange(rk)
      const page = await this.read(ref, { from, limit: opts.limit ?? 1000 })
      if (page.lines.length > 0) {
        from = page.next
        yield page.lines
      } else if (page.ended || opts.follow !== true || !(await untilOrAbort(changed, opts.signal))) {
        return
      }
    }
  }

  /** Existing lines from `from`, then new ones as appended; returns when the attempt ends or `signal` aborts. */
  async *follow(
    ref: AttemptRef,
    opts: { from?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<LogLine> {
    for await (const page of this.pages(ref, { ...opts, follow: true })) yield* page
  }

  /** The attempts of `job`/`task` this node holds lines of, ascending. */
  async attempts(job: string, task: number): Promise<number[]> {
    const prefix = metaKey(refKey(checkRef({ job, task, attempt: 0 })).slice(0, -8))
    await this.flush()
    const out: number[] = []
    for await (const key of this.#db.keys({ gte: prefix, lt: `${prefix}~` })) {
      out.push(Number.parseInt(key.slice(prefix.length), 16))
    }
    return out
  }

  /** Drops finished attempts that ended over `maxAgeMs` ago, then the oldest finished until under `maxBytes`. */
  async prune(opts: { maxAgeMs?: number; maxBytes?: number }): Promise<{ attempts: number; bytes: number }> {
    await this.flush()
    const now = this.#opts.now()
    const done: Array<{ rk: string; t: number; b: number }> = []
    let total = 0
    for await (const [key, value] of this.#db.iterator({ gte: 'm!', lt: 'm!~' })) {
      const meta = parseMeta(value)
      total += meta?.b ?? 0
      if (meta?.e != null) done.push({ rk: key.slice(2), t: meta.e.t, b: meta.b })
    }
    const dropped = { attempts: 0, bytes: 0 }
    for (const a of done.sort((x, y) => x.t - y.t)) {
      const old = opts.maxAgeMs !== undefined && now - a.t > opts.maxAgeMs
      if (!old && (opts.maxBytes === undefined || total <= opts.maxBytes)) continue
      await this.#db.clear({ gte: linePrefix(a.rk), lt: `${linePrefix(a.rk)}~` })
      await this.#db.del(metaKey(a.rk))
      total -= a.b
      dropped.attempts++
      dropped.bytes += a.b
    }
    return dropped
  }

  async close(): Promise<void> {
    if (this.#closed) return
    await this.flush()
    this.#closed = true
    for (const w of [...this.#waiters.values()]) w.wake() // followers read again and get LogStoreClosedError
    await this.#db.close()
  }

  #push(op: Op, bytes: number): void {
    if (this.#closed) {
      this.#log('dropping a %s record of %s: the log store is closed', op.kind, op.rk)
      return
    }
    this.#queue.push(op)
    this.#queuedBytes += bytes
    this.#pendingBytes += bytes
    if (this.#queue.length >= BATCH_RECORDS) void this.flush()
    else this.#timer ??= setTimeout(() => void this.flush(), this.#opts.flushMs)
  }

  async #meta(rk: string): Promise<Meta | undefined> {
    if (this.#closed) throw new LogStoreClosedError('the log store is closed')
    await this.flush()
    const value = await this.#db.get(metaKey(rk))
    return value === undefined ? undefined : parseMeta(value)
  }

  async #write(ops: Op[]): Promise<void> {
    const batch: BatchOp[] = []
    const touched = new Map<string, Active | undefined>()
    try {
      for (const op of ops) {
        if (!touched.has(op.rk)) touched.set(op.rk, await this.#load(op))
        const a = touched.get(op.rk)
        if (a === undefined) continue
        if (op.kind === 'line') this.#addLine(a, op.rk, op.t, op.stream, op.line, batch)
        if (op.kind === 'lost') {
          const note = `[openfarm: ${this.#lost.get(op.rk) ?? 0} lines lost, the log store fell behind]`
          this.#lost.delete(op.rk)
          this.#addLine(a, op.rk, op.t, 'stderr', note, batch)
        }
        if (op.kind === 'end') {
          a.meta.e = op.end
          batch.push({ type: 'put', key: metaKey(op.rk), value: JSON.stringify(a.meta) })
          touched.set(op.rk, undefined) // later records of the attempt are dropped
          this.#active.delete(op.rk)
        }
      }
      for (const [rk, a] of touched) {
        if (a !== undefined) batch.push({ type: 'put', key: metaKey(rk), value: JSON.stringify(a.meta) })
      }
      await this.#db.batch(batch)
    } catch (err) {
      this.#log.error('writing %d log records failed - %e', ops.length, err)
    }
    for (const rk of touched.keys()) this.#waiters.get(rk)?.wake()
  }

  /** The attempt's state, created by its first record; undefined (drop the record) once it has ended. */
  async #load(op: Op): Promise<Active | undefined> {
    const known = this.#active.get(op.rk)
    if (known !== undefined) return known
    const stored = await this.#db.get(metaKey(op.rk))
    const meta = stored === undefined ? undefined : parseMeta(stored)
    if (meta?.e != null) {
      if (op.kind !== 'start') this.#log('dropping a %s record of the ended attempt %s', op.kind, op.rk)
      return undefined
    }
    const a: Active = { meta: meta ?? { s: op.t, n: 0, d: 0, b: 0 } }
    this.#active.set(op.rk, a)
    return a
  }

  /** Puts the line at the next seq; past the cap, deletes the oldest tail line beyond the first half. */
  #addLine(a: Active, rk: string, t: number, stream: LogStream, line: string, batch: BatchOp[]): void {
    const { meta } = a
    const seq = meta.n++
    const key = lineKey(rk, seq)
    const value = JSON.stringify([t, stream === 'stdout' ? 0 : 1, line])
    const size = key.length + value.length
    batch.push({ type: 'put', key, value })
    meta.b += size
    if (seq < this.#head) return
    const keep = this.#cap - this.#head
    a.ring ??= new Uint32Array(keep)
    const slot = (seq - this.#head) % keep
    if (seq - keep >= this.#head) {
      batch.push({ type: 'del', key: lineKey(rk, seq - keep) })
      meta.b -= a.ring[slot] ?? 0
      meta.d++
    }
    a.ring[slot] = size
  }

  #nextChange(rk: string): Promise<void> {
    const known = this.#waiters.get(rk)
    if (known !== undefined) return known.promise
    let wake = (): void => {}
    const promise = new Promise<void>((resolve) => {
      wake = () => {
        this.#waiters.delete(rk)
        resolve()
      }
    })
    this.#waiters.set(rk, { promise, wake })
    return promise
  }
}

function parseLine(seq: number, value: string): LogLine | undefined {
  try {
    const [t, s, line] = JSON.parse(value) as unknown[]
    if (typeof t !== 'number' || (s !== 0 && s !== 1) || typeof line !== 'string') return undefined
    return { seq, t, stream: s === 0 ? 'stdout' : 'stderr', line }
  } catch {
    return undefined // the caller names the entry
  }
}

function parseMeta(value: string): Meta | undefined {
  try {
    const m = JSON.parse(value) as Meta | null
    return typeof m?.n === 'number' && typeof m.b === 'number' ? m : undefined
  } catch {
    return undefined
  }
}
