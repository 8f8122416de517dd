// Materialises a blob as an ordinary file (a task's input, a job's output): a reflink where the
// filesystem can, a copy otherwise, under a hidden temporary name beside it, then published with
// link() so an existing file is never overwritten (or with rename() where the caller asks to replace).
// (Or straight to its name, in a directory only the caller writes to: see `fresh`.) Bytes in memory,
// checked against their hash already (a small output fetched for its home), are written out the
// same way by writeOut, without passing through the store.
// The blob was verified when it entered the store; the copy is re-hashed only when asked (`verify`)
// or when `dest` already exists. Each fs call is a trip through the thread pool, and every frame that
// comes home and every input of a task takes this path: the common case makes no call it can skip
// (no stat of a fresh name, no mkdir of a directory that is there).

import { randomBytes } from 'node:crypto'
import { constants, type Stats } from 'node:fs'
import { chmod, copyFile, type FileHandle, link, open, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { makeDirs } from '../paths.ts'
import { BlobHashMismatchError, BlobNotFoundError, DestinationExistsError } from './errors.ts'
import { writeAll } from './files.ts'
import { hashFile } from './hash.ts'

export interface CopyOutOptions {
  /** Hash the copy before it is published (outputs coming home: verified where they land). */
  readonly verify?: boolean
  /** Replace a file already at `dest` (the user asked for it); otherwise it is never replaced. */
  readonly replace?: boolean
  /**
   * `dest` is in a directory of ours that nothing else writes to and whose contents count only
   * once the caller says so (a task's inputs, before its process runs): the copy goes straight to
   * `dest` (never over an existing file), without the temporary name and link that keep a half
   * copy from ever showing under a name someone reads.
   */
  readonly fresh?: boolean
}

export async function copyOut(
  src: string,
  hash: string,
  size: number,
  dest: string,
  tmpName: () => string,
  opts: CopyOutOptions = {},
): Promise<void> {
  if (opts.fresh && !opts.replace) {
    // two calls instead of four: a task's inputs are tens of files per task
    await copyToTmp(src, hash, dest).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err
      throw new DestinationExistsError(`${dest} exists already; not overwritten`, { cause: err })
    })
    await chmod(dest, 0o644) // the store's files are read-only
    if (opts.verify)
      await checkCopy(dest, hash).catch(async (err: Error) => {
        await unlink(dest).catch(() => {})
        throw err
      })
    return
  }
  // beside dest, not in the store: link() and rename() do not cross filesystems; hidden, named as ours
  // for whoever finds one a crash left behind, and short (dest's own name may be near NAME_MAX)
  const tmp = join(dirname(dest), `.openfarm-${basename(tmpName())}`)
  try {
    await copyToTmp(src, hash, tmp)
    await chmod(tmp, 0o644) // the store's files are read-only
    if (opts.verify) await checkCopy(tmp, hash)
    if (opts.replace) await rename(tmp, dest)
    else await publish(tmp, dest, hash, size)
  } finally {
    await unlink(tmp).catch(() => {}) // gone after a rename
  }
}

/**
 * Writes `bytes`, which hash to `hash` (the caller checked), to `dest` as copyOut publishes a copy:
 * under a hidden temporary name beside it, then linked into place (never over a file of other bytes,
 * DestinationExistsError) or renamed over it (`replace`). Resolves to the written file's stat, or null
 * when `dest` already held these very bytes. Six fs calls for a frame coming home, where its trip
 * through the store (write, sync, install, copy out, re-hash) took about twenty.
 */
export async function writeOut(
  bytes: Uint8Array,
  hash: string,
  dest: string,
  opts: { readonly replace?: boolean } = {},
): Promise<Stats | null> {
  const tmp = join(dirname(dest), `.openfarm-${randomBytes(8).toString('hex')}.tmp`)
  let fh: FileHandle
  try {
    fh = await open(tmp, 'wx', 0o644)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await makeDirs(dirname(tmp))
    fh = await open(tmp, 'wx', 0o644)
  }
  try {
    let st: Stats
    try {
      await writeAll(fh, bytes)
      st = await fh.stat()
    } finally {
      await fh.close()
    }
    if (opts.replace) {
      await rename(tmp, dest)
      return st
    }
    return (await publish(tmp, dest, hash, bytes.byteLength)) ? st : null
  } finally {
    await unlink(tmp).catch(() => {}) // gone after a rename
  }
}

/** Throws when the copy at `path` does not hash to `hash`. */
async function checkCopy(path: string, hash: string): Promise<void> {
  if ((await hashFile(path)) !== hash) {
    throw new BlobHashMismatchError(`the copy of blob ${hash.slice(0, 12)} does not match its hash`)
  }
}

/**
 * copyFile to a name that must not exist yet, making its directory when it is missing (the callers
 * mostly made it already).
 */
async function copyToTmp(src: string, hash: string, tmp: string): Promise<void> {
  const flags = constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE
  try {
    await copyFile(src, tmp, flags)
    return
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    if ((await stat(src).catch(() => null)) === null) {
      throw new BlobNotFoundError(`blob ${hash.slice(0, 12)} is missing from the store`, { cause: err })
    }
  }
  await makeDirs(dirname(tmp))
  await copyFile(src, tmp, flags)
}

/** Puts `tmp` at `dest` unless a file is there: true if it did, false if that file has the same bytes. */
async function publish(tmp: string, dest: string, hash: string, size: number): Promise<boolean> {
  try {
    await link(tmp, dest)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      if (await sameContent(dest, hash, size)) return false
      throw new DestinationExistsError(`${dest} exists with other content; not overwritten`)
    }
    // no hard links here (some network or FAT filesystems): check, then rename
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err
  }
  if ((await stat(dest).catch(() => null)) !== null) {
    if (await sameContent(dest, hash, size)) return false
    throw new DestinationExistsError(`${dest} exists with other content; not overwritten`)
  }
  await rename(tmp, dest)
  return true
}

async function sameContent(path: string, hash: string, size: number): Promise<boolean> {
  const st = await stat(path).catch(() => null)
  if (st === null) return false
  return st.isFile() && st.size === size && (await hashFile(path)) === hash
}
