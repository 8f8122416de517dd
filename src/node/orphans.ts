// A node killed with SIGKILL (or a crash) cannot stop the Blender it started. Its launcher does, when
// the node's end closes their channel (launch.ts); but not when the launcher went too (a kill of the
// whole cgroup, the OOM killer) or the node started its processes itself. Then Blender runs on in its
// own process group, rendering for nobody and taking the CPU from the tasks the restarted node runs.
// So the worker records each running group in its attempt's directory, and a node at start kills
// the groups a previous run left, but only a group whose leader is provably ours: its environment
// still names that attempt's own TMPDIR (a reused pid never does).
// A task only got ready ahead of its run (staged: its directory and inputs) is marked as such until
// the run takes it over; a node that died before that leaves nothing worth inspecting there, so the
// next start removes such a directory.

import { unlinkSync, writeFileSync } from 'node:fs'
import { readdir, readFile, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '@libp2p/interface'
import { environHas } from '../runner/group.ts'
import { exists } from './blobs/files.ts'
import { removeTree } from './rmtree.ts'

export const GROUP_FILE = 'group.pid'
/** In an attempt's directory while it is only staged (made ready ahead), not yet run. */
export const STAGED_FILE = 'staged'

/**
 * Records the process group running in an attempt's directory. Inline: a few bytes, where the thread
 * pool would take three trips (open, write, close), each coming back only after what the event loop
 * queued meanwhile, while the group could already be lost to a kill -9 of this node.
 */
export function recordGroup(attemptDir: string, pid: number): void {
  writeFileSync(join(attemptDir, GROUP_FILE), `${pid}\n`)
}

/** Inline (unlinkIfThereSync): it runs between a task's exit and the start of the slot's next one. */
export function forgetGroup(attemptDir: string): void {
  unlinkIfThereSync(join(attemptDir, GROUP_FILE))
}

/**
 * unlink, quiet when the file is not there (rm with force costs two more fs calls). Inline: it runs
 * between a slot freeing and its next process starting, where a call through the thread pool comes
 * back only after whatever the event loop has queued meanwhile (on a busy node, the gossip and doc
 * updates of the task that just ended: 2-3 ms, measured) for an unlink of microseconds.
 */
export function unlinkIfThereSync(path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/**
 * Kills the process groups a previous run of this node left behind under `workDir` and removes the
 * directories of tasks it had only staged; how many of each.
 */
export async function reapOrphans(
  workDir: string,
  log: Logger,
): Promise<{ killed: number; unstaged: number }> {
  let killed = 0
  let unstaged = 0
  for (const job of await readdir(workDir).catch(() => [] as string[])) {
    for (const attempt of await readdir(join(workDir, job)).catch(() => [] as string[])) {
      const dir = join(workDir, job, attempt)
      if (await exists(join(dir, STAGED_FILE))) {
        await removeTree(dir)
        unstaged++
        log('removed %s, a task a previous run had only got ready', dir)
        continue
      }
      const text = await readFile(join(dir, GROUP_FILE), 'utf8').catch(() => null)
      if (text === null) continue
      const pid = Number(text.trim())
      // ours only while it still runs with that attempt's own TMPDIR
      if (Number.isSafeInteger(pid) && pid > 1 && environHas(pid, `TMPDIR=${join(dir, 'tmp')}`)) {
        try {
          process.kill(-pid, 'SIGKILL')
          killed++
          log('killed process group %d left running in %s by a previous run', pid, dir)
        } catch {}
      }
      forgetGroup(dir)
    }
    // a job whose attempts all went (a success removes its own) leaves no empty directory behind
    await rmdir(join(workDir, job)).catch(() => {})
  }
  return { killed, unstaged }
}
