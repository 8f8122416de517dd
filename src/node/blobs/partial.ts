// A blob being downloaded: `<store>/partial/<hash>.part`, appended to with bounded buffering, hashed as
// it grows (the bytes already on disk are hashed when it is reopened, so a resumed download still
// checks every byte), and installed only if the sha256 of the whole file is the hash it was asked as.
// While it grows, others may read the bytes already written (`written`, `waitFor`): a node relays a
// blob it is still downloading, so a popular blob flows down a chain of peers at once.

import { createHash, type Hash } from 'node:crypto'
import { type FileHandle, open, rm } from 'node:fs/promises'
import {
  BlobAbortedError,
  BlobHashMismatchError,
  BlobIncompleteError,
  BlobStoreError,
  BlobTooLargeError,
} from './errors.ts'
import { READ_ONLY } from './files.ts'
import { IO_CHUNK_BYTES } from './hash.ts'

/** Written to disk once this many bytes are staged (the only memory a download holds). */
const STAGING_BYTES = IO_CHUNK_BYTES

export interface PartialHooks {
  /** Moves the verified file into the store (and refs it to `job`), then releases the partial. */
  install(
    tmpPath: string,
    hash: string,
    size: number,
    job: string | undefined,
    announce: boolean,
  ): Promise<void>
  release(hash: string): void
}

/** open: growing; installed: complete and in the store; closed: kept for a resume; discarded: gone. */
export type PartialState = 'open' | 'installed' | 'closed' | 'discarded'

export class PartialBlob {
  readonly hash: string
  /** The size the blob is expected to have; more bytes are refused. */
  readonly size: number
  readonly path: string
  /** Bytes of this partial that were already on disk when it was opened (a resume point). */
  readonly resumedFrom: number
  readonly #fh: FileHandle
  readonly #hasher: Hash
  readonly #hooks: PartialHooks
  #length: number
  // bytes are copied here, so a peer's many small chunks never pin its larger receive buffers;
  // no larger than the blob: a frame of a few kB must not cost megabytes of external memory, whose
  // churn makes V8 run a full mark-compact every few fetches
  #staging: Buffer
  #spare: Buffer
  #staged = 0
  #writing: Promise<void> | undefined
  #done = false
  #written: number
  #state: PartialState = 'open'
  readonly #waiters = new Set<() => void>()

  private constructor(
    hash: string,
    size: number,
    path: string,
    fh: FileHandle,
    hasher: Hash,
    length: number,
    hooks: PartialHooks,
  ) {
    this.hash = hash
    this.size = size
    this.path = path
    this.#fh = fh
    this.#hasher = hasher
    this.#length = length
    this.resumedFrom = length
    this.#written = length
    this.#hooks = hooks
    const staging = Math.max(1, Math.min(STAGING_BYTES, size - length))
    this.#staging = Buffer.allocUnsafe(staging)
    this.#spare = Buffer.allocUnsafe(staging)
  }

  /** Opens (or creates) the partial; a file longer than `size` cannot be a prefix and starts over. */
  static async open(hash: string, size: number, path: string, hooks: PartialHooks): Promise<PartialBlob> {
    const fh = await open(path, 'a+', 0o600)
    try {
      let length = (await fh.stat()).size
      if (length > size) {
        await fh.truncate(0)
        length = 0
      }
      const hasher = createHash('sha256')
      const buf = Buffer.allocUnsafe(Math.max(1, Math.min(IO_CHUNK_BYTES, length)))
      let position = 0
      while (position < length) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.byteLength, length - position), position)
        if (bytesRead === 0) break
        hasher.update(buf.subarray(0, bytesRead))
        position += bytesRead
      }
      return new PartialBlob(hash, size, path, fh, hasher, position, hooks)
    } catch (err) {
      await fh.close()
      throw err
    }
  }

  /** Bytes accepted so far (on disk or buffered): the offset to ask the next peer for. */
  get length(): number {
    return this.#length
  }

  /** Bytes written to the file (readable through another handle): what may be relayed now. */
  get written(): number {
    return this.#written
  }

  get state(): PartialState {
    return this.#state
  }

  /** Resolves once more than `n` bytes are written or the partial is no longer open. */
  waitFor(n: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (signal.aborted) {
          done()
          reject(signal.reason instanceof Error ? signal.reason : new BlobAbortedError('aborted'))
        } else if (this.#written > n || this.#state !== 'open') {
          done()
          resolve()
        }
      }
      const done = (): void => {
        this.#waiters.delete(check)
        signal.removeEventListener('abort', check)
      }
      this.#waiters.add(check)
      signal.addEventListener('abort', check, { once: true })
      check()
    })
  }

  #end(state: PartialState): void {
    this.#state = state
    this.#notify()
  }

  #notify(): void {
    for (const check of [...this.#waiters]) check()
  }

  /**
   * Appends `chunk` (copied); refuses bytes past `size`. Resolves once the bytes are staged; a full
   * staging buffer goes to disk while the next one fills (two buffers, so memory stays bounded and
   * the network keeps flowing during a disk write).
   */
  async write(chunk: Uint8Array): Promise<void> {
    this.#check()
    if (this.#length + chunk.byteLength > this.size) {
      throw new BlobTooLargeError(
        `blob ${this.hash.slice(0, 12)}: ${this.#length + chunk.byteLength} bytes received, ${this.size} announced`,
      )
    }
    this.#hasher.update(chunk)
    this.#length += chunk.byteLength
    let from = 0
    while (from < chunk.byteLength) {
      const n = Math.min(chunk.byteLength - from, this.#staging.byteLength - this.#staged)
      this.#staging.set(chunk.subarray(from, from + n), this.#staged)
      this.#staged += n
      from += n
      if (this.#staged === this.#staging.byteLength) await this.#swap()
    }
  }

  /** Writes everything staged to disk and waits for it. */
  async flush(): Promise<void> {
    if (this.#staged > 0) await this.#swap()
    const writing = this.#writing
    this.#writing = undefined
    await writing
  }

  /** Waits for the previous disk write, then starts writing the staging buffer and stages into the other. */
  async #swap(): Promise<void> {
    await this.#writing
    const buf = this.#staging
    const n = this.#staged
    this.#staging = this.#spare
    this.#spare = buf
    this.#staged = 0
    const writing = writeFully(this.#fh, buf, n, this.path).then(() => {
      this.#written += n
      this.#notify()
    })
    writing.catch(() => undefined) // surfaces at the next swap or flush
    this.#writing = writing
  }

  /**
   * Checks the whole file's sha256 against the hash and installs it. Mismatch: the file is deleted
   * and BlobHashMismatchError thrown. Short: BlobIncompleteError, the file is kept for a resume.
   */
  async finish(job?: string, announce = true): Promise<void> {
    this.#check()
    if (this.#length !== this.size) {
      await this.close()
      throw new BlobIncompleteError(`blob ${this.hash.slice(0, 12)}: ${this.#length} of ${this.size} bytes`)
    }
    this.#done = true
    try {
      await this.flush()
      await this.#fh.sync()
      await this.#fh.chmod(READ_ONLY)
    } catch (err) {
      // the disk failed it (full, gone): what reached the file stays for a resume (open() hashes it
      // again), and the blob is free for the next fetch rather than "being downloaded" for ever
      await this.#fh.close().catch(() => undefined)
      this.#hooks.release(this.hash)
      this.#end('closed')
      throw err
    }
    await this.#fh.close()
    const actual = this.#hasher.digest('hex')
    if (actual !== this.hash) {
      await rm(this.path, { force: true })
      this.#hooks.release(this.hash)
      this.#end('discarded')
      throw new BlobHashMismatchError(
        `received bytes hash to ${actual.slice(0, 12)}, not ${this.hash.slice(0, 12)}`,
      )
    }
    try {
      await this.#hooks.install(this.path, this.hash, this.size, job, announce)
      this.#end('installed')
    } finally {
      this.#hooks.release(this.hash)
      if (this.#state === 'open') this.#end('closed')
    }
  }

  /** Flushes and closes, keeping the file so a later open resumes from its length. */
  async close(): Promise<void> {
    if (this.#done) return
    this.#done = true
    try {
      await this.flush()
    } finally {
      await this.#fh.close()
      this.#hooks.release(this.hash)
      this.#end('closed')
    }
  }

  /** Closes and deletes the file (its bytes are not to be trusted). */
  async discard(): Promise<void> {
    if (!this.#done) {
      this.#done = true
      this.#staged = 0
      await this.#writing?.catch(() => undefined)
      await this.#fh.close()
      this.#hooks.release(this.hash)
    }
    await rm(this.path, { force: true })
    this.#end('discarded')
  }

  #check(): void {
    if (this.#done) throw new BlobStoreError(`partial blob ${this.hash.slice(0, 12)} is closed`)
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, n: number, path: string): Promise<void> {
  let written = 0
  while (written < n) {
    const { bytesWritten } = await fh.write(buf, written, n - written)
    if (bytesWritten <= 0) throw new BlobStoreError(`writing ${path} made no progress`)
    written += bytesWritten
  }
}
