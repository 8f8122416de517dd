// Writing files into the store's tmp/ directory: streamed and hashed on the way (a 200 MB input is
// never in memory). The store syncs one before it renames it into place, if the blob is new to it.

import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { chmod, type FileHandle, link, lstat, open, rm, stat } from 'node:fs/promises'
import { BlobSourceError, BlobTooLargeError } from './errors.ts'
import { hashOpen, IO_CHUNK_BYTES } from './hash.ts'

/**
 * The mode of every file in the store (a file created so loses what the umask takes). The descriptor
 * that creates a file still writes it.
 */
export const READ_ONLY = 0o444

const tooLarge = (path: string, n: number, maxBytes: number) =>
  new BlobTooLargeError(`${path}: ${n} bytes is over the blob limit of ${maxBytes} bytes`)

/**
 * Copies `path` to `tmp` (created read-only, as the store keeps its files), hashing while copying;
 * refuses more than `maxBytes`.
 */
export async function copyToTemp(
  path: string,
  tmp: string,
  maxBytes: number,
): Promise<{ hash: string; size: number }> {
  let expected: number
  try {
    const st = await stat(path)
    if (!st.isFile()) throw new BlobSourceError(`${path} is not a regular file`)
    if (st.size > maxBytes) throw tooLarge(path, st.size, maxBytes)
    expected = st.size
  } catch (err) {
    if (err instanceof BlobSourceError || err instanceof BlobTooLargeError) throw err
    throw new BlobSourceError(`cannot add ${path}: ${(err as Error).message}`, { cause: err })
  }
  const hasher = createHash('sha256')
  let size = 0
  const out = await open(tmp, 'wx', READ_ONLY)
  try {
    try {
      // reads no larger than the file (plus one byte to see it end): a small file must not cost a
      // megabyte of external memory per add
      const highWaterMark = Math.max(1024, Math.min(IO_CHUNK_BYTES, expected + 1))
      for await (const chunk of createReadStream(path, { highWaterMark })) {
        const buf = chunk as Buffer
        size += buf.byteLength
        if (size > maxBytes) throw tooLarge(path, size, maxBytes) // the file grew while being read
        hasher.update(buf)
        await writeAll(out, buf)
      }
    } catch (err) {
      if (err instanceof BlobTooLargeError) throw err
      throw new BlobSourceError(`cannot read ${path}: ${(err as Error).message}`, { cause: err })
    }
  } catch (err) {
    await out.close()
    await rm(tmp, { force: true })
    throw err
  }
  await out.close()
  return { hash: hasher.digest('hex'), size }
}

/**
 * Takes `path` into `tmp` by a hard link instead of a copy, for a file of ours that nothing writes
 * again (a task's output once saved): its bytes are read to hash them and synced, never written a
 * second time (a frame of 100 MB is not 200 MB on the disk while its task runs). The file is
 * read-only under both names from then on. Anything but a regular file, or a link that cannot be
 * made (another filesystem, no hard links), goes through copyToTemp.
 */
export async function adoptToTemp(
  path: string,
  tmp: string,
  maxBytes: number,
): Promise<{ hash: string; size: number }> {
  const st = await lstat(path).catch(() => null)
  if (st === null || !st.isFile() || st.size > maxBytes) return copyToTemp(path, tmp, maxBytes) // its errors
  try {
    await link(path, tmp)
  } catch (err) {
    if (NO_LINK.has((err as NodeJS.ErrnoException).code ?? '')) return copyToTemp(path, tmp, maxBytes)
    throw new BlobSourceError(`cannot add ${path}: ${(err as Error).message}`, { cause: err })
  }
  try {
    const fh = await open(tmp, 'r')
    let got: { hash: string; size: number }
    try {
      got = await hashOpen(fh)
    } finally {
      await fh.close()
    }
    if (got.size > maxBytes) throw tooLarge(path, got.size, maxBytes)
    await chmod(tmp, READ_ONLY)
    return got
  } catch (err) {
    await rm(tmp, { force: true })
    if (err instanceof BlobTooLargeError) throw err
    throw new BlobSourceError(`cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
}

/** link() errors that mean "no hard link here": copy instead. */
const NO_LINK = new Set(['EXDEV', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK'])

/** Writes `bytes` to `tmp` (created read-only); the store syncs it if it installs it. */
export async function writeTemp(bytes: Uint8Array, tmp: string): Promise<void> {
  const out = await open(tmp, 'wx', READ_ONLY)
  try {
    await writeAll(out, bytes)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  } finally {
    await out.close()
  }
}

export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let off = 0
  while (off < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off)
    off += bytesWritten
  }
}

/** fsync of a file by path (read-only: Linux syncs a file through any descriptor of it). */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null
}
