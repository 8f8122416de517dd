// Materialises a blob as an ordinary file (a task's input, a job's output): a reflink where the
// filesystem can, a copy otherwise, published with link() so an existing file is never overwritten.
// The blob was verified when it entered the store; nothing is re-hashed unless `dest` already exists.

import { constants } from 'node:fs'
import { chmod, copyFile, link, mkdir, rename, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { BlobNotFoundError, DestinationExistsError } from './errors.ts'
import { hashFile } from './hash.ts'

export async function copyOut(
  src: string,
  hash: string,
  size: number,
  dest: string,
  tmpName: () => string,
): Promise<void> {
  if (await sameContent(dest, hash, size)) return
  await mkdir(dirname(dest), { recursive: true })
  // beside dest, not in the store: link() and rename() do not cross filesystems
  const tmp = `${dest}.${tmpName().split('/').at(-1)}`
  try {
    try {
      await copyFile(src, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && (await stat(src).catch(() => null)) === null) {
        throw new BlobNotFoundError(`blob ${hash.slice(0, 12)} is missing from the store`, { cause: err })
      }
      throw err
    }
    await chmod(tmp, 0o644)
    await publish(tmp, dest, hash, size)
  } finally {
    await rm(tmp, { force: true })
  }
}

async function publish(tmp: string, dest: string, hash: string, size: number): Promise<void> {
  try {
    await link(tmp, dest)
    return
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') {
      if (await sameContent(dest, hash, size)) return
      throw new DestinationExistsError(`${dest} exists with other content; not overwritten`)
    }
    // no hard links here (some network or FAT filesystems): check, then rename
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err
  }
  if ((await stat(dest).catch(() => null)) !== null) {
    if (await sameContent(dest, hash, size)) return
    throw new DestinationExistsError(`${dest} exists with other content; not overwritten`)
  }
  await rename(tmp, dest)
}

async function sameContent(path: string, hash: string, size: number): Promise<boolean> {
  const st = await stat(path).catch(() => null)
  if (st === null) return false
  if (!st.isFile() || st.size !== size) {
    throw new DestinationExistsError(`${path} exists with other content; not overwritten`)
  }
  if ((await hashFile(path)) !== hash) {
    throw new DestinationExistsError(`${path} exists with other content; not overwritten`)
  }
  return true
}
