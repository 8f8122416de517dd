// A node's files, wired: the worker's view of the blob store and the log store, the puller that
// brings outputs home, and the periodic upkeep (blobs no live job needs, old task logs).

import type { Logger } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { FarmDoc } from '../crdt/farmdoc.ts'
import type { BlobService } from '../protocol/blobs/index.ts'
import type { BlobStore } from './blobs/store.ts'
import type { LogStore } from './logstore.ts'
import { OutputHomes } from './outputhomes.ts'
import { type Blobs, liveBlobJobs, type TaskFiles, taskFiles } from './taskfiles.ts'
import type { TaskLogSink } from './worker.ts'

/** What the node gives its worker. */
export interface WorkerParts {
  readonly files: TaskFiles
  readonly logs: TaskLogSink
}

export interface NodeFiles {
  readonly parts: WorkerParts
  readonly homes: OutputHomes
  /** The upkeep timer (cleared when the node stops). */
  readonly maintenance: ReturnType<typeof setInterval>
}

export function wireFiles(init: {
  farm: FarmDoc
  blobStore: BlobStore
  logStore: LogStore
  blobService: BlobService
  homesFile: string
  gcMs: number
  log: Logger
}): NodeFiles {
  const { farm, blobStore, logStore, blobService, log } = init
  const blobs: Blobs = {
    fetch: (hash, o) => blobService.fetch(hash, o),
    copyOut: (hash, dest, opts) => blobStore.copyOut(hash, dest, opts),
    getSmall: (list, o) => blobService.getSmall(list, o),
    keepHome: (hash, path, seen) => blobStore.keepHome(hash, path, seen),
    // outputs are not announced: whoever wants one asks the maker its record names
    add: async (file, job) => blobStore.addFile(file, { job, announce: false, adopt: true }),
    ref: (job, hashes) => blobStore.ref(job, hashes),
  }
  const parts: WorkerParts = {
    files: taskFiles(farm, blobs),
    logs: {
      append: (ref, stream, line) => logStore.append(ref, stream, line),
      end: (ref, r) => {
        logStore.end(ref, r.reason === null ? { ok: r.ok } : { ok: r.ok, reason: r.reason }).catch(() => {})
      },
    },
  }
  const homes = new OutputHomes({ farm, blobs, file: init.homesFile, log: logger('openfarm:homes') })
  const maintenance = setInterval(() => {
    blobStore.gc(liveBlobJobs(farm)).then(
      (r) => r.removed > 0 && log('collected %d unneeded blob(s), %d bytes', r.removed, r.bytes),
      (err: Error) => log.error('blob collection failed: %s', err.message),
    )
    // task logs of finished attempts: a week, and at most 1 GiB
    logStore.prune({ maxAgeMs: 7 * 24 * 3600_000, maxBytes: 2 ** 30 }).catch((err: Error) => {
      log.error('log pruning failed: %s', err.message)
    })
  }, init.gcMs)
  maintenance.unref()
  return { parts, homes, maintenance }
}
