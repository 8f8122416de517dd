// Level persistence of the farm document (after y-leveldb): every update is appended under a
// versioned key, and past a threshold the log is merged into one update in a single atomic batch.
// A restarted node replays the log and has every fact it ever saw. Unlike y-leveldb, errors are
// never swallowed: a write failure is reported, a corrupt entry is named and skipped.

import type { Logger } from '@libp2p/interface'
import { Level } from 'level'
import * as Y from 'yjs'
import { STORE } from './origins.ts'

const PREFIX = 'doc1!u!'
const END = 'doc1!u!~'

export class StoreError extends Error {
  static override readonly name = 'StoreError'
  override readonly name = 'StoreError'
}

export interface DocStoreInit {
  /** Merge the log into one update once it holds this many entries. */
  readonly compactAfter?: number
  readonly log?: Logger
}

function key(seq: number): string {
  return PREFIX + seq.toString(16).padStart(12, '0')
}

export interface LoadReport {
  readonly updates: number
  readonly corrupt: number
  readonly bytes: number
}

export class DocStore {
  private readonly db: Level<string, Uint8Array>
  private readonly doc: Y.Doc
  private readonly compactAfter: number
  private readonly log: Logger | undefined
  private seq = 0
  private entries = 0
  private queue: Uint8Array[] = []
  private tail: Promise<void> = Promise.resolve()
  private scheduled = false
  private compacting = false
  /** Compactions written since open. */
  compactions = 0
  private closed = false
  private failure: Error | undefined
  private readonly onUpdate = (update: Uint8Array, origin: unknown) => {
    if (origin === STORE || this.closed) return
    this.queue.push(update)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        void this.flush()
      })
    }
  }

  private constructor(db: Level<string, Uint8Array>, doc: Y.Doc, init: DocStoreInit) {
    this.db = db
    this.doc = doc
    this.compactAfter = init.compactAfter ?? 500
    this.log = init.log
  }

  /** Opens (or creates) the store at `path`, loads it into `doc`, then records every later update. */
  static async open(
    path: string,
    doc: Y.Doc,
    init: DocStoreInit = {},
  ): Promise<{ store: DocStore; loaded: LoadReport }> {
    const db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
    try {
      await db.open()
    } catch (err) {
      // LevelDB's lock: the usual cause is a second `join` on a data directory a node already uses
      const locked = (err as { cause?: { code?: string } }).cause?.code === 'LEVEL_LOCKED'
      const why = locked
        ? 'it is in use (is a node already running with this data directory? stop it, or give this one another --data)'
        : (err as Error).message
      throw new StoreError(`cannot open the farm database at ${path}: ${why}`, { cause: err })
    }
    const store = new DocStore(db, doc, init)
    const loaded = await store.load()
    doc.on('update', store.onUpdate)
    return { store, loaded }
  }

  private async load(): Promise<LoadReport> {
    const updates: Uint8Array[] = []
    for await (const [k, v] of this.db.iterator({ gte: PREFIX, lt: END })) {
      this.seq = Number.parseInt(k.slice(PREFIX.length), 16) + 1
      updates.push(v)
    }
    let corrupt = 0
    let bytes = 0
    this.doc.transact(() => {
      for (const u of updates) {
        bytes += u.byteLength
        try {
          Y.applyUpdate(this.doc, u, STORE)
        } catch (err) {
          corrupt++
          this.log?.error('corrupt entry in the farm database skipped: %s', (err as Error).message)
        }
      }
    }, STORE)
    this.entries = updates.length
    return { updates: updates.length, corrupt, bytes }
  }

  /** Writes what is queued; resolves when it is on disk. Throws the first write failure. */
  flush(): Promise<void> {
    const batch = this.queue
    this.queue = []
    if (batch.length > 0) {
      const ops = batch.map((value) => ({ type: 'put' as const, key: key(this.seq++), value }))
      this.entries += ops.length
      this.tail = this.tail.then(() => this.db.batch(ops)).catch((err) => this.fail(err))
      if (this.entries >= this.compactAfter) this.scheduleCompaction()
    }
    return this.tail.then(() => {
      if (this.failure !== undefined) throw this.failure
    })
  }

  /** Merges the whole log into one entry, atomically. */
  async compact(): Promise<void> {
    await this.flush()
    this.scheduleCompaction()
    await this.tail
  }

  /**
   * Takes the snapshot now, under a key after every entry written so far and before any written
   * later, so replaying the log in key order always starts from it; at most one is pending.
   */
  private scheduleCompaction(): void {
    if (this.compacting || this.closed) return
    this.compacting = true
    const state = Y.encodeStateAsUpdate(this.doc)
    const seq = this.seq++
    this.entries = 1
    this.tail = this.tail
      .then(() => this.compactTo(seq, state))
      .finally(() => {
        this.compacting = false
      })
  }

  private async compactTo(seq: number, state: Uint8Array): Promise<void> {
    try {
      const ops: ({ type: 'del'; key: string } | { type: 'put'; key: string; value: Uint8Array })[] = []
      for await (const k of this.db.keys({ gte: PREFIX, lt: key(seq) })) ops.push({ type: 'del', key: k })
      ops.push({ type: 'put', key: key(seq), value: state })
      await this.db.batch(ops)
      this.compactions++
      this.log?.('compacted the farm database to one entry of %d bytes', state.byteLength)
    } catch (err) {
      this.fail(err)
    }
  }

  private fail(err: unknown): void {
    const e = new StoreError(`writing the farm database failed: ${(err as Error).message}`, { cause: err })
    this.failure ??= e
    this.log?.error('%s', e.message)
  }

  /** Bytes the database holds on disk (approximate, from level). */
  async approximateSize(): Promise<number> {
    const db = this.db as unknown as { approximateSize?: (a: string, b: string) => Promise<number> }
    return (await db.approximateSize?.(PREFIX, END)) ?? 0
  }

  async close(): Promise<void> {
    this.doc.off('update', this.onUpdate)
    try {
      await this.flush()
    } finally {
      this.closed = true
      await this.tail
      await this.db.close()
    }
  }
}
