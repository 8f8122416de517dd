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
// One launcher per process, started on the first phase and again after it ends for any reason;
// should it not start, processes are started from here. Should it end while its processes run, each
// is reported as not run to its end ("the launcher ended") and its group is killed.

import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { logger } from '@libp2p/logger'
import { execa } from 'execa'
import { signalGroup } from './group.ts'

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

interface Pending {
  pid?: number
  onPid: (pid: number | undefined) => void
  onExit: (e: Exit) => void
  onResult: (r: LaunchResult) => void
}

type Message = { id: number; pid: number } | { id: number; exit: Exit } | { id: number; result: LaunchResult }

let launcher: ChildProcess | null = null
let failedToStart = false
let nextId = 1
const pending = new Map<number, Pending>()

/** Starts `req` in its own process group; resolves once it runs (its pid known) or could not start. */
export async function launch(req: LaunchRequest): Promise<Launched> {
  const l = launcherProcess()
  return l === null ? direct(req) : viaLauncher(l, req)
}

/** The launcher's pid while it runs (its CPU, and its children's, are not this process's). */
export function launcherPid(): number | undefined {
  return launcher?.connected ? launcher.pid : undefined
}

function launcherProcess(): ChildProcess | null {
  if (launcher?.connected) return launcher
  if (failedToStart) return null
  try {
    const l = fork(LAUNCHER, [], {
      // no loader (tsx) and a small heap: this process stays small, which is what it is for
      execArgv: ['--max-semi-space-size=1', '--max-old-space-size=64'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    })
    l.on('message', (m: Message) => onMessage(m))
    l.on('error', (err) => log.error('the launcher: %s', err.message))
    l.once('exit', (code, signal) => onLauncherEnd(l, code, signal))
    l.unref()
    // the channel keeps this process alive only while a launch is under way (ref in viaLauncher)
    l.channel?.unref()
    launcher = l
    return l
  } catch (err) {
    failedToStart = true
    log.error('cannot start the launcher, starting processes directly: %s', (err as Error).message)
    return null
  }
}

function viaLauncher(l: ChildProcess, req: LaunchRequest): Promise<Launched> {
  const id = nextId++
  return new Promise((resolvePid) => {
    let onExit!: (e: Exit) => void
    let onResult!: (r: LaunchResult) => void
    const exited = new Promise<Exit>((r) => (onExit = r))
    const result = new Promise<LaunchResult>((r) => (onResult = r))
    const p: Pending = {
      onPid: (pid) => resolvePid({ pid, exited, result }),
      onExit,
      onResult: (r) => {
        pending.delete(id)
        if (pending.size === 0) launcher?.channel?.unref()
        onResult(r)
        // a process that could not start resolves its launch here (no pid message came)
        p.onPid(undefined)
      },
    }
    pending.set(id, p)
    l.channel?.ref()
    const request = {
      id,
      file: req.file,
      args: req.args,
      cwd: req.cwd,
      env: { ...process.env, ...req.env },
      stdout: req.stdout.path,
      stderr: req.stderr.path,
    }
    l.send(request, (err) => {
      if (err) p.onResult({ code: 'ELAUNCHER', message: `the launcher did not take it: ${err.message}` })
    })
  })
}

function onMessage(m: Message): void {
  const p = pending.get(m.id)
  if (p === undefined) return
  if ('pid' in m) {
    p.pid = m.pid
    p.onPid(m.pid)
  } else if ('exit' in m) p.onExit(m.exit)
  else p.onResult(m.result)
}

/** What ran through a launcher that ended is killed and reported as not run to its end. */
function onLauncherEnd(l: ChildProcess, code: number | null, signal: string | null): void {
  if (launcher === l) launcher = null
  if (pending.size === 0) return
  log.error(
    'the launcher ended (%s) with %d process(es) running',
    signal ?? `exit code ${code}`,
    pending.size,
  )
  for (const p of [...pending.values()]) {
    if (p.pid !== undefined) {
      signalGroup(p.pid, 'SIGKILL')
      p.onExit({ code: null, signal: 'SIGKILL' })
    }
    p.onResult({ code: 'ELAUNCHER', message: 'the launcher ended while the process ran' })
  }
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
