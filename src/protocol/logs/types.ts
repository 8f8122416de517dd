// What the log wire carries and what it needs from a node's log store.

export type LogStream = 'stdout' | 'stderr'

/** One attempt of one task of one job: the unit whose lines are stored and served. */
export interface AttemptRef {
  readonly job: string
  readonly task: number
  readonly attempt: number
}

export interface LogLine {
  /** Position in the attempt, from 0; a gap in a reading is covered by a marker line. */
  readonly seq: number
  /** Wall clock of the worker when it got the line, ms since the epoch. */
  readonly t: number
  readonly stream: LogStream
  readonly line: string
}

export interface AttemptEnd {
  readonly ok: boolean
  readonly reason?: string
  /** Wall clock of the worker, ms since the epoch. */
  readonly t: number
}

export interface AttemptStatus {
  /** When the first line (or start) was recorded, ms since the epoch. */
  readonly started: number
  /** Lines appended so far: the next line's seq. */
  readonly lines: number
  /** Lines dropped by the per-attempt cap. */
  readonly dropped: number
  /** Approximate bytes the attempt takes in the store. */
  readonly bytes: number
  readonly end?: AttemptEnd
}

/** The last item of a tail: `finished` false means the attempt still runs (a reading without follow). */
export interface LogEnd {
  readonly end: true
  readonly finished: boolean
  readonly ok?: boolean
  readonly reason?: string
}

export interface LogRequest extends AttemptRef {
  /** First seq wanted (0: everything). */
  readonly from: number
  /** Keep streaming new lines until the attempt ends. */
  readonly follow: boolean
}

export interface PageOptions {
  readonly from?: number
  /** Wait for new lines until the attempt ends (true), or stop at the lines there are now (false). */
  readonly follow?: boolean
  readonly limit?: number
  readonly signal?: AbortSignal
}

/** What the service serves from: a node's LogStore (src/node/logstore.ts) implements it. */
export interface LogSource {
  /** undefined when the attempt is unknown here. */
  status(ref: AttemptRef): Promise<AttemptStatus | undefined>
  /** Pages of lines in seq order; throws UnknownAttemptError; returns on abort. */
  pages(ref: AttemptRef, options?: PageOptions): AsyncIterable<readonly LogLine[]>
}

export function isLogEnd(x: LogLine | LogEnd): x is LogEnd {
  return 'end' in x && x.end === true
}
