// Pulling a job's outputs into a directory on this machine (the submitter's home for them, see
// outputhomes.ts, or `openfarm fetch`'s): fetch each, copy it in verified, never over a file of other
// bytes unless asked. A path from the document never leaves the output directory. Small outputs (a
// chunk's frames) come from their maker over one stream and are written from memory, checked
// against their hashes, without a copy in the store: the file at home is the node's copy (keepHome),
// which it serves from there when a peer asks.

import type { Stats } from 'node:fs'
import { lstat } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { isSafeRelPath, type OutputRecord } from '../crdt/files.ts'
import { writeOut } from './blobs/copyout.ts'
import { DestinationExistsError } from './blobs/errors.ts'
import { hashFile } from './blobs/hash.ts'
import { inLanes } from './lanes.ts'
import { makeDirs } from './paths.ts'

/** What the puller needs of the blob layer: fetch by hash from any holder, then copy out of the store. */
export interface BlobAccess {
  /** `from`: peers likely to hold it (an output's maker), asked first. */
  fetch(
    hash: string,
    opts: { size?: number; signal?: AbortSignal; from?: readonly string[]; announce?: boolean },
  ): Promise<void>
  /**
   * Never replaces a file at `dest` unless `replace`; `verify` hashes the copy before it lands;
   * `fresh`: straight to `dest`, in a directory only the caller writes to (see blobs/copyout.ts).
   */
  copyOut(
    hash: string,
    dest: string,
    opts?: { verify?: boolean; replace?: boolean; fresh?: boolean },
  ): Promise<void>
  /**
   * Remembers `path` as a verified copy of the blob, so the node can serve it when the store holds no
   * copy of its own (BlobStore.keepHome; `seen`: the file's stat, taken by its writer); best effort.
   */
  keepHome?(hash: string, path: string, seen?: Stats): Promise<void>
  /**
   * Gets the small ones of `blobs` that the store lacks from `from` over one stream, their bytes
   * checked against their hashes and not stored (best effort: `fetch` gets the rest); resolves with
   * what came.
   */
  getSmall?(
    blobs: readonly { hash: string; size: number }[],
    opts: { from: string; signal?: AbortSignal },
  ): Promise<Map<string, Uint8Array>>
}

export class UnsafeOutputPathError extends Error {
  static override readonly name = 'UnsafeOutputPathError'
  override readonly name = 'UnsafeOutputPathError'
}

export interface PullReport {
  /** Files written now. */
  readonly written: string[]
  /** Already there with the same bytes. */
  readonly present: string[]
  /** There with other bytes: kept as they are, not overwritten. */
  readonly conflicts: string[]
  /** Could not be fetched now (no holder reachable): tried again on the next change. */
  readonly failed: { path: string; reason: string }[]
}

/**
 * The absolute path of `rel` inside `dir`, refusing anything that would leave it: an unsafe path,
 * or a directory on the way that is a symlink (it could point anywhere).
 */
export async function safeTarget(dir: string, rel: string): Promise<string> {
  return (await checkTarget(dir, rel)).target
}

/**
 * Where `rel` lands under `dir`, by its text alone (a safe relative path that stays inside): enough
 * for a directory nothing else writes to (a task's fresh input directory); safeTarget also refuses
 * symlinks already on the way.
 */
export function insideDir(dir: string, rel: string): string {
  if (!isSafeRelPath(rel)) throw new UnsafeOutputPathError(`refusing output path ${JSON.stringify(rel)}`)
  const root = resolve(dir)
  const target = resolve(root, rel)
  if (!target.startsWith(root + sep)) throw new UnsafeOutputPathError(`output path ${rel} leaves ${root}`)
  return target
}

/** safeTarget, and what is at the target now (null: nothing). */
async function checkTarget(dir: string, rel: string): Promise<{ target: string; existing: Stats | null }> {
  const target = insideDir(dir, rel)
  const root = resolve(dir)
  let at = root
  for (const part of relative(root, dirname(target))
    .split(sep)
    .filter((p) => p !== '')) {
    at = join(at, part)
    const st = await lstat(at).catch(() => null)
    if (st === null) break
    if (st.isSymbolicLink() || !st.isDirectory()) {
      throw new UnsafeOutputPathError(`output path ${rel}: ${at} is not a plain directory`)
    }
  }
  const existing = await lstat(target).catch(() => null)
  if (existing?.isSymbolicLink())
    throw new UnsafeOutputPathError(`output path ${rel} is a symlink in ${root}`)
  return { target, existing }
}

/** Outputs pulled at once: a chunk's frames come home together, not one after another. */
export const PULL_CONCURRENCY = 4

/**
 * The bytes of small outputs fetched ahead and held in memory until written: a pull of many (after
 * a restart, all of a job's) goes in windows of about this much.
 */
export const PREFETCH_WINDOW_BYTES = 16 * 1024 * 1024

export type PullOutcome =
  | { readonly kind: 'written' | 'present' | 'conflict' }
  | { readonly kind: 'failed'; readonly reason: string }

/**
 * Pulls `outputs` into `dir`: fetch, copy to a temporary name, then link into place (never replaces).
 * Up to PULL_CONCURRENCY paths at once; the records of one path in their order. The report lists
 * paths in the order of `outputs`.
 */
export interface PullOptions {
  readonly signal?: AbortSignal
  /** Path -> hash of the file there, as this node wrote or hashed it (filled in as it goes). */
  readonly known?: Map<string, string>
  /** Paths this job's pulls wrote into the directory (a newer record of one replaces it). */
  readonly wrote?: Set<string>
  /** Files already in the directory may be replaced, the first time they are seen. */
  readonly overwrite?: boolean
  /** Told each output's outcome as soon as it is known. */
  readonly onOutcome?: (path: string, outcome: PullOutcome) => void
}

export async function pullOutputs(
  blobs: BlobAccess,
  outputs: readonly OutputRecord[],
  dir: string,
  opts: PullOptions = {},
): Promise<PullReport> {
  await makeDirs(dir)
  const byPath = new Map<string, number[]>()
  for (const [i, o] of outputs.entries()) {
    const list = byPath.get(o.path)
    if (list === undefined) byPath.set(o.path, [i])
    else list.push(i)
  }
  const outcomes: (PullOutcome | undefined)[] = []
  for (const window of windows([...byPath.values()], outputs, opts)) {
    const fetched = await prefetch(blobs, window.wanted, opts)
    await inLanes(window.groups, PULL_CONCURRENCY, async (group) => {
      for (const i of group) {
        opts.signal?.throwIfAborted()
        const o = outputs[i]!
        outcomes[i] = await pullOne(blobs, o, dir, opts, fetched.get(o.hash))
        opts.onOutcome?.(o.path, outcomes[i]!)
      }
    })
  }
  const report: PullReport = { written: [], present: [], conflicts: [], failed: [] }
  for (const [i, r] of outcomes.entries()) {
    const path = outputs[i]!.path
    if (r === undefined) continue
    if (r.kind === 'written') report.written.push(path)
    else if (r.kind === 'present') report.present.push(path)
    else if (r.kind === 'conflict') report.conflicts.push(path)
    else if (r.kind === 'failed') report.failed.push({ path, reason: r.reason })
  }
  return report
}

/** An output prefetch asks for: not home already, at a path pullOne will not refuse. */
const wanted = (o: OutputRecord, known: PullOptions['known']): boolean =>
  known?.get(o.path) !== o.hash && isSafeRelPath(o.path)

/**
 * The groups (of one path each) in windows whose wanted outputs total PREFETCH_WINDOW_BYTES at most
 * (or one group), each with those wanted outputs: what prefetch asks for.
 */
function* windows(
  groups: readonly number[][],
  outputs: readonly OutputRecord[],
  opts: Pick<PullOptions, 'known'>,
): Generator<{ groups: number[][]; wanted: OutputRecord[] }> {
  let window: { groups: number[][]; wanted: OutputRecord[] } = { groups: [], wanted: [] }
  let bytes = 0
  for (const group of groups) {
    const asked = group.map((i) => outputs[i]!).filter((o) => wanted(o, opts.known))
    const size = asked.reduce((n, o) => n + o.size, 0)
    if (window.groups.length > 0 && bytes + size > PREFETCH_WINDOW_BYTES) {
      yield window
      window = { groups: [], wanted: [] }
      bytes = 0
    }
    window.groups.push(group)
    window.wanted.push(...asked)
    bytes += size
  }
  if (window.groups.length > 0) yield window
}

/**
 * The small ones of `outputs` (a window's wanted: not home yet), one request per maker: a task's
 * frames, recorded together, then come over one stream instead of one each (each stream cost about
 * as much CPU as its small frame's bytes), and go from memory straight to their place. Best effort: what does not come this way, pullOne
 * fetches into the store. (After a restart `known` is empty: small outputs already home come again,
 * once, and are found there with the same bytes.)
 */
async function prefetch(
  blobs: BlobAccess,
  outputs: readonly OutputRecord[],
  opts: Pick<PullOptions, 'signal'>,
): Promise<Map<string, Uint8Array>> {
  const got = new Map<string, Uint8Array>()
  if (blobs.getSmall === undefined) return got
  const byPeer = new Map<string, { hash: string; size: number }[]>()
  for (const o of outputs) {
    const list = byPeer.get(o.peer)
    if (list === undefined) byPeer.set(o.peer, [{ hash: o.hash, size: o.size }])
    else list.push({ hash: o.hash, size: o.size })
  }
  await Promise.all(
    [...byPeer].map(async ([from, list]) => {
      const bytes = await blobs
        .getSmall?.(list, { from, ...(opts.signal ? { signal: opts.signal } : {}) })
        .catch(() => undefined)
      for (const [hash, b] of bytes ?? []) got.set(hash, b)
    }),
  )
  return got
}

/** `bytes`: the output's, fetched ahead and checked against its hash; without them it comes by the store. */
async function pullOne(
  blobs: BlobAccess,
  o: OutputRecord,
  dir: string,
  opts: Omit<PullOptions, 'onOutcome'>,
  bytes?: Uint8Array,
): Promise<PullOutcome> {
  // every change of the job's outputs passes over all of them: one already home costs a lookup only
  // (`known` holds only paths that passed safeTarget when they were written or hashed)
  const known = opts.known?.get(o.path)
  if (known === o.hash) return { kind: 'present' }
  let target: string
  let existing: Stats | null
  try {
    ;({ target, existing } = await checkTarget(dir, o.path))
  } catch (err) {
    return { kind: 'failed', reason: (err as Error).message }
  }
  if (existing !== null) {
    // only a regular file can be a copy of an output: anything else there (a directory, a FIFO) is
    // kept and reported, never read (a FIFO would hold the read forever) nor replaced
    if (!existing.isFile()) return { kind: 'conflict' }
    const h = known ?? (await hashFile(target))
    opts.known?.set(o.path, h)
    if (h === o.hash) {
      if (known === undefined) await keepHome(blobs, o.hash, target)
      return { kind: 'present' }
    }
    // a file this job brought home is replaced by a newer record of it (another attempt rendered
    // it again, as after a worker died mid-chunk): the directory keeps what the job's outputs say.
    // One that was there before is replaced only if asked (--overwrite), the first time it is seen.
    // (After a restart this node no longer knows which files it wrote: all count as there before.)
    const ours = opts.wrote?.has(o.path) === true
    if (!ours && (!opts.overwrite || known !== undefined)) return { kind: 'conflict' }
  }
  try {
    // replaces only what the user said may be replaced (--overwrite), and a name taken meanwhile by
    // other bytes is a conflict, never overwritten
    if (bytes !== undefined) {
      const st = await writeOut(bytes, o.hash, target, { replace: existing !== null })
      await keepHome(blobs, o.hash, target, st ?? undefined)
    } else {
      await blobs.fetch(o.hash, {
        size: o.size,
        from: [o.peer],
        announce: false,
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
      // verified where it lands
      await blobs.copyOut(o.hash, target, { verify: true, replace: existing !== null })
      await keepHome(blobs, o.hash, target)
    }
    opts.known?.set(o.path, o.hash)
    opts.wrote?.add(o.path)
    return { kind: 'written' }
  } catch (err) {
    if (err instanceof DestinationExistsError) return { kind: 'conflict' }
    return { kind: 'failed', reason: (err as Error).message }
  }
}

/** The copy is home, verified: the node may serve it from there later (a failure costs only that). */
async function keepHome(blobs: BlobAccess, hash: string, path: string, seen?: Stats): Promise<void> {
  await blobs.keepHome?.(hash, path, seen).catch(() => undefined)
}
