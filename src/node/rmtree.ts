// Removes a directory tree of ours (a task's work directory) with one readdir per directory and one
// unlink or rmdir per entry. fs.rm's recursive walk lstat()s every entry and tries rmdir() on every
// directory before it lists it: about twice the calls, each a trip through the thread pool, for every
// task that succeeds (measured in bench:render: 42 calls per Blender task directory, 22 here). A symlink
// is removed, never followed. Anything unexpected (an entry whose type the file system does not
// report, a permission) hands the rest to fs.rm.

import type { Dirent } from 'node:fs'
import { readdir, rm, rmdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'

/** rm -rf `dir`; quiet when it is not there. */
export async function removeTree(dir: string): Promise<void> {
  try {
    await walk(dir)
  } catch {
    await rm(dir, { recursive: true, force: true })
  }
}

async function walk(dir: string): Promise<void> {
  let entries: Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  await Promise.all(
    entries.map((e) => (e.isDirectory() ? walk(join(dir, e.name)) : unlink(join(dir, e.name)))),
  )
  await rmdir(dir)
}
