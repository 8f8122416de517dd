// A task's files on a worker: its inputs fetched by hash from whichever peers hold them and laid
// out in the task's input directory (the scene's own relative layout, plus the outputs of the jobs it
// takes its inputs from), and each output it makes added to the blob store and recorded in the job,
// so the submitter (or anyone) can pull it.

import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { FarmDoc } from '../crdt/farmdoc.ts'
import type { InputFile } from '../crdt/files.ts'
import type { JobSpec } from '../crdt/schema.ts'
import { type BlobAccess, insideDir } from './homes.ts'
import { inLanes } from './lanes.ts'

/** What a worker needs of the blob layer. */
export interface Blobs extends BlobAccess {
  /**
   * Takes a task's output file into the store (held for `job`), by a hard link where it can: the
   * file is not written again; its hash and size.
   */
  add(file: string, job: string): Promise<{ hash: string; size: number }>
  /** Holds these blobs for `job` (so garbage collection keeps them while it lives). */
  ref(job: string, hashes: readonly string[]): Promise<void>
}

export class InputsError extends Error {
  static override readonly name = 'InputsError'
  override readonly name = 'InputsError'
}

/** Blobs of a job's outputs are held under this name, apart from its inputs. */
export const outputsRef = (job: string): string => `${job}.out`

/** Everything a task of `spec` reads: its own inputs, then the outputs of the jobs it takes from. */
export function inputsOf(farm: FarmDoc, spec: JobSpec): InputFile[] {
  const files = new Map<string, InputFile>()
  for (const f of spec.inputs) files.set(f.path, f)
  for (const from of spec.inputsFrom) {
    for (const o of farm.outputs(from)) {
      if (!files.has(o.path)) files.set(o.path, { path: o.path, hash: o.hash, size: o.size })
    }
  }
  return [...files.values()]
}

export interface TaskFiles {
  /**
   * Fetches and places the inputs under `indir`, a directory just made that nothing else writes to;
   * writes `remap.json` beside it (original absolute path -> new absolute path) for the application
   * to apply. Resolves to the number of files placed.
   */
  prepare(spec: JobSpec, indir: string, signal: AbortSignal): Promise<number>
  /**
   * Stores one output file and records it in the job (path relative to the job's output dir); the
   * record may wait up to OUTPUT_DEFER_MS to share an update with the next ones, or for `holdForEnd`.
   * Resolves to the size stored.
   */
  publish(
    spec: JobSpec,
    out: { file: string; path: string; frame: number | null; task: number; attempt: number },
  ): Promise<{ size: number }>
  /**
   * A task's outputs are all recorded and its process is about to end: this node's records of `job`
   * that wait go into the job with the update the dispatcher makes at that end (the slot's next
   * start), or at most OUTPUT_DEFER_MS from now.
   */
  holdForEnd(job: string): void
}

/** A task's input files placed at once (fetched, or copied out of the store). */
export const INPUT_CONCURRENCY = 4

/**
 * How long a worker's output record may wait to share an update with the next ones (recordOutput's
 * deferMs): the frames of a fast chunk, saved tens of ms apart, make one update and not one each.
 * Once the chunk's last frame is recorded they wait for the application to quit (holdForEnd), a few
 * tens of ms, and go with the slot's next start: an update that would be made anyway. A frame's trip
 * home starts at most this much later.
 */
export const OUTPUT_DEFER_MS = 200

export function taskFiles(farm: FarmDoc, blobs: Blobs): TaskFiles {
  return {
    async prepare(spec, indir, signal) {
      const inputs = inputsOf(farm, spec)
      for (const from of spec.inputsFrom) {
        if (farm.outputs(from).length === 0) throw new InputsError(`job ${from} recorded no outputs to take`)
      }
      await blobs.ref(spec.id, [...new Set(inputs.map((f) => f.hash))])
      // an output taken as input: its maker is the first peer to ask
      const makers = new Map<string, string>()
      for (const from of spec.inputsFrom) for (const o of farm.outputs(from)) makers.set(o.hash, o.peer)
      // indir is new and only this prepare writes to it (stageTask): a path's text is all there is to
      // check, and each directory is made once
      const made = new Set<string>()
      const place = async (f: InputFile): Promise<string> => {
        let dest: string
        try {
          dest = insideDir(indir, f.path)
        } catch (err) {
          throw new InputsError((err as Error).message)
        }
        try {
          const maker = makers.get(f.hash)
          await blobs.fetch(f.hash, {
            size: f.size,
            signal,
            ...(maker === undefined ? {} : { from: [maker] }),
          })
          const parent = dirname(dest)
          if (!made.has(parent)) {
            await mkdir(parent, { recursive: true })
            made.add(parent)
          }
          await blobs.copyOut(f.hash, dest, { fresh: true })
        } catch (err) {
          if (signal.aborted) throw err
          throw new InputsError(`input ${f.path}: ${(err as Error).message}`, { cause: err })
        }
        return dest
      }
      // a scene's files one after another cost a task tens of ms before Blender starts (each is a
      // few fs calls, each a trip through the thread pool): INPUT_CONCURRENCY at once
      const dests: string[] = []
      await inLanes(inputs, INPUT_CONCURRENCY, async (f, i) => {
        signal.throwIfAborted()
        dests[i] = await place(f)
      })
      const remap: Record<string, string> = {}
      for (const [i, f] of inputs.entries()) if (f.orig !== undefined) remap[f.orig] = dests[i]!
      await writeFile(join(dirname(indir), 'remap.json'), `${JSON.stringify(remap, null, 1)}\n`)
      return inputs.length
    },
    async publish(spec, o) {
      const { hash, size } = await blobs.add(o.file, outputsRef(spec.id))
      farm.recordOutput(
        spec.id,
        { path: o.path, hash, size, frame: o.frame, task: o.task, attempt: o.attempt },
        { deferMs: OUTPUT_DEFER_MS },
      )
      return { size }
    },
    holdForEnd(job) {
      farm.deferOutputs(job, OUTPUT_DEFER_MS)
    },
  }
}

/**
 * Jobs whose blobs this node keeps: every job's outputs while the job exists; its inputs while it can
 * still run, and for as long as the job exists on the node that submitted it (a retry needs them).
 */
export function liveBlobJobs(farm: FarmDoc): Set<string> {
  const live = new Set<string>()
  for (const v of farm.views()) {
    live.add(outputsRef(v.id))
    const ended = v.state === 'DONE' || v.state === 'CANCEL'
    if (!ended || v.spec.submittedBy === farm.peer) live.add(v.id)
  }
  return live
}
