// Process-group bookkeeping. Each phase runs detached, as the leader of its own process group, so
// one signal to -pid reaches the whole tree (execa 9 only ever signals the direct child, and skips
// its exit cleanup for detached children, so both are done here).

import { readFileSync } from 'node:fs'
import { logger } from '@libp2p/logger'

const log = logger('openfarm:runner')

const live = new Set<number>()
let hooked = false

/**
 * Whether process `pid` has exactly `entry` (NAME=value) in its environment: how a group of ours is
 * told from a reused pid (orphans.ts, launch.ts). Linux (/proc); false where it cannot be read.
 */
export function environHas(pid: number | string, entry: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(entry)
  } catch {
    return false
  }
}

/** Signals every process in the group led by `pid`; false if the group is already gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ESRCH') log.error('cannot signal process group %d: %s', pid, code ?? err)
    return false
  }
}

/** Remembers a running group so it is killed if this process exits with it still running. */
export function trackGroup(pid: number): void {
  live.add(pid)
  if (!hooked) {
    hooked = true
    process.on('exit', killLiveGroups)
  }
}

export function untrackGroup(pid: number): void {
  live.delete(pid)
}

// 'exit' listeners must be synchronous; process.kill is.
function killLiveGroups(): void {
  for (const pid of live) signalGroup(pid, 'SIGKILL')
  live.clear()
}
