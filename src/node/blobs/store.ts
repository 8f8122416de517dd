// BlobStore: content-addressed files of one node, named by their sha256. Layout under `dir`:
//   ab/abcdef…   the blobs, read-only (0444, see READ_ONLY), sharded by the first two hex characters
//   index/       a level database of their own (sizes, when added, refs per job): see index-db.ts
//   tmp/         files being added (temp, fsync if the blob is new, rename: a blob is whole or absent)
//   partial/     downloads in progress, `<hash>.part`, resumable (see partial.ts)
// Home copies: the index also remembers where this node put a verified copy of a blob outside the
// store (an output brought home into ./render), as it was then (size, mtime, inode). A small output
// never enters the store (homes.ts writes it home from the wire), a larger one's copy in the store
// goes with gc; the home copy stays, and restore() takes it back in, hashed, when a peer or this node
// wants the blob again (a fetch from a third peer after its maker left): the frames are not kept
// twice on the submitter's disk.
//
// The rename is not made durable by an fsync of its directory. What that would buy, the blob's name
// surviving a power cut, means nothing without its index entry, and level writes are not synced
// either: after a power cut a blob is there with its entry, or an orphan file nothing reads (a later
// add of it renames over it), or an entry whose file is gone, which serving and copying out find and
// drop, as they do a file deleted by hand, so the next fetch gets it again; never a name over other
// bytes, which the file's own fsync before the rename rules out. It cost a second journal commit per
// blob, per frame on a worker and again on the submitter that pulls it, and those commits stall the
// renders' own writes (bench:render, overhead_vs_loop: 1.087 with it, 1.075 without).

import { randomBytes } from 'node:crypto'
import type { Stats } from 'node:fs'
import { lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { type CopyOutOptions, copyOut } from './copyout.ts'
import { BlobBusyError, BlobNotFoundError, BlobStoreError, BlobTooLargeError } from './errors.ts'
import { adoptToTemp, copyToTemp, exists, syncFile, writeTemp } from './files.ts'
import { gcPartials, planGc } from './gc.ts'
import { assertBlobHash, assertJobId, hashFile, sha256Hex } from './hash.ts'
import { type BlobEntry, BlobIndex, type HomeCopy, type IndexOp } from './index-db.ts'
import { PartialBlob } from './partial.ts'

export const DEFAULT_MAX_BLOB_BYTES = 8 * 1024 ** 3
/** A blob (or a stale .part) younger than this survives gc: a fetch or a submit may be using it. */
export const DEFAULT_GC_GRACE_MS = 15 * 60_000

export interface BlobStoreOptions {
  /** Largest blob the store accepts, added or downloaded (default 8 GiB). */
  readonly maxBlobBytes?: number
  readonly gcGraceMs?: number
  /** Wall clock in ms (default Date.now); injected so gc is testable. */
  readonly now?: () => number
  readonly log?: Logger
}

export interface AddOptions {
  /** Reference the blob for this job in the same index write. */
  readonly job?: string
  /**
   * Tell the farm (kad-dht) that this node holds it; default true. Outputs say false: whoever wants
   * one knows its maker from the job's record, and a provide per frame is CPU for nothing.
   */
  readonly announce?: boolean
  /**
   * addFile: the file is ours and nothing writes it again (a task's output once saved): the store
   * takes it by a hard link rather than a copy (see adoptToTemp); it is read-only from then on.
   */
  readonly adopt?: boolean
}

export interface Added {
  readonly hash: string
  readonly size: number
}

export interface GcResult {
  readonly removed: number
  readonly bytes: number
}

/** A shard directory: the first two hex digits of its blobs' hashes. */
const SHARD_RE = /^[0-9a-f]{2}$/

export class BlobStore {
  readonly dir: string
  readonly maxBlobBytes: number
  readonly gcGraceMs: number
  readonly #index: BlobIndex
  readonly #now: () => number
  readonly #log: Logger
  readonly #partials = new Map<string, PartialBlob | undefined>()
  /** Shard directories this store has made or found (made once, not on every install). */
  readonly #shards = new Set<string>()
  readonly #addedListeners = new Set<(hash: string, size: number, opts: { announce: boolean }) => void>()
  #tail: Promise<unknown> = Promise.resolve()
  #closed = false

  private constructor(dir: string, index: BlobIndex, opts: BlobStoreOptions) {
    this.dir = dir
    this.#index = index
    this.maxBlobBytes = opts.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES
    this.gcGraceMs = opts.gcGraceMs ?? DEFAULT_GC_GRACE_MS
    this.#now = opts.now ?? Date.now
    this.#log = opts.log ?? logger('openfarm:blobs')
  }

  static async open(dir: string, opts: BlobStoreOptions = {}): Promise<BlobStore> {
    for (const key of ['maxBlobBytes', 'gcGraceMs'] as const) {
      const v = opts[key]
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
        throw new BlobStoreError(`BlobStore: ${key} must be a non-negative integer, got ${v}`)
      }
    }
    await mkdir(join(dir, 'partial'), { recursive: true })
    // the index's lock makes this process the directory's only user, so leftovers in tmp/ are garbage
    const index = await BlobIndex.open(join(dir, 'index'))
    await rm(join(dir, 'tmp'), { recursive: true, force: true })
    await mkdir(join(dir, 'tmp'))
    const store = new BlobStore(dir, index, opts)
    for (const name of await readdir(dir)) if (SHARD_RE.test(name)) store.#shards.add(join(dir, name))
    return store
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#tail.catch(() => undefined)
    await this.#index.close()
  }

  /** Calls `listener` after each blob that enters the store (added or downloaded); returns the off switch. */
  onAdded(listener: (hash: string, size: number, opts: { announce: boolean }) => void): () => void {
    this.#addedListeners.add(listener)
    return () => this.#addedListeners.delete(listener)
  }

  /** Where the blob's file is (whether or not it is held); read it, never write it. */
  pathOf(hash: string): string {
    assertBlobHash(hash)
    return join(this.dir, hash.slice(0, 2), hash)
  }

  async has(hash: string): Promise<boolean> {
    return (await this.stat(hash)) !== null
  }

  async stat(hash: string): Promise<BlobEntry | null> {
    assertBlobHash(hash)
    this.#checkOpen()
    return (await this.#index.get(hash)) ?? null
  }

  /** Every blob held, with its size. */
  async *list(): AsyncGenerator<{ hash: string } & BlobEntry> {
    this.#checkOpen()
    for await (const [hash, entry] of this.#index.blobs()) yield { hash, ...entry }
  }

  async refsOf(hash: string): Promise<string[]> {
    assertBlobHash(hash)
    this.#checkOpen()
    return this.#index.refsOf(hash)
  }

  /** Streams the file into the store, hashing while copying (memory stays at one chunk). */
  async addFile(path: string, opts: AddOptions = {}): Promise<Added> {
    this.#checkOpen()
    if (opts.job !== undefined) assertJobId(opts.job)
    const tmp = this.#tmpPath()
    const { hash, size } = await (opts.adopt ? adoptToTemp : copyToTemp)(path, tmp, this.maxBlobBytes)
    await this.#install(tmp, hash, size, opts.job, opts.announce ?? true)
    return { hash, size }
  }

  async addBytes(bytes: Uint8Array, opts: AddOptions = {}): Promise<Added> {
    this.#checkOpen()
    if (opts.job !== undefined) assertJobId(opts.job)
    this.#checkSize(bytes.byteLength, 'bytes')
    const hash = sha256Hex(bytes)
    const tmp = this.#tmpPath()
    await writeTemp(bytes, tmp)
    await this.#install(tmp, hash, bytes.byteLength, opts.job, opts.announce ?? true)
    return { hash, size: bytes.byteLength }
  }

  /** Materialises the blob at `dest` (reflink if the filesystem can); see copyout.ts. */
  async copyOut(hash: string, dest: string, opts: CopyOutOptions = {}): Promise<void> {
    const entry = await this.stat(hash)
    if (entry === null) throw new BlobNotFoundError(`blob ${hash.slice(0, 12)} is not in the store`)
    try {
      await copyOut(this.pathOf(hash), hash, entry.size, dest, this.#tmpPath, opts)
    } catch (err) {
      // its file is gone (deleted by hand, a power cut): forgotten, so the next fetch gets it again
      if (err instanceof BlobNotFoundError) await this.drop(hash)
      throw err
    }
  }

  /**
   * Remembers `path` as a copy of the blob (one this node just wrote verified, or hashed): restore()
   * can take it back in after the store's own copy is gone, or serve it when the store never held it
   * (a small output written home straight from the wire). The latest copy of a blob is the one kept.
   */
  async keepHome(hash: string, path: string, seen?: Stats): Promise<void> {
    assertBlobHash(hash)
    // `seen`: the file's stat as its writer took it (writeOut), one call fewer
    const st = seen ?? (await lstat(path))
    if (!st.isFile()) return
    const home = { path, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino }
    await this.#locked(() => this.#index.batch([this.#index.putHome(hash, home)]))
  }

  /**
   * The home copy of the blob while its file is as it was recorded (a plain file of the same size,
   * modification time and inode); a changed or vanished one is forgotten. Its bytes are not hashed
   * here: restore() does, and a peer fetching from it does.
   */
  async homeOf(hash: string): Promise<HomeCopy | null> {
    assertBlobHash(hash)
    this.#checkOpen()
    const home = await this.#index.getHome(hash)
    if (home === undefined) return null
    if (await homeIntact(home)) return home
    await this.#locked(() => this.#index.batch([this.#index.delHome(hash)]))
    return null
  }

  /**
   * Makes the blob held again from its home copy (copied in and hashed; never announced): true if it
   * is held now. A copy whose bytes no longer hash to it is forgotten (and what was copied in is left
   * to gc, under its own hash). `maxBytes`: a larger home copy is left where it is (false).
   */
  async restore(hash: string, opts: { maxBytes?: number } = {}): Promise<boolean> {
    if (await this.has(hash)) return true
    const home = await this.homeOf(hash)
    if (home === null || home.size > (opts.maxBytes ?? Number.POSITIVE_INFINITY)) return false
    const got = await this.addFile(home.path, { announce: false }).catch(() => null)
    if (got?.hash === hash) return true
    this.#log('the home copy %s of blob %s changed; forgetting it', home.path, hash.slice(0, 12))
    await this.#locked(() => this.#index.batch([this.#index.delHome(hash)]))
    return false
  }

  /** Re-hashes a held blob; a file that no longer matches (or is gone) is dropped from the store. */
  async verify(hash: string): Promise<boolean> {
    const entry = await this.stat(hash)
    if (entry === null) return false
    const actual = await hashFile(this.pathOf(hash)).catch(() => null)
    if (actual === hash) return true
    this.#log.error('blob %s is corrupt on disk (hashes to %s); dropping it', hash, actual)
    await this.drop(hash)
    return false
  }

  /** Forgets a blob and deletes its file (its refs stay: a later fetch restores it). */
  drop(hash: string): Promise<void> {
    assertBlobHash(hash)
    return this.#locked(async () => {
      await this.#index.batch([this.#index.delBlob(hash)])
      await rm(this.pathOf(hash), { force: true })
    })
  }

  async ref(job: string, hashes: Iterable<string>): Promise<void> {
    assertJobId(job)
    const list = [...hashes]
    for (const h of list) assertBlobHash(h)
    await this.#locked(() => this.#index.batch(list.flatMap((h) => this.#index.putRef(job, h))))
  }

  async unrefJob(job: string): Promise<void> {
    assertJobId(job)
    await this.#locked(async () => {
      const hashes = await this.#index.blobsOfJob(job)
      await this.#index.batch(hashes.flatMap((h) => this.#index.delRef(job, h)))
    })
  }

  /**
   * Removes every blob that no live job needs and that entered the store (added or fetched) more than
   * gcGraceMs ago: a fetch in flight, or a submit whose job is not in the document yet, keeps its
   * blobs. Refs of jobs not in `liveJobs` are dropped. Stale .part files (untouched for gcGraceMs,
   * not open) go too.
   */
  gc(liveJobs: ReadonlySet<string>): Promise<GcResult> {
    return this.#locked(async () => {
      const plan = await planGc(this.#index, liveJobs, this.#now() - this.gcGraceMs)
      const ops: IndexOp[] = [...plan.deadRefs.flatMap(([job, h]) => this.#index.delRef(job, h))]
      for (const [h] of plan.remove) ops.push(this.#index.delBlob(h))
      // home copies that changed or went are forgotten (a stat each, no read)
      for await (const [h, home] of this.#index.homes()) {
        if (home === null || !(await homeIntact(home))) ops.push(this.#index.delHome(h))
      }
      await this.#index.batch(ops)
      let bytes = 0
      for (const [h, size] of plan.remove) {
        await rm(this.pathOf(h), { force: true })
        bytes += size
      }
      const partials = await gcPartials(
        join(this.dir, 'partial'),
        this.#partials,
        this.#now() - this.gcGraceMs,
      )
      if (plan.remove.length > 0 || partials > 0) {
        this.#log('gc removed %d blobs (%d B) and %d stale partials', plan.remove.length, bytes, partials)
      }
      return { removed: plan.remove.length, bytes }
    })
  }

  /**
   * Opens the download of `hash` (expected `size` bytes), resuming an existing .part; one at a time
   * per hash. The caller writes, then finish() (verify + install) or close() (keep for resume).
   */
  async openPartial(hash: string, size: number): Promise<PartialBlob> {
    assertBlobHash(hash)
    this.#checkOpen()
    if (!Number.isSafeInteger(size) || size < 0) throw new BlobTooLargeError(`invalid blob size ${size}`)
    this.#checkSize(size, `blob ${hash.slice(0, 12)}`)
    if (this.#partials.has(hash))
      throw new BlobBusyError(`blob ${hash.slice(0, 12)} is already being downloaded`)
    this.#partials.set(hash, undefined)
    try {
      const partial = await PartialBlob.open(hash, size, this.partialPathOf(hash), {
        install: (tmp, h, n, job, announce) => this.#install(tmp, h, n, job, announce, true),
        release: (h) => this.#partials.delete(h),
      })
      this.#partials.set(hash, partial)
      return partial
    } catch (err) {
      this.#partials.delete(hash)
      throw err
    }
  }

  /** The download of `hash` open now in this store, if any (a node relays what it has of it). */
  partialOf(hash: string): PartialBlob | undefined {
    return this.#partials.get(hash)
  }

  /** The bytes of a partial download already on disk (0 if none): where a fetch resumes. */
  async partialLength(hash: string): Promise<number> {
    return (await stat(this.partialPathOf(hash)).catch(() => null))?.size ?? 0
  }

  partialPathOf(hash: string): string {
    assertBlobHash(hash)
    return join(this.dir, 'partial', `${hash}.part`)
  }

  /**
   * Moves a verified temp file to its place (or drops it if the blob is held), refreshes `added`, refs.
   * A new blob's file is synced before its rename (unless `synced`: a download syncs its own); one
   * held already is not: its bytes are thrown away (a scene submitted again, its libraries unchanged).
   */
  async #install(
    tmp: string,
    hash: string,
    size: number,
    job: string | undefined,
    announce = true,
    synced = false,
  ): Promise<void> {
    // outside the lock, so one blob's journal commit does not hold up the others' installs
    let durable = synced
    if (!durable && !(await this.#holds(hash))) {
      await syncFile(tmp)
      durable = true
    }
    return this.#locked(async () => {
      const final = this.pathOf(hash)
      const present = await this.#holds(hash)
      if (present) {
        await rm(tmp, { force: true })
      } else {
        // held when looked at above, dropped since (gc): synced now, before its rename
        if (!durable) await syncFile(tmp)
        // tmp is read-only already (files.ts, partial.ts); a shard made once is not made again
        const shard = join(this.dir, hash.slice(0, 2))
        if (!this.#shards.has(shard)) await mkdir(shard, { recursive: true })
        await rename(tmp, final).catch(async (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT' || !this.#shards.has(shard)) throw err
          await mkdir(shard, { recursive: true }) // removed behind the store's back
          await rename(tmp, final)
        })
        this.#shards.add(shard)
      }
      const ops = [this.#index.putBlob(hash, { size, added: this.#now() })]
      if (job !== undefined) ops.push(...this.#index.putRef(job, hash))
      await this.#index.batch(ops)
      if (!present) {
        for (const listener of this.#addedListeners) {
          try {
            listener(hash, size, { announce })
          } catch (err) {
            this.#log.error('an onAdded listener failed - %e', err)
          }
        }
      }
    })
  }

  /** The blob is in the index and its file is in place. */
  async #holds(hash: string): Promise<boolean> {
    return (await this.#index.get(hash)) !== undefined && (await exists(this.pathOf(hash)))
  }

  /** Index changes that read then write run one at a time (gc must not race a ref or an add). */
  #locked<T>(fn: () => Promise<T>): Promise<T> {
    this.#checkOpen()
    const run = this.#tail.then(() => fn())
    this.#tail = run.catch(() => undefined)
    return run
  }

  #checkOpen(): void {
    if (this.#closed) throw new BlobStoreError('the blob store is closed')
  }

  #checkSize(size: number, what: string): void {
    if (size > this.maxBlobBytes) {
      throw new BlobTooLargeError(
        `${what}: ${size} bytes is over the blob limit of ${this.maxBlobBytes} bytes`,
      )
    }
  }

  readonly #tmpPath = (): string => join(this.dir, 'tmp', `${randomBytes(8).toString('hex')}.tmp`)
}

/** The home copy's file is still a plain file as it was recorded (no symlink followed). */
async function homeIntact(home: HomeCopy): Promise<boolean> {
  const st = await lstat(home.path).catch(() => null)
  if (st === null || !st.isFile()) return false
  return st.size === home.size && st.mtimeMs === home.mtimeMs && st.ino === home.ino
}
