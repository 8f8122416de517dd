// Log Router, worker side: each attempt's stdout/stderr lines in this node's own level database
// (<dataDir>/logs). Keys sort so one range read returns one attempt's lines in order. append() is
// sync for the runner; lines go out in small batches (every flushMs) and wake live followers.
// Bounds: a line is cut at maxLineChars, an attempt keeps its first and last lines past
// maxLinesPerAttempt (a reader gets a marker line counting what it missed), lines waiting for the disk
// are capped at maxPendingBytes, and prune() drops the oldest finished attempts.

import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { Level } from 'level'
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
  /** Pause before a batch goes to disk (default 20 ms); a full batch goes at once. */
  readonly flushMs?: number
  readonly maxLineChars?: number
  /** Bytes of lines waiting for the disk; past it lines are counted as lost (default 16 MiB). */
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

/** Stored per attempt, updated in the same batch as its lines. */
interface Meta {
  s: number
  n: number
  d: number
  b: number
  e?: AttemptEnd
}

interface Active {
  readonly meta: Meta
  /** Byte sizes of the kept tail lines, so dropping one keeps `b` exact. */
  ring?: Uint32Array
}

type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string }

type Op =
  | { kind: 'line'; rk: string; t: number; stream: LogStream; line: string }
  | { kind: 'start'; rk: string; t: number }
  | { kind: 'lost'; rk: string; t: number }
  | { kind: 'end'; rk: string; end: AttemptEnd }

const BATCH_LINES = 1000
const INTERRUPTED = 'interrupted: the node stopped while this attempt ran'
const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0')
const refKey = (r: AttemptRef): string => `${r.job}!${hex(r.task, 8)}!${hex(r.attempt, 8)}`
const metaKey = (rk: string): string => `m!${rk}`
const linePrefix = (rk: string): string => `l!${rk}!`
const lineKey = (rk: string, seq: number): string => linePrefix(rk) + hex(seq, 12)

export class LogStore implements LogSource {
  readonly #db: Level<string, string>
  readonly #log: Logger
  readonly #cap: number
  readonly #head: number
  readonly #flushMs: number
  readonly #maxLineChars: number
  readonly #maxPendingBytes: number
  readonly #now: () => number
  readonly #active = new Map<string, Active>()
  readonly #waiters = new Map<string, { promise: Promise<void>; wake: () => void }>()
  readonly #lost = new Map<string, number>()
  #queue: Op[] = []
  /** Bytes of lines appended and not yet written (queued or in a running batch). */
  #pendingBytes = 0
  #queuedBytes = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #tail: Promise<void> = Promise.resolve()
  #closed = false

  private constructor(db: Level<string, string>, opts: LogStoreOptions) {
    this.#db = db
    this.#log = logger('openfarm:logstore')
    this.#cap = opts.maxLinesPerAttempt ?? 50_000
    this.#head = Math.floor(this.#cap / 2)
    this.#flushMs = opts.flushMs ?? 20
    this.#maxLineChars = opts.maxLineChars ?? MAX_LINE_CHARS
    this.#maxPendingBytes = opts.maxPendingBytes ?? 16 * 1024 * 1024
    this.#now = opts.now ?? Date.now
  }

  /** Opens (or creates) the store in `dir`; attempts a previous process left open are ended as interrupted. */
  static async open(dir: string, opts: LogStoreOptions = {}): Promise<LogStore> {
    for (const [k, v] of Object.entries(opts)) {
      if (k !== 'now' && (!Number.isSafeInteger(v) || v < (k === 'flushMs' ? 0 : 2))) {
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
    const t = store.#now()
    const ops: Array<{ type: 'put'; key: string; value: string }> = []
    for await (const [key, value] of db.iterator({ gte: 'm!', lt: 'm!~' })) {
      const meta = parseMeta(value)
      if (meta != null && meta.e == null) {
        ops.push({
          type: 'put',
          key,
          value: JSON.stringify({ ...meta, e: { ok: false, reason: INTERRUPTED, t } }),
        })
      }
    }
    if (ops.length > 0) await db.batch(ops)
    return store
  }

  /** Records that an attempt began, so followers can attach before its first line. */
  start(ref: AttemptRef): void {
    this.#push({ kind: 'start', rk: refKey(checkRef(ref)), t: this.#now() }, 0)
  }

  append(ref: AttemptRef, stream: LogStream, line: string): void {
    const rk = refKey(checkRef(ref))
    if (this.#closed) {
      this.#log('dropping a line of %s: the log store is closed', rk)
      return
    }
    const t = this.#now()
    if (this.#pendingBytes > this.#maxPendingBytes) {
      // the marker takes the place of the first lost line; it counts every loss until it is written
      if (!this.#lost.has(rk)) this.#push({ kind: 'lost', rk, t }, 0)
      this.#lost.set(rk, (this.#lost.get(rk) ?? 0) + 1)
      return
    }
    const cut = cutText(line, this.#maxLineChars)
    this.#push({ kind: 'line', rk, t, stream, line: cut }, cut.length)
  }

  /** Marks the attempt finished (later lines are dropped); resolves once that is on disk. */
  end(ref: AttemptRef, result: { ok: boolean; reason?: string }): Promise<void> {
    const end: AttemptEnd = { ok: result.ok === true, t: this.#now() }
    if (result.reason !== undefined)
      Object.assign(end, { reason: cutText(String(result.reason), MAX_REASON_CHARS) })
    this.#push({ kind: 'end', rk: refKey(checkRef(ref)), end }, 0)
    return this.flush()
  }

  /** Resolves once everything appended before the call is on disk (and followers were woken). */
  flush(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#queue.length > 0) {
      const ops = this.#queue
      const bytes = this.#queuedBytes
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
    const meta = await this.#meta(refKey(checkRef(ref)))
    return meta == null ? undefined : toStatus(meta)
  }

  /** Lines from `from` (default 0), at most `limit` (default 1000) plus a marker where lines were dropped. */
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
      if (seq > next) lines.push(marker(next, seq, line.t))
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
        continue
      }
      if (page.ended || opts.follow !== true) return
      if (!(await changeOrAbort(changed, opts.signal))) return
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
    const prefix = `m!${refKey(checkRef({ job, task, attempt: 0 })).slice(0, -8)}`
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
    const now = this.#now()
    const done: Array<{ rk: string; t: number; b: number }> = []
    let total = 0
    for await (const [key, value] of this.#db.iterator({ gte: 'm!', lt: 'm!~' })) {
      const meta = parseMeta(value)
      if (meta == null) continue
      total += meta.b
      if (meta.e != null) done.push({ rk: key.slice(2), t: meta.e.t, b: meta.b })
    }
    done.sort((a, b) => a.t - b.t)
    const dropped = { attempts: 0, bytes: 0 }
    for (const a of done) {
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
    if (this.#closed) throw new LogStoreClosedError('the log store is closed')
    this.#queue.push(op)
    this.#queuedBytes += bytes
    this.#pendingBytes += bytes
    if (this.#queue.length >= BATCH_LINES) void this.flush()
    else this.#timer ??= setTimeout(() => void this.flush(), this.#flushMs)
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
        if (!touched.has(op.rk)) touched.set(op.rk, await this.#load(op.rk, op))
        const a = touched.get(op.rk)
        if (a == null) continue
        if (op.kind === 'end') {
          a.meta.e = op.end
          touched.set(op.rk, undefined)
          this.#active.delete(op.rk)
          batch.push({ type: 'put', key: metaKey(op.rk), value: JSON.stringify(a.meta) })
        } else if (op.kind === 'line') {
          this.#addLine(a, op.rk, op.t, op.stream, op.line, batch)
        } else if (op.kind === 'lost') {
          const note = `[openfarm: ${this.#lost.get(op.rk) ?? 0} lines lost, the log store fell behind]`
          this.#lost.delete(op.rk)
          this.#addLine(a, op.rk, op.t, 'stderr', note, batch)
        }
      }
      for (const [rk, a] of touched) {
        if (a != null) batch.push({ type: 'put', key: metaKey(rk), value: JSON.stringify(a.meta) })
      }
      await this.#db.batch(batch)
    } catch (err) {
      this.#log.error('writing %d log records failed - %e', ops.length, err)
    }
    for (const rk of touched.keys()) this.#waiters.get(rk)?.wake()
  }

  /** The attempt's state, created on its first record; undefined (drop the op) once it has ended. */
  async #load(rk: string, op: Op): Promise<Active | undefined> {
    const known = this.#active.get(rk)
    if (known != null) return known
    const stored = await this.#db.get(metaKey(rk))
    const meta = stored === undefined ? undefined : parseMeta(stored)
    if (meta?.e != null) {
      if (op.kind !== 'start') this.#log('dropping a %s record for the ended attempt %s', op.kind, rk)
      return undefined
    }
    const a: Active = { meta: meta ?? { s: op.kind === 'end' ? op.end.t : op.t, n: 0, d: 0, b: 0 } }
    this.#active.set(rk, a)
    return a
  }

  #addLine(a: Active, rk: string, t: number, stream: LogStream, line: string, batch: BatchOp[]): void {
    const { meta } = a
    const seq = meta.n++
    const key = lineKey(rk, seq)
    const value = JSON.stringify([t, stream === 'stdout' ? 0 : 1, line])
    const size = key.length + value.length
    batch.push({ type: 'put', key, value })
    meta.b += size
    if (seq < this.#head) return
    const tailKeep = this.#cap - this.#head
    a.ring ??= new Uint32Array(tailKeep)
    const slot = (seq - this.#head) % tailKeep
    const drop = seq - tailKeep
    if (drop >= this.#head) {
      batch.push({ type: 'del', key: lineKey(rk, drop) })
      meta.b -= a.ring[slot] ?? 0
      meta.d++
    }
    a.ring[slot] = size
  }

  #nextChange(rk: string): Promise<void> {
    const known = this.#waiters.get(rk)
    if (known != null) return known.promise
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

function marker(from: number, found: number, t: number): LogLine {
  const n = found - from
  return {
    seq: found - 1,
    t,
    stream: 'stderr',
    line: `[openfarm: ${n} lines dropped, over the attempt's line cap]`,
  }
}

function parseLine(seq: number, value: string): LogLine | undefined {
  try {
    const v: unknown = JSON.parse(value)
    if (!Array.isArray(v) || v.length !== 3 || !Number.isSafeInteger(seq)) return undefined
    const [t, s, line] = v as unknown[]
    if (typeof t !== 'number' || (s !== 0 && s !== 1) || typeof line !== 'string') return undefined
    return { seq, t, stream: s === 0 ? 'stdout' : 'stderr', line }
  } catch {
    return undefined // named by the caller's log line
  }
}

function parseMeta(value: string): Meta | undefined {
  try {
    const m = JSON.parse(value) as Meta
    return typeof m?.n === 'number' && typeof m.b === 'number' ? m : undefined
  } catch {
    return undefined
  }
}

function toStatus(m: Meta): AttemptStatus {
  const s = { started: m.s, lines: m.n, dropped: m.d, bytes: m.b }
  return m.e == null ? s : { ...s, end: m.e }
}

/** Resolves true when `change` settles first, false when `signal` aborts first. */
async function changeOrAbort(change: Promise<void>, signal: AbortSignal | undefined): Promise<boolean> {
  if (signal == null) return change.then(() => true)
  if (signal.aborted) return false
  let onAbort = (): void => {}
  const aborted = new Promise<false>((resolve) => {
    onAbort = () => resolve(false)
  })
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await Promise.race([change.then(() => true), aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
