// `openfarm logs` and `openfarm fetch`: a task's output lines from whichever peer ran it, and a
// job's outputs pulled to a directory on this machine.

import { resolve } from 'node:path'
import type { ApiClient } from '../src/node/client.ts'
import { isJson, out } from './read.ts'

export class FilesUsageError extends Error {
  static override readonly name = 'UsageError'
  override readonly name = 'UsageError'
}

/** What GET /v1/logs streams, one per line. */
export type LogFrame =
  | { kind: 'attempt'; attempt: number; peer: string; host: string | null; state: string }
  | { kind: 'line'; seq: number; t: number; stream: 'stdout' | 'stderr'; line: string }
  /** `finished` false: the attempt had not ended when its lines were read (or its host stopped) */
  | { kind: 'end'; finished?: boolean; ok?: boolean; reason?: string | null }
  /** `following`: the node goes on (the same attempt again while it runs, else the next one) */
  | { kind: 'error'; message: string; following?: boolean }
  /** A follow's last frame: the task's state, which it does not leave */
  | { kind: 'task'; state: string }

/** 'JOB/3', or 'JOB' and '3' as two arguments. */
export function parseTaskRef(a: string | undefined, b: string | undefined): { job: string; task: number } {
  const usage = 'logs needs a task: openfarm logs JOB/N (N counts from 0, as `status` shows)'
  if (a === undefined) throw new FilesUsageError(usage)
  const slash = a.lastIndexOf('/')
  const [job, n] = slash > 0 ? [a.slice(0, slash), a.slice(slash + 1)] : [a, b]
  if (n === undefined || !/^\d+$/.test(n)) throw new FilesUsageError(usage)
  return { job, task: Number(n) }
}

export async function cmdLogs(
  client: ApiClient,
  ref: { job: string; task: number },
  opts: { follow: boolean; attempt?: number | undefined },
): Promise<void> {
  const stop = stopOnInterrupt()
  const q = new URLSearchParams()
  if (opts.follow) q.set('follow', '1')
  if (opts.attempt !== undefined) q.set('attempt', String(opts.attempt))
  const path = `/v1/logs/${encodeURIComponent(ref.job)}/${ref.task}?${q}`
  // a read without --follow ends with its attempt's end; a follow with the task's state
  let last: LogFrame['kind'] | undefined
  for await (const f of client.lines<LogFrame>(path, stop.signal)) {
    last = f.kind
    if (isJson()) {
      console.log(JSON.stringify(f))
      if (f.kind === 'error' && f.following !== true) throw new LogsError(f.message)
      continue
    }
    if (f.kind === 'attempt') {
      const where = f.host === null ? f.peer.slice(-8) : `${f.host} (${f.peer.slice(-8)})`
      console.error(`-- ${ref.job}/${ref.task} attempt ${f.attempt} on ${where}: ${f.state}`)
    } else if (f.kind === 'line') {
      ;(f.stream === 'stderr' ? process.stderr : process.stdout).write(`${f.line}\n`)
    } else if (f.kind === 'end') {
      console.error(`-- attempt ${endText(f, opts.follow)}`)
    } else if (f.kind === 'task') {
      console.error(`-- ${ref.job}/${ref.task} is ${f.state}`)
    } else if (f.following === true) {
      console.error(`-- ${f.message}; still following`)
    } else {
      throw new LogsError(f.message)
    }
  }
  if (stop.signal.aborted) return
  const complete = opts.follow && opts.attempt === undefined ? last === 'task' : last === 'end'
  if (!complete) throw new LogsError('the node stopped sending the lines before they ended (did it stop?)')
}

/** Ctrl-C ends a streamed command quietly: its stream stops, and it exits 0. */
function stopOnInterrupt(): AbortController {
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  return stop
}

export class FetchIncompleteError extends Error {
  static override readonly name = 'FetchIncompleteError'
  override readonly name = 'FetchIncompleteError'
}

export class LogsError extends Error {
  static override readonly name = 'LogsError'
  override readonly name = 'LogsError'
}

function endText(f: Extract<LogFrame, { kind: 'end' }>, follow: boolean): string {
  if (f.finished === false) {
    return follow ? 'not ended: its host stopped serving its lines' : 'still running (--follow follows it)'
  }
  return f.ok === undefined ? 'ended' : f.ok ? 'finished' : `failed: ${f.reason ?? 'no reason'}`
}

export interface FetchReport {
  readonly dir: string
  readonly written: string[]
  readonly present: string[]
  readonly conflicts: string[]
  readonly failed: { path: string; reason: string }[]
  readonly outputs: number
}

export async function cmdFetch(
  client: ApiClient,
  job: string | undefined,
  dir: string | undefined,
  opts: { overwrite: boolean },
) {
  if (job === undefined || dir === undefined) {
    throw new FilesUsageError('fetch needs a job and a directory: openfarm fetch JOB --out DIR')
  }
  const stop = stopOnInterrupt()
  // a frame per output as it is done (a large job takes minutes), then the report
  let got: FetchReport | undefined
  const path = `/v1/jobs/${encodeURIComponent(job)}/fetch`
  const body = { out: resolve(dir), overwrite: opts.overwrite }
  for await (const f of client.lines<FetchFrame>(path, stop.signal, body)) {
    if (f.kind === 'report') {
      const { kind: _, ...report } = f
      got = report
    } else if (f.kind === 'error') throw new Error(f.message)
    else if (!isJson() && f.outcome === 'written') console.error(`-- ${f.path}`)
  }
  if (stop.signal.aborted) return
  if (got === undefined) throw new Error('the node stopped before the fetch ended (did it stop?)')
  const r = got
  out(r, () => {
    const lines = [
      `${r.outputs} output(s) of ${job}: ${r.written.length} fetched, ${r.present.length} already there (${r.dir})`,
    ]
    for (const c of r.conflicts) lines.push(`  kept ${c}: a different file is already there`)
    for (const f of r.failed) lines.push(`  could not fetch ${f.path}: ${f.reason}`)
    return lines.join('\n')
  })
  // the directory does not hold the job's outputs: a script's `fetch && ...` must not go on
  const missing: string[] = []
  if (r.failed.length > 0) missing.push(`${r.failed.length} output(s) could not be fetched`)
  if (r.conflicts.length > 0)
    missing.push(
      `${r.conflicts.length} output(s) not written: other files are there (--overwrite replaces them)`,
    )
  if (missing.length > 0) throw new FetchIncompleteError(missing.join('; '))
}

/** What POST /v1/jobs/ID/fetch streams, one per line. */
export type FetchFrame =
  | { kind: 'file'; path: string; outcome: 'written' | 'present' | 'conflict' | 'failed'; reason?: string }
  | ({ kind: 'report' } & FetchReport)
  | { kind: 'error'; message: string }
