// Runs one phase of a task as a child process tree (Flamenco's cli_runner): log the quoted command,
// stream bounded lines, kill the whole tree on cancel or timeout, always wait for the exit, and
// return the one reason that matters. execa runs the child; no shell is ever involved.

import { existsSync, statSync } from 'node:fs'
import { logger } from '@libp2p/logger'
import { execa } from 'execa'
import { LIMITS } from '../crdt/schema.ts'
import { quoteArgv } from './argv.ts'
import { InvalidTemplateError } from './errors.ts'
import { signalGroup, trackGroup, untrackGroup } from './group.ts'
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
  /** Time between SIGTERM and SIGKILL, and the most we wait for pipes after the exit; default 5000 ms. */
  readonly killGraceMs?: number
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
  if (opts.signal.aborted) return done('cancelled')
  const cwdProblem = checkCwd(opts.cwd)
  if (cwdProblem !== null) return done(cwdProblem)
  if (opts.signal.aborted) return done('cancelled')

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

  let child: ReturnType<typeof startChild>
  try {
    child = startChild(command, argv.slice(1), opts)
  } catch (e) {
    return done(`cannot start ${command}: ${(e as Error).message}`)
  }
  child.stdout?.on('data', (chunk: Buffer) => out.push(chunk))
  child.stderr?.on('data', (chunk: Buffer) => err.push(chunk))
  const pid = child.pid
  if (pid !== undefined) {
    trackGroup(pid)
    opts.onSpawn?.(pid)
  }

  // Written from event handlers; a holder object keeps TypeScript from narrowing them to null.
  const state: { termination: Termination | null; exit: Exit | null } = { termination: null, exit: null }
  let killTimer: NodeJS.Timeout | undefined
  let pipeTimer: NodeJS.Timeout | undefined
  const terminate = (why: Termination) => {
    if (state.termination !== null || state.exit !== null || pid === undefined) return
    state.termination = why
    log('%s: %s, stopping process group %d', why, quoted, pid)
    signalGroup(pid, 'SIGTERM')
    killTimer = setTimeout(() => signalGroup(pid, 'SIGKILL'), grace)
  }
  const onAbort = () => terminate('cancelled')
  opts.signal.addEventListener('abort', onAbort, { once: true })
  const timeoutTimer = opts.timeoutMs ? setTimeout(() => terminate('timeout'), opts.timeoutMs) : undefined
  child.once('exit', (code: number | null, signal: string | null) => {
    state.exit = { code, signal }
    clearTimeout(killTimer)
    if (pid === undefined) return
    // The group does not outlive its leader: stragglers would hold our pipes open and run on unseen.
    signalGroup(pid, 'SIGKILL')
    // A descendant that left the group (setsid) may still hold a pipe: stop waiting for it.
    pipeTimer = setTimeout(() => {
      child.stdout?.destroy()
      child.stderr?.destroy()
    }, grace)
  })

  let result: Awaited<typeof child>
  try {
    result = await child
  } finally {
    opts.signal.removeEventListener('abort', onAbort)
    clearTimeout(timeoutTimer)
    clearTimeout(killTimer)
    clearTimeout(pipeTimer)
    if (pid !== undefined) untrackGroup(pid)
    out.end()
    err.end()
  }

  const { exit, termination } = state
  const r = describe(command, exit, termination, opts.timeoutMs, lastStderr, result)
  const final = done(r, exit?.code ?? null, exit?.signal ?? null)
  log('%s: %s in %d ms', quoted, final.reason ?? 'ok', final.durationMs)
  return final
}

function startChild(file: string, args: string[], opts: RunPhaseOptions) {
  return execa(file, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    // Own process group, so the tree can be signalled as one (see group.ts).
    detached: true,
    reject: false,
    windowsHide: true,
  })
}

// The most important reason, in order: could not start, cancelled, timed out, exit status.
function describe(
  command: string,
  exit: Exit | null,
  termination: Termination | null,
  timeoutMs: number | undefined,
  lastStderr: string | null,
  result: { code?: string; originalMessage?: string; shortMessage?: string },
): string | null {
  if (exit === null) {
    if (result.code === 'ENOENT') {
      return command.includes('/') && existsSync(command)
        ? `cannot run ${command}: its interpreter was not found`
        : `command not found: ${command}`
    }
    if (result.code === 'EACCES') return `permission denied: ${command}`
    return `cannot start ${command}: ${result.originalMessage ?? result.shortMessage ?? 'unknown error'}`
  }
  if (termination === 'cancelled') return 'cancelled'
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
