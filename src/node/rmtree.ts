// Removes a directory tree of ours (a task's work directory) with one readdir per directory and one
// unlink or rmdir per entry (fs.rm's walk lstat()s every entry and tries rmdir() on every directory
// before it lists it: 42 calls per Blender task directory of bench:render, 22 here).
//
// Inline, with the synchronous calls, up to INLINE_ENTRIES entries: through the thread pool each
// call woke a pool thread and then the event loop (about 3 context switches per call, counted in
// /proc on bench:render), on a machine whose cores the renders fill; inline, a task directory of
// tens of entries blocks the event loop for well under a millisecond of CPU. (Of wall time it can
// be more: on ext4 without a journal and mounted with discard, as the test machine's disk is, each
// unlink and rmdir waits for its discard, about 6 ms per Blender task directory; the worker removes
// one only after the pass that records its task's end.) A larger tree, an entry whose
// type the file system does not report, or a permission hands the rest to fs.rm, asynchronously.
// A symlink is removed, never followed.

import { type Dirent, readdirSync, rmdirSync, unlinkSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'

/** Entries removed inline per tree; the rest of a larger one goes to fs.rm. */
export const INLINE_ENTRIES = 256

/** rm -rf `dir`; quiet when it is not there. */
export async function removeTree(dir: string): Promise<void> {
  try {
    if (walk(dir, { left: INLINE_ENTRIES })) return
  } catch {
    // below: fs.rm takes what is left, whatever it is
  }
  await rm(dir, { recursive: true, force: true })
}

/** Removes `dir` inline; false, leaving the rest, once more than `budget` entries were seen. */
function walk(dir: string, budget: { left: number }): boolean {
  let entries: Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true
    throw err
  }
  budget.left -= entries.length
  if (budget.left < 0) return false
  for (const e of entries) {
    const path = join(dir, e.name)
    if (e.isDirectory()) {
      if (!walk(path, budget)) return false
    } else {
      unlinkSync(path)
    }
  }
  rmdirSync(dir)
  return true
}
