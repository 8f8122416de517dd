// Runs one phase of a task as a child process tree (Flamenco's cli_runner): log the quoted command,
// stream bounded lines, kill the whole tree on cancel or timeout, always wait for the exit, and
// return the one reason that matters. execa runs the child; no shell is ever involved.
//
// The child writes its stdout and stderr into two files of ours, unlinked as soon as it runs,
// which are read every OUTPUT_POLL_MS while it runs and to their end once it exits; not through
// pipes. Blender 3.4 flushes its output piece by piece, a line in about 4 writes (686 writes for
// the 183 lines of a 4-frame task of the test scene, counted with strace), and through a pipe each
// write that found the node waiting woke the event loop for one read: about 310 reads per task on
// bench:render, each 13-17 µs of the node's CPU before any line was split (measured), on the cores
// the renders need. Read every 50 ms, a task's output takes a few dozen reads. A file also never
// blocks a child on a slow reader, and a process that keeps it open cannot hold up the phase's end.
// The process is started by the launcher, a small process of ours (launch.ts), not forked from the
// node.

import { randomBytes } from 'node:crypto'
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { LIMITS } from '../crdt/schema.ts'
import { quoteArgv } from './argv.ts'
import { InvalidTemplateError } from './errors.ts'
import { signalGroup, trackGroup, untrackGroup } from './group.ts'
import { type Launched, type LaunchResult, launch } from './launch.ts'
import { DEFAULT_MAX_LINE_CHARS, LineSplitter } from './lines.ts'

export { type DetectOptions, type DetectResult, detectApp, findOnPath } from './detect.ts'

const log = logger('openfarm:runner')

export type OutputStream = 'stdout' | 'stderr'

export interface RunPhaseOptions {
  readonly cwd: string
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>
  /** Abort to cancel: the whole process tree gets SIGTERM, then SIGKILL after `killGraceMs`. */
  readonly signal: AbortSignal
  /** Stops the tree like a cancel once this much time has passed; undefined or 0: no limit. */
  readonly timeoutMs?: number
  readonly onLine: (stream: OutputStream, line: string) => void
  /** Longer lines are cut with a marker; default 4096. */
  readonly maxLineChars?: number
  /** Time between SIGTERM and SIGKILL; default 5000 ms. */
  readonly killGraceMs?: number
  /**
   * Where the two files that take the child's output are made (and unlinked once the child has them
   * open); default the system's temporary directory. A task passes its own directory.
   */
  readonly outputDir?: string
  /**
   * A stream's file is emptied when it has grown past this many bytes and all of it has been read,
   * or at once, with a note in the lines, when this many bytes wait to be read (a process writing
   * faster than the polls read): a process that writes without end does not fill the disk;
   * default 64 MiB.
   */
  readonly outputFileBytes?: number
  /** Told the pid (= process group id) of the child once it runs (the worker records it on disk). */
  readonly onSpawn?: (pid: number) => void
}

export interface PhaseResult {
  readonly ok: boolean
  readonly exitCode: number | null
  readonly signal: string | null
  /** One line: 'exit code 2: <last stderr line>', 'timed out after 5 s', 'cancelled', 'command not found: foo'. */
  readonly reason: string | null
  readonly durationMs: number
}

export const DEFAULT_KILL_GRACE_MS = 5000

/** How often the output of a running child is read (see the top of this file). */
export const OUTPUT_POLL_MS = 50
const READ_BYTES = 64 * 1024
/** At most this much of a stream is read per poll while the child runs: the event loop stays free. */
const MAX_BYTES_PER_POLL = 1024 * 1024
export const DEFAULT_OUTPUT_FILE_BYTES = 64 * 1024 * 1024

type Termination = 'cancelled' | 'timeout'
type Exit = { readonly code: number | null; readonly signal: string | null }

/** Runs argv (argv[0] is the command) without a shell; resolves only after the process has exited. */
export async function runPhase(argv: readonly string[], opts: RunPhaseOptions): Promise<PhaseResult> {
  const command = argv[0]
  if (command === undefined || command === '') throw new InvalidTemplateError('argv is empty')
  const startedAt = performance.now()
  const done = (reason: string | null, exitCode: number | null = null, signal: string | null = null) => ({
    ok: reason === null,
    exitCode,
    signal,
    reason: reason === null ? null : oneLine(reason),
    durationMs: Math.round(performance.now() - startedAt),
  })
  if (opts.signal.aborted) return done(cancelled(opts.signal))
  const cwdProblem = checkCwd(opts.cwd)
  if (cwdProblem !== null) return done(cwdProblem)
  if (opts.signal.aborted) return done(cancelled(opts.signal))

  const grace = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS
  const quoted = quoteArgv(argv)
  log('run %s (cwd %s)', quoted, opts.cwd)
  let lastStderr: string | null = null
  const deliver = (stream: OutputStream, line: string) => {
    if (stream === 'stderr' && line.trim() !== '') lastStderr = line
    try {
      opts.onLine(stream, line)
    } catch (err) {
      log.error('onLine threw for %s: %e', quoted, err)
    }
  }
  const maxChars = opts.maxLineChars ?? DEFAULT_MAX_LINE_CHARS
  const out = new LineSplitter((l) => deliver('stdout', l), maxChars)
  const err = new LineSplitter((l) => deliver('stderr', l), maxChars)

  const dir = opts.outputDir ?? tmpdir()
  let files: { out: OutputFile; err: OutputFile }
  try {
    const limit = opts.outputFileBytes ?? DEFAULT_OUTPUT_FILE_BYTES
    const outFile = new OutputFile(dir, 'stdout', out, limit)
    try {
      files = { out: outFile, err: new OutputFile(dir, 'stderr', err, limit) }
    } catch (e) {
      outFile.close()
      throw e
    }
  } catch (e) {
    return done(`cannot start ${command}: no file for its output in ${dir}: ${(e as Error).message}`)
  }
  const buf = Buffer.allocUnsafe(READ_BYTES)
  const read = (final: boolean) => {
    try {
      files.out.read(buf, final)
      files.err.read(buf, final)
    } catch (e) {
      log.error('cannot read the output of %s: %e', quoted, e)
    }
  }

  // Written from event handlers; a holder object keeps TypeScript from narrowing them to null.
  const state: { termination: Termination | null; exit: Exit | null } = { termination: null, exit: null }
  let pid: number | undefined
  // asked to stop while it is being started: a launcher that does not answer is given up on (launch.ts)
  const unwanted = new AbortController()
  let killTimer: NodeJS.Timeout | undefined
  const stopGroup = (p: number) => {
    log('%s: %s, stopping process group %d', state.termination, quoted, p)
    signalGroup(p, 'SIGTERM')
    killTimer = setTimeout(() => signalGroup(p, 'SIGKILL'), grace)
  }
  const terminate = (why: Termination) => {
    if (state.termination !== null || state.exit !== null) return
    state.termination = why
    // not started yet: the launch is told (once it has resolved, nobody listens)
    if (pid !== undefined) stopGroup(pid)
    else unwanted.abort()
  }
  const onAbort = () => terminate('cancelled')
  opts.signal.addEventListener('abort', onAbort, { once: true })
  const timeoutTimer = opts.timeoutMs ? setTimeout(() => terminate('timeout'), opts.timeoutMs) : undefined

  let child: Launched
  try {
    child = await launch(
      {
        file: command,
        args: argv.slice(1),
        cwd: opts.cwd,
        env: opts.env,
        stdout: files.out,
        stderr: files.err,
      },
      { signal: unwanted.signal, answerMs: grace },
    )
  } catch (e) {
    opts.signal.removeEventListener('abort', onAbort)
    clearTimeout(timeoutTimer)
    files.out.close()
    files.err.close()
    return done(`cannot start ${command}: ${(e as Error).message}`)
  }
  // the child has them open (or never will): only our descriptors keep them now
  files.out.unlink()
  files.err.unlink()
  pid = child.pid
  if (pid !== undefined) {
    trackGroup(pid)
    opts.onSpawn?.(pid)
    // cancelled or timed out while it was being started
    if (state.termination !== null) stopGroup(pid)
  }

  void child.exited.then((exit) => {
    state.exit = exit
    clearTimeout(killTimer)
    if (pid === undefined) return
    // The group does not outlive its leader: stragglers would run on unseen.
    signalGroup(pid, 'SIGKILL')
  })

  const poll = setInterval(() => read(false), OUTPUT_POLL_MS)
  let result: LaunchResult
  try {
    result = await child.result
  } finally {
    clearInterval(poll)
    opts.signal.removeEventListener('abort', onAbort)
    clearTimeout(timeoutTimer)
    clearTimeout(killTimer)
    if (pid !== undefined) untrackGroup(pid)
    // what the child wrote after the last poll (a process that left the group and writes on is
    // not waited for: its lines from now on are not ours)
    read(true)
    files.out.close()
    files.err.close()
    out.end()
    err.end()
  }

  const { exit, termination } = state
  const r =
    termination === 'cancelled'
      ? cancelled(opts.signal)
      : describe(command, exit, termination, opts.timeoutMs, lastStderr, result)
  const final = done(r, exit?.code ?? null, exit?.signal ?? null)
  log('%s: %s in %d ms', quoted, final.reason ?? 'ok', final.durationMs)
  return final
}

/**
 * One output stream of the child: a file made for it alone and unlinked once the child has it open
 * (it is gone when the last descriptor closes), which the child appends to (O_APPEND) and we read at
 * our own offset.
 */
class OutputFile {
  readonly fd: number
  readonly path: string
  #pos = 0
  #linked = true

  constructor(
    dir: string,
    stream: OutputStream,
    private readonly split: LineSplitter,
    private readonly limit: number,
  ) {
    this.path = join(dir, `.openfarm-${stream}-${randomBytes(6).toString('hex')}`)
    const { O_RDWR, O_CREAT, O_EXCL, O_APPEND } = constants
    this.fd = openSync(this.path, O_RDWR | O_CREAT | O_EXCL | O_APPEND, 0o600)
  }

  /** Once the child has it open: the file is gone when the last descriptor closes. */
  unlink(): void {
    try {
      unlinkSync(this.path)
      this.#linked = false
    } catch {
      // a system that cannot unlink an open file: gone at close()
    }
  }

  /**
   * Splits what was written since the last read into lines: at most MAX_BYTES_PER_POLL (and the
   * chunk) while the child runs; all of it once it has ended (`final`).
   */
  read(buf: Buffer, final: boolean): void {
    const size = fstatSync(this.fd).size
    const behind = size - this.#pos
    if (behind > this.limit) {
      // written faster than the polls read: what waits is dropped rather than left to fill the disk.
      // While the child runs the file starts again from nothing (what it writes meanwhile may be
      // lost too); once it has ended, its last MAX_BYTES_PER_POLL are read (its last words: the
      // reason of a failure).
      const keep = final ? Math.min(this.limit, MAX_BYTES_PER_POLL) : 0
      this.split.note(
        `[openfarm: ${behind - keep} bytes of output dropped: written faster than they were read]`,
      )
      if (final) {
        this.#pos = size - keep
      } else {
        ftruncateSync(this.fd, 0)
        this.#pos = 0
      }
    }
    const max = final ? Number.POSITIVE_INFINITY : MAX_BYTES_PER_POLL
    for (let n = 0; n < max; ) {
      const got = readSync(this.fd, buf, 0, buf.length, this.#pos)
      this.#pos += got
      n += got
      if (got > 0) this.split.push(buf.subarray(0, got)) // decoded (copied) before buf is read into again
      if (got < buf.length) {
        this.#emptyIfLarge()
        return
      }
    }
  }

  /**
   * Past the limit and with everything read, the file starts again from nothing (the child's next
   * write lands at the new end, 0). What it writes between the size check and the truncation, a
   * window of microseconds, is lost: only a process that has written `limit` bytes risks that.
   */
  #emptyIfLarge(): void {
    if (this.#pos < this.limit || fstatSync(this.fd).size !== this.#pos) return
    ftruncateSync(this.fd, 0)
    this.#pos = 0
  }

  close(): void {
    closeSync(this.fd)
    if (this.#linked) {
      try {
        unlinkSync(this.path)
      } catch (err) {
        log.error('cannot remove %s: %e', this.path, err)
      }
    }
  }
}

/**
 * Why a run was stopped, for its log and its task's record: 'cancelled', with the reason the signal
 * was aborted with when there is one ('cancelled: node shutting down', 'cancelled: the task went
 * to another host'), so that a stopped run does not read like a user's cancel.
 */
export function cancelled(signal: AbortSignal): string {
  const r: unknown = signal.reason
  const why = r instanceof Error && r.name !== 'AbortError' ? r.message : typeof r === 'string' ? r : ''
  return why === '' ? 'cancelled' : /\bcancel/i.test(why) ? why : `cancelled: ${why}`
}

// The most important reason, in order: could not start, timed out, exit status (a cancel is told
// by cancelled(), before this).
function describe(
  command: string,
  exit: Exit | null,
  termination: Termination | null,
  timeoutMs: number | undefined,
  lastStderr: string | null,
  result: LaunchResult,
): string | null {
  if (exit === null) {
    if (result.code === 'ENOENT') {
      return command.includes('/') && existsSync(command)
        ? `cannot run ${command}: its interpreter was not found`
        : `command not found: ${command}`
    }
    if (result.code === 'EACCES') return `permission denied: ${command}`
    if (termination === 'timeout') {
      return `timed out after ${seconds(timeoutMs ?? 0)} before it started: ${result.message ?? 'no answer'}`
    }
    return `cannot start ${command}: ${result.message ?? 'unknown error'}`
  }
  if (result.code === 'ELAUNCHER') return `${command}: ${result.message ?? 'the launcher ended'}`
  if (termination === 'timeout') return `timed out after ${seconds(timeoutMs ?? 0)}`
  const tail = lastStderr === null ? '' : `: ${lastStderr.trim()}`
  if (exit.code === 0) return null
  if (exit.code !== null) return `exit code ${exit.code}${tail}`
  return `killed by ${exit.signal ?? 'a signal'}${tail}`
}

/**
 * Inline: it stands between a slot freeing and its next process starting, and a stat through the
 * thread pool comes back only after whatever the event loop has queued meanwhile (2-3 ms on a busy
 * node, measured) for a call of microseconds.
 */
function checkCwd(cwd: string): string | null {
  try {
    const s = statSync(cwd)
    return s.isDirectory() ? null : `working directory is not a directory: ${cwd}`
  } catch {
    return `working directory not found: ${cwd}`
  }
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(ms < 10_000 ? 1 : 0))} s`
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: reasons are one line of plain text
const CONTROL_RE = /[\u0000-\u001f\u007f]+/g

function oneLine(reason: string): string {
  const s = reason.replace(CONTROL_RE, ' ')
  return s.length > LIMITS.reasonChars ? `${s.slice(0, LIMITS.reasonChars - 3)}...` : s
}
