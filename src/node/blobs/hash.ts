// Blob ids: sha256 in 64 lowercase hex characters; job ids as the index stores them.

import { createHash } from 'node:crypto'
import { type FileHandle, open } from 'node:fs/promises'
import { InvalidBlobHashError, InvalidJobIdError } from './errors.ts'

const HASH_RE = /^[0-9a-f]{64}$/
export const MAX_JOB_ID_CHARS = 256
/** Size of one read or write when the store streams a file. */
export const IO_CHUNK_BYTES = 1024 * 1024

export function isBlobHash(x: unknown): x is string {
  return typeof x === 'string' && HASH_RE.test(x)
}

export function assertBlobHash(x: unknown): asserts x is string {
  if (!isBlobHash(x)) {
    const shown = typeof x === 'string' ? JSON.stringify(x.slice(0, 80)) : typeof x
    throw new InvalidBlobHashError(`a blob hash is 64 lowercase hex characters (sha256), got ${shown}`)
  }
}

export function assertJobId(x: unknown): asserts x is string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_JOB_ID_CHARS || hasControl(x)) {
    throw new InvalidJobIdError(
      `a job id is 1..${MAX_JOB_ID_CHARS} characters without control characters, got ${JSON.stringify(x)}`,
    )
  }
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** sha256 of a file's first `length` bytes (all of it by default), read in chunks. */
export async function hashFile(path: string, length = Number.POSITIVE_INFINITY): Promise<string> {
  const fh = await open(path, 'r')
  try {
    return (await hashOpen(fh, length)).hash
  } finally {
    await fh.close()
  }
}

/** sha256 and length of an open file's first `length` bytes (all of it by default), read in chunks. */
export async function hashOpen(
  fh: FileHandle,
  length = Number.POSITIVE_INFINITY,
): Promise<{ hash: string; size: number }> {
  const hasher = createHash('sha256')
  // no larger than the file: small files are the common case (frames), see PartialBlob
  const bytes = Math.min(length, (await fh.stat()).size)
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(IO_CHUNK_BYTES, bytes)))
  let position = 0
  // up to the size it had when opened: one read for a small file, not a second one to see it end
  while (position < bytes) {
    const want = Math.min(buf.byteLength, bytes - position)
    const { bytesRead } = await fh.read(buf, 0, want, position)
    if (bytesRead === 0) break
    hasher.update(buf.subarray(0, bytesRead))
    position += bytesRead
  }
  return { hash: hasher.digest('hex'), size: position }
}
