// Starts a phase's process through the launcher (launcher.mjs), a small process of its own, rather
// than from the node. On Linux, libuv starts a process by fork(), which copies the page tables of the
// process that forks (its event loop stopped meanwhile), and the child frees them again at exec: both
// in proportion to the forking process's anonymous memory; and each page the parent writes after a
// fork faults once. bench:render's 3 nodes (130 MB of anonymous memory) took 15-22 thousand minor
// faults per job of 12 tasks, and 200 MB more memory added 240 ms of CPU to such a job (a stand-in
// Blender). The launcher has 14 MB of anonymous memory (61 MB resident, the rest code): /bin/true
// takes 1.9 ms as a phase from it, 3.4 ms from a 96 MB process. On a job of bench:render with the
// stand-in Blender, the nodes' CPU fell by 63 ms (median of 20 jobs), the launcher took 25, and the
// minor faults fell to about 1,000.
//
// One launcher per process, started on the first phase and again after it ends for any reason.
// Should one end before it said it was ready (it cannot load, or cannot be started), processes are
// started from this process from then on. Should one end while its processes run, or not answer a
// request that was given up on (launch's `signal`), each of its processes is killed and reported as
// not run to its end ("the launcher ended").

import { type ChildProcess, fork } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'
import { execa } from 'execa'
import { environHas, signalGroup } from './group.ts'

const log = logger('openfarm:runner')

const LAUNCHER = fileURLToPath(new URL('./launcher.mjs', import.meta.url))

export interface LaunchRequest {
  readonly file: string
  readonly args: readonly string[]
  readonly cwd: string
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Descriptors of the files the process writes its output to, and their paths (the launcher opens those). */
  readonly stdout: { readonly fd: number; readonly path: string }
  readonly stderr: { readonly fd: number; readonly path: string }
}

export interface Exit {
  readonly code: number | null
  readonly signal: string | null
}

/** How a launch ended: `code` names the error (ENOENT, EACCES) of a process that could not start. */
export interface LaunchResult {
  readonly code: string | null
  readonly message: string | null
}

/** A process started (or not: no pid) in its own process group. */
export interface Launched {
  readonly pid: number | undefined
  /** Resolves when the process has exited (never, if it did not start). */
  readonly exited: Promise<Exit>
  /** Resolves last, in every case. */
  readonly result: Promise<LaunchResult>
}

export interface LaunchOptions {
  /**
   * The process is no longer wanted (cancelled, timed out). A launcher that has not answered the
   * request `answerMs` after this (stopped, wedged) is killed, with whatever it started, and the
   * launch resolves as not run to its end; the next launch starts a new launcher.
   */
  readonly signal?: AbortSignal
  readonly answerMs?: number
}

interface Pending {
  readonly req: LaunchRequest
  /** In the process's environment: finds it should its pid never reach us (reapMarked). */
  readonly marker: string
  pid?: number
  answered: boolean
  /** The process is no longer wanted (launch's signal): not started elsewhere should this launcher fail. */
  givenUp: boolean
  /** Resolves the launch (once): the process runs, or never will. */
  resolve: (l: Launched) => void
  onPid: (pid: number) => void
  onExit: (e: Exit) => void
  onResult: (r: LaunchResult) => void
}

interface Launcher {
  readonly proc: ChildProcess
  ready: boolean
  ended: boolean
  readonly pending: Map<number, Pending>
}

type Message =
  | { ready: true }
  | { id: number; pid: number }
  | { id: number; exit: Exit }
  | { id: number; result: LaunchResult }

/** The variable a launched process's marker is in. */
export const MARKER_VAR = 'OPENFARM_LAUNCH'
const DEFAULT_ANSWER_MS = 5_000

let current: Launcher | null = null
/** A launcher ended by itself before it was ready: processes start from this process from now on. */
let broken = false
let nextId = 1

/** Starts `req` in its own process group; resolves once it runs (its pid known) or could not start. */
export async function launch(req: LaunchRequest, opts: LaunchOptions = {}): Promise<Launched> {
  const l = launcherProcess()
  return l === null ? direct(req) : viaLauncher(l, req, opts)
}

/** The launcher's pid while it runs (its CPU, and its children's, are not this process's). */
export function launcherPid(): number | undefined {
  return current?.proc.connected === true ? current.proc.pid : undefined
}

function launcherProcess(): Launcher | null {
  // (one that ended is no longer current)
  if (current?.proc.connected === true) return current
  if (broken) return null
  let proc: ChildProcess
  try {
    proc = fork(LAUNCHER, [], {
      // no loader (tsx) and a small heap: this process stays small, which is what it is for
      execArgv: ['--max-semi-space-size=1', '--max-old-space-size=64'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    })
  } catch (err) {
    broken = true
    log.error('cannot start the launcher, starting processes directly: %s', (err as Error).message)
    return null
  }
  const l: Launcher = { proc, ready: false, ended: false, pending: new Map() }
  proc.on('message', (m: Message) => onMessage(l, m))
  proc.on('error', (err) => {
    log.error('the launcher: %s', err.message)
    // it could not be started at all (EAGAIN, EMFILE): no 'exit' need follow
    if (proc.pid === undefined) onLauncherEnd(l, err.message)
  })
  // Retired when its channel closes, which comes after every message it sent has been read ('exit'
  // may come before: a pid message unread, or its ready). Should a process of its hold the channel
  // open after it ended, its exit does, a second later.
  proc.once('disconnect', () => onLauncherEnd(l, 'its channel closed'))
  proc.once('exit', (code, signal) => {
    setTimeout(() => onLauncherEnd(l, signal ?? `exit code ${code}`), 1_000).unref()
  })
  proc.unref()
  // the channel keeps this process alive only while a launch is under way (ref in viaLauncher)
  proc.channel?.unref()
  current = l
  return l
}

function viaLauncher(l: Launcher, req: LaunchRequest, opts: LaunchOptions): Promise<Launched> {
  const id = nextId++
  return new Promise((resolve) => {
    let onExit!: (e: Exit) => void
    let onResult!: (r: LaunchResult) => void
    const exited = new Promise<Exit>((r) => (onExit = r))
    const result = new Promise<LaunchResult>((r) => (onResult = r))
    let answerTimer: NodeJS.Timeout | undefined
    const onGiveUp = () => {
      p.givenUp = true
      answerTimer = setTimeout(() => {
        if (p.answered || l.ended) return
        log.error('the launcher did not answer in %d ms: killing it', opts.answerMs ?? DEFAULT_ANSWER_MS)
        // what it started but did not report: looked for now and again once it is gone (a child
        // between its fork and its exec has the launcher's environment, without the marker)
        const unseen = [...l.pending.values()].filter((q) => q.pid === undefined).map((q) => q.marker)
        l.proc.once('exit', () => {
          for (const marker of unseen) reapMarked(marker)
        })
        l.proc.kill('SIGKILL')
        onLauncherEnd(l, 'it did not answer', true)
      }, opts.answerMs ?? DEFAULT_ANSWER_MS)
    }
    const p: Pending = {
      req,
      marker: `${process.pid}-${id}`,
      answered: false,
      givenUp: false,
      resolve: (launched) => {
        if (p.answered) return
        p.answered = true
        clearTimeout(answerTimer)
        opts.signal?.removeEventListener('abort', onGiveUp)
        resolve(launched)
      },
      onPid: (pid) => {
        p.pid = pid
        p.resolve({ pid, exited, result })
      },
      onExit,
      onResult: (r) => {
        l.pending.delete(id)
        if (l.pending.size === 0) l.proc.channel?.unref()
        onResult(r)
        // a process that could not start resolves its launch here (no pid message came)
        p.resolve({ pid: undefined, exited, result })
      },
    }
    l.pending.set(id, p)
    if (opts.signal?.aborted) onGiveUp()
    else opts.signal?.addEventListener('abort', onGiveUp, { once: true })
    l.proc.channel?.ref()
    const request = {
      id,
      file: req.file,
      args: req.args,
      cwd: req.cwd,
      env: { ...process.env, ...req.env, [MARKER_VAR]: p.marker },
      stdout: req.stdout.path,
      stderr: req.stderr.path,
    }
    l.proc.send(request, (err) => {
      // a launcher not ready yet: its end (the channel is closed) decides what becomes of the request
      if (err && l.ready && l.pending.get(id) === p) {
        p.onResult({ code: 'ELAUNCHER', message: `the launcher did not take it: ${err.message}` })
      }
    })
  })
}

function onMessage(l: Launcher, m: Message): void {
  if ('ready' in m) {
    l.ready = true
    return
  }
  const p = l.pending.get(m.id)
  if (p === undefined) return
  if ('pid' in m) p.onPid(m.pid)
  else if ('exit' in m) p.onExit(m.exit)
  else p.onResult(m.result)
}

/**
 * A launcher that ended, or was killed for not answering (`killed`). Ready, what it started is
 * killed and reported as not run to its end. Not ready, it took none of its requests: they start
 * from this process, and so does every launch from now on if it ended by itself (it cannot load or
 * start); one killed for being slow to load is replaced by the next launch. A request given up on
 * is not started anywhere.
 */
function onLauncherEnd(l: Launcher, why: string, killed = false): void {
  if (l.ended) return
  l.ended = true
  if (current === l) current = null
  const pending = [...l.pending.values()]
  l.pending.clear()
  const notAnswered = { code: 'ELAUNCHER', message: 'the launcher did not answer' }
  if (!l.ready) {
    if (!killed) {
      broken = true
      log.error('the launcher could not start (%s): processes start from this process from now on', why)
    }
    for (const p of pending) {
      reapMarked(p.marker)
      if (p.givenUp) p.onResult(notAnswered)
      else
        direct(p.req).then(p.resolve, (err: Error) => {
          p.onResult({ code: 'ELAUNCHER', message: err.message })
        })
    }
    return
  }
  if (pending.length > 0) log.error('the launcher ended (%s) with %d request(s) open', why, pending.length)
  for (const p of pending) {
    if (p.pid === undefined) {
      reapMarked(p.marker)
      p.onResult(
        p.givenUp
          ? notAnswered
          : { code: 'ELAUNCHER', message: 'the launcher ended before the process started' },
      )
    } else {
      signalGroup(p.pid, 'SIGKILL')
      p.onExit({ code: null, signal: 'SIGKILL' })
      p.onResult({ code: 'ELAUNCHER', message: 'the launcher ended while the process ran' })
    }
  }
}

/**
 * Kills the process group of any process whose environment carries `marker`: one a launcher started
 * but whose pid never reached us. Linux (/proc); elsewhere nothing is found.
 */
export function reapMarked(marker: string): number {
  const groupOf = (pid: string) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
  }
  let pids: string[]
  let ours: number
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n))
    ours = groupOf('self')
  } catch {
    return 0
  }
  const groups = new Set<number>()
  for (const pid of pids) {
    if (!environHas(pid, `${MARKER_VAR}=${marker}`)) continue
    try {
      const pgid = groupOf(pid)
      // a launched process leads a group of its own: never this process's group, nor init's
      if (pgid > 1 && pgid !== ours) groups.add(pgid)
    } catch {
      // gone, or not ours to read
    }
  }
  let killed = 0
  for (const pgid of groups) if (signalGroup(pgid, 'SIGKILL')) killed++
  if (killed > 0) log.error('killed %d process group(s) a launcher started but never reported', killed)
  return killed
}

/** Without a launcher: started from this process, as the launcher would. */
async function direct(req: LaunchRequest): Promise<Launched> {
  const child = execa(req.file, [...req.args], {
    cwd: req.cwd,
    env: req.env,
    stdin: 'ignore',
    // execa hands an integer on to child_process.spawn (its types list only 3 to 9)
    stdout: req.stdout.fd as 3,
    stderr: req.stderr.fd as 3,
    buffer: false,
    detached: true,
    reject: false,
    windowsHide: true,
  })
  const exited = new Promise<Exit>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  const result = child.then((r) => ({
    code: r.code ?? null,
    message: r.originalMessage ?? r.shortMessage ?? null,
  }))
  return { pid: child.pid, exited, result }
}
