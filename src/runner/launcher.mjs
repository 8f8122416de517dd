// The launcher: a small Node.js process that starts a node's phase processes for it (launch.ts).
// Plain JavaScript, so that it loads no TypeScript loader and stays small: starting a process forks
// the process that starts it, and a fork costs in proportion to that process's memory (see
// launch.ts). It only starts processes and reports on them; the node signals their groups, times
// them out and reads their output itself.
//
// Messages (over the IPC channel fork() made):
//   out: { ready: true }                   first: it has loaded (sent before it handles a request)
//   in:  { id, file, args, cwd, env, stdout, stderr }  stdout/stderr: paths of files the node made
//   out: { id, pid }                       the process runs (pid is its process group too)
//        { id, exit: { code, signal } }    it has exited
//        { id, result: { code, message } } execa's verdict, last: code is an errno name such as
//                                          ENOENT when the process could not start
//
// It ignores the signals a terminal or a shell's job control sends a node's whole process group
// (SIGINT, SIGTERM, SIGHUP, SIGQUIT): how the node's work stops is the node's to decide, and the
// processes it started have process groups of their own, out of those signals' reach. It ends when
// the node does (the channel closes), and kills the process groups it started that still run: a
// node that ended without stopping them (kill -9, a crash) has nobody left to read their output or
// store their frames.

import { closeSync, constants, openSync } from 'node:fs'

// first, before anything loads: a signal to the group while it loads would end it
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']) process.on(s, () => {})

/** Process groups started and not yet exited, by request id. */
const running = new Map()

process.on('disconnect', () => {
  for (const pid of running.values()) {
    try {
      process.kill(-pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  process.exit(0)
})

/** @param {object} m */
function send(m) {
  if (process.connected) process.send(m)
}

// Ready once execa has loaded: the node reads this before anything about a request (every handler
// waits for this same promise, after this reaction). Should it not load, this process ends, not
// ready, and the node starts its processes itself.
const loaded = import('execa').then((m) => {
  send({ ready: true })
  return m.execa
})

process.on('message', async (m) => {
  const execa = await loaded
  const { id } = m
  const fds = []
  try {
    for (const path of [m.stdout, m.stderr]) fds.push(openSync(path, constants.O_WRONLY | constants.O_APPEND))
  } catch (err) {
    for (const fd of fds) closeSync(fd)
    send({ id, result: { code: err.code ?? 'EIO', message: `no file for its output: ${err.message}` } })
    return
  }
  let child
  try {
    child = execa(m.file, m.args, {
      cwd: m.cwd,
      env: m.env,
      extendEnv: false,
      stdin: 'ignore',
      stdout: fds[0],
      stderr: fds[1],
      buffer: false,
      // its own process group, which the node signals as one (group.ts)
      detached: true,
      reject: false,
      windowsHide: true,
    })
  } catch (err) {
    send({ id, result: { code: err.code ?? 'EINVAL', message: err.message } })
    return
  } finally {
    // the child has its own copies of these (or there is no child)
    for (const fd of fds) closeSync(fd)
  }
  if (child.pid !== undefined) {
    running.set(id, child.pid)
    send({ id, pid: child.pid })
  }
  child.once('exit', (code, signal) => {
    running.delete(id)
    send({ id, exit: { code, signal } })
  })
  child.then((r) =>
    send({ id, result: { code: r.code ?? null, message: r.originalMessage ?? r.shortMessage ?? null } }),
  )
})
