// The blob index: one level database of its own inside the store directory. Keys (\0 separates parts):
//   b\0<hash>          -> { size, added }   a blob the store holds
//   r\0<hash>\0<job>   -> 1                 job references blob
//   j\0<job>\0<hash>   -> 1                 the same reference, by job (for unrefJob)
//   h\0<hash>          -> { path, size, mtimeMs, ino }   a copy of the blob outside the store that
//                                          this node wrote or hashed (an output brought home), as it
//                                          was then: see BlobStore.keepHome
// Every change that must be seen whole (a blob and its refs, a job's refs) is one batch.
// The blob entries read are cached in memory: every input of a task, every frame served or coming
// home asks for its entry, and a level read is a trip through the thread pool each time. The index's
// lock makes this process the database's only writer, and every write goes through batch(), which
// keeps the cache in step.

import { Level } from 'level'
import { BlobStoreError } from './errors.ts'

const SEP = '\u0000'
const AFTER = '\u0001'
const BLOB_PREFIX = `b${SEP}`
const blobKey = (hash: string) => `${BLOB_PREFIX}${hash}`
const refKey = (hash: string, job: string) => `r${SEP}${hash}${SEP}${job}`
const jobKey = (job: string, hash: string) => `j${SEP}${job}${SEP}${hash}`

export interface BlobEntry {
  readonly size: number
  /** ms since the epoch (the store's clock) when the blob was last added or fetched */
  readonly added: number
}

/** A copy of a blob outside the store, as it was when this node wrote or hashed it. */
export interface HomeCopy {
  readonly path: string
  readonly size: number
  readonly mtimeMs: number
  readonly ino: number
}

function isHome(x: unknown): x is HomeCopy {
  if (typeof x !== 'object' || x === null) return false
  const e = x as Record<string, unknown>
  return (
    typeof e.path === 'string' &&
    Number.isSafeInteger(e.size) &&
    (e.size as number) >= 0 &&
    Number.isFinite(e.mtimeMs) &&
    Number.isSafeInteger(e.ino)
  )
}

const HOME_PREFIX = `h${SEP}`
const homeKey = (hash: string) => `${HOME_PREFIX}${hash}`

export type IndexOp =
  | { readonly type: 'put'; readonly key: string; readonly value: unknown }
  | { readonly type: 'del'; readonly key: string }

function isEntry(x: unknown): x is BlobEntry {
  if (typeof x !== 'object' || x === null) return false
  const e = x as Record<string, unknown>
  return Number.isSafeInteger(e.size) && (e.size as number) >= 0 && Number.isFinite(e.added)
}

/** Blob entries kept in memory (about 200 B each): the most recently read or written ones. */
const CACHED_ENTRIES = 50_000

export class BlobIndex {
  readonly #db: Level<string, unknown>
  /** hash -> its entry, or null for a blob the index does not hold; in order of last use */
  readonly #cache = new Map<string, BlobEntry | null>()
  /** Counts the starts and ends of batches: a read that a batch overlapped does not cache its result. */
  #writes = 0

  private constructor(db: Level<string, unknown>) {
    this.#db = db
  }

  static async open(path: string): Promise<BlobIndex> {
    const db = new Level<string, unknown>(path, { valueEncoding: 'json' })
    try {
      await db.open()
    } catch (err) {
      const why = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
      throw new BlobStoreError(`cannot open the blob index at ${path}: ${why}`, { cause: err })
    }
    return new BlobIndex(db)
  }

  close(): Promise<void> {
    return this.#db.close()
  }

  async get(hash: string): Promise<BlobEntry | undefined> {
    const cached = this.#cache.get(hash)
    if (cached !== undefined) {
      this.#remember(hash, cached)
      return cached ?? undefined
    }
    const writes = this.#writes
    const v = await this.#db.get(blobKey(hash))
    const entry = isEntry(v) ? v : undefined
    if (writes === this.#writes) this.#remember(hash, entry ?? null)
    return entry
  }

  #remember(hash: string, entry: BlobEntry | null): void {
    this.#cache.delete(hash)
    this.#cache.set(hash, entry)
    if (this.#cache.size > CACHED_ENTRIES) this.#cache.delete(this.#cache.keys().next().value as string)
  }

  putBlob(hash: string, entry: BlobEntry): IndexOp {
    return { type: 'put', key: blobKey(hash), value: { size: entry.size, added: entry.added } }
  }

  delBlob(hash: string): IndexOp {
    return { type: 'del', key: blobKey(hash) }
  }

  putRef(job: string, hash: string): IndexOp[] {
    return [
      { type: 'put', key: refKey(hash, job), value: 1 },
      { type: 'put', key: jobKey(job, hash), value: 1 },
    ]
  }

  delRef(job: string, hash: string): IndexOp[] {
    return [
      { type: 'del', key: refKey(hash, job) },
      { type: 'del', key: jobKey(job, hash) },
    ]
  }

  putHome(hash: string, home: HomeCopy): IndexOp {
    const { path, size, mtimeMs, ino } = home
    return { type: 'put', key: homeKey(hash), value: { path, size, mtimeMs, ino } }
  }

  delHome(hash: string): IndexOp {
    return { type: 'del', key: homeKey(hash) }
  }

  /** The home copy recorded for `hash` (a malformed entry reads as none). */
  async getHome(hash: string): Promise<HomeCopy | undefined> {
    const v = await this.#db.get(homeKey(hash))
    return isHome(v) ? v : undefined
  }

  /** Every home copy recorded (a malformed entry is yielded as null, for the caller to delete). */
  async *homes(): AsyncGenerator<[string, HomeCopy | null]> {
    for await (const [key, value] of this.#db.iterator({ gt: HOME_PREFIX, lt: `h${AFTER}` })) {
      yield [key.slice(HOME_PREFIX.length), isHome(value) ? value : null]
    }
  }

  async batch(ops: readonly IndexOp[]): Promise<void> {
    if (ops.length === 0) return
    // counted when it starts and when it ends: a read that overlapped it in any way caches nothing
    this.#writes++
    let written = false
    try {
      await this.#db.batch([...ops])
      written = true
    } finally {
      this.#writes++
      for (const op of ops) {
        if (!op.key.startsWith(BLOB_PREFIX)) continue
        const hash = op.key.slice(BLOB_PREFIX.length)
        this.#cache.delete(hash)
        // after a failure the database's state is not known here: the next read asks it
        if (written) this.#remember(hash, op.type === 'put' && isEntry(op.value) ? op.value : null)
      }
    }
  }

  /** Every blob entry (a malformed one is reported to `onBad` and skipped). */
  async *blobs(onBad?: (hash: string) => void): AsyncGenerator<[string, BlobEntry]> {
    for await (const [key, value] of this.#db.iterator({ gt: `b${SEP}`, lt: `b${AFTER}` })) {
      const hash = key.slice(2)
      if (isEntry(value)) yield [hash, value]
      else onBad?.(hash)
    }
  }

  /** Jobs referencing each blob that has at least one reference. */
  async refsByBlob(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>()
    for await (const key of this.#db.keys({ gt: `r${SEP}`, lt: `r${AFTER}` })) {
      const [, hash, job] = key.split(SEP)
      if (hash === undefined || job === undefined) continue
      const list = out.get(hash)
      if (list === undefined) out.set(hash, [job])
      else list.push(job)
    }
    return out
  }

  async refsOf(hash: string): Promise<string[]> {
    const prefix = `r${SEP}${hash}${SEP}`
    const jobs: string[] = []
    for await (const key of this.#db.keys({ gt: prefix, lt: `r${SEP}${hash}${AFTER}` })) {
      jobs.push(key.slice(prefix.length))
    }
    return jobs
  }

  async blobsOfJob(job: string): Promise<string[]> {
    const prefix = `j${SEP}${job}${SEP}`
    const hashes: string[] = []
    for await (const key of this.#db.keys({ gt: prefix, lt: `j${SEP}${job}${AFTER}` })) {
      hashes.push(key.slice(prefix.length))
    }
    return hashes
  }
}
