// Outputs go home: the submitting node pulls each output a worker records into the job's output
// directory as soon as it is recorded (and, after a restart, whatever it missed while away); any node
// can pull a job's outputs on demand (`openfarm fetch`). A path from the document never leaves the
// output directory, and a file already there with other content is never overwritten silently.

import { randomBytes } from 'node:crypto'
import type { Stats } from 'node:fs'
import { lstat, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import type { Logger } from '@libp2p/interface'
import type { FarmDoc } from '../crdt/farmdoc.ts'
import { isSafeRelPath, type OutputRecord } from '../crdt/files.ts'
import { DestinationExistsError } from './blobs/errors.ts'
import { hashFile } from './blobs/hash.ts'
import { inLanes } from './lanes.ts'

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
   * Gets the small ones of `blobs` from `from` over one stream (best effort: `fetch` gets the rest);
   * resolves with the hashes it got.
   */
  fetchSmall?(
    blobs: readonly { hash: string; size: number }[],
    opts: { from: string; signal?: AbortSignal },
  ): Promise<string[]>
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

export type PullOutcome =
  | { readonly kind: 'written' | 'present' | 'conflict' }
  | { readonly kind: 'failed'; readonly reason: string }

/**
 * Pulls `outputs` into `dir`: fetch, copy to a temporary name, then link into place (never replaces).
 * Up to PULL_CONCURRENCY paths at once; the records of one path in their order. The report lists
 * paths in the order of `outputs`.
 */
export async function pullOutputs(
  blobs: BlobAccess,
  outputs: readonly OutputRecord[],
  dir: string,
  opts: {
    signal?: AbortSignal
    known?: Map<string, string>
    /** Paths this job's pulls wrote into the directory (a newer record of one replaces it). */
    wrote?: Set<string>
    overwrite?: boolean
    /** Told each output's outcome as soon as it is known. */
    onOutcome?: (path: string, outcome: PullOutcome) => void
  } = {},
): Promise<PullReport> {
  await mkdir(dir, { recursive: true })
  const byPath = new Map<string, number[]>()
  for (const [i, o] of outputs.entries()) {
    const list = byPath.get(o.path)
    if (list === undefined) byPath.set(o.path, [i])
    else list.push(i)
  }
  await prefetch(blobs, outputs, opts)
  const outcomes: (PullOutcome | undefined)[] = []
  const groups = [...byPath.values()]
  await inLanes(groups, PULL_CONCURRENCY, async (group) => {
    for (const i of group) {
      opts.signal?.throwIfAborted()
      outcomes[i] = await pullOne(blobs, outputs[i]!, dir, opts)
      opts.onOutcome?.(outputs[i]!.path, outcomes[i]!)
    }
  })
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

/**
 * The outputs not home yet, one request per maker: a task's frames, recorded together, then come over
 * one stream instead of one each (each stream cost about as much CPU as its small frame's bytes). Best
 * effort: what does not come this way, pullOne fetches. (After a restart `known` is empty: small
 * outputs already home but no longer in the store come again, once.)
 */
async function prefetch(
  blobs: BlobAccess,
  outputs: readonly OutputRecord[],
  opts: { signal?: AbortSignal; known?: Map<string, string> },
): Promise<void> {
  if (blobs.fetchSmall === undefined) return
  const byPeer = new Map<string, { hash: string; size: number }[]>()
  for (const o of outputs) {
    // a path pullOne will refuse gets nothing fetched for it
    if (opts.known?.get(o.path) === o.hash || !isSafeRelPath(o.path)) continue
    const list = byPeer.get(o.peer)
    if (list === undefined) byPeer.set(o.peer, [{ hash: o.hash, size: o.size }])
    else list.push({ hash: o.hash, size: o.size })
  }
  await Promise.all(
    [...byPeer].map(([from, list]) =>
      blobs
        .fetchSmall?.(list, { from, ...(opts.signal ? { signal: opts.signal } : {}) })
        .catch(() => undefined),
    ),
  )
}

async function pullOne(
  blobs: BlobAccess,
  o: OutputRecord,
  dir: string,
  opts: { signal?: AbortSignal; known?: Map<string, string>; wrote?: Set<string>; overwrite?: boolean },
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
    if (h === o.hash) return { kind: 'present' }
    // a file this job brought home is replaced by a newer record of it (another attempt rendered
    // it again, as after a worker died mid-chunk): the directory keeps what the job's outputs say.
    // One that was there before is replaced only if asked (--overwrite), the first time it is seen.
    // (After a restart this node no longer knows which files it wrote: all count as there before.)
    const ours = opts.wrote?.has(o.path) === true
    if (!ours && (!opts.overwrite || known !== undefined)) return { kind: 'conflict' }
  }
  try {
    await blobs.fetch(o.hash, {
      size: o.size,
      from: [o.peer],
      announce: false,
      ...(opts.signal ? { signal: opts.signal } : {}),
    })
    // verified where it lands; replaces only what the user said may be replaced (--overwrite), and a
    // name taken meanwhile by other bytes is a conflict, never overwritten
    await blobs.copyOut(o.hash, target, { verify: true, replace: existing !== null })
    opts.known?.set(o.path, o.hash)
    opts.wrote?.add(o.path)
    return { kind: 'written' }
  } catch (err) {
    if (err instanceof DestinationExistsError) return { kind: 'conflict' }
    return { kind: 'failed', reason: (err as Error).message }
  }
}

interface HomeEntry {
  readonly dir: string
  /** Files already in the directory may be replaced (the user said --overwrite at submit). */
  readonly overwrite?: boolean
}

/** The first retry of an output that did not come home; each further one waits twice as long. */
export const HOME_RETRY_MS = 5_000
/** The longest wait between two tries of an output that does not come home. */
export const HOME_RETRY_MAX_MS = 5 * 60_000

/**
 * Jobs pulled at once (each up to PULL_CONCURRENCY outputs at a time): a job whose makers are gone
 * holds one of them while its fetches search; a restart with many jobs tracked does not hash every
 * file of all of them at once.
 */
export const HOME_JOBS_AT_ONCE = 4

/** An output that did not come home: when it is tried again, and why it failed last. */
interface Waiting {
  readonly hash: string
  readonly reason: string
  readonly next: number
  readonly delay: number
}

/** What this node knows of one job's outputs coming home (in memory: a restart starts over). */
interface JobPulls {
  /** Path -> hash of the file there, as this node wrote or hashed it. */
  readonly known: Map<string, string>
  /** Paths this node's pulls wrote (a newer record of one replaces it). */
  readonly wrote: Set<string>
  /** Outputs that did not come home, by path, until their retry. */
  readonly waiting: Map<string, Waiting>
  /** The pull of the first waiting output. */
  retry?: ReturnType<typeof setTimeout>
  /** The last pull's report. */
  report?: PullReport
}

/**
 * The submitter's side: which jobs send their outputs to which local directory (kept in a small JSON
 * file so a restart remembers), pulled on every change of their outputs and once at start. Jobs are
 * pulled side by side (one whose outputs cannot be fetched holds up no other), and an output that
 * did not come home is tried again after HOME_RETRY_MS, then twice as long each time up to
 * HOME_RETRY_MAX_MS (a new record of it, another attempt's, is tried at once).
 */
export class OutputHomes {
  private readonly homes = new Map<string, HomeEntry>()
  private readonly pulls = new Map<string, JobPulls>()
  private readonly told = new Set<string>()
  /** Pulls running, by job; and jobs whose outputs changed meanwhile (pulled again after). */
  private readonly runs = new Map<string, Promise<void>>()
  private readonly again = new Set<string>()
  /** Jobs waiting for one of the HOME_JOBS_AT_ONCE pulls, in the order they asked. */
  private readonly queued = new Set<string>()
  private saving: Promise<void> = Promise.resolve()
  private unsubscribe: (() => void) | null = null
  private readonly abort = new AbortController()

  constructor(
    private readonly init: {
      farm: FarmDoc
      blobs: BlobAccess
      file: string
      log: Logger
      /** The first retry's wait (default HOME_RETRY_MS). */
      retryMs?: number
    },
  ) {}

  async start(): Promise<void> {
    try {
      const saved = JSON.parse(await readFile(this.init.file, 'utf8')) as Record<string, HomeEntry>
      for (const [job, e] of Object.entries(saved)) {
        if (typeof e?.dir === 'string') this.homes.set(job, { dir: e.dir, overwrite: e.overwrite === true })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.init.log.error('ignoring unreadable %s: %s', this.init.file, (err as Error).message)
      }
    }
    this.unsubscribe = this.init.farm.onOutputs((job) => {
      if (this.homes.has(job)) this.kick(job)
    })
    for (const job of this.homes.keys()) this.kick(job)
  }

  async stop(): Promise<void> {
    this.unsubscribe?.()
    for (const p of this.pulls.values()) clearTimeout(p.retry)
    this.abort.abort()
    await this.idle()
  }

  /** From now on, `job`'s outputs go to `dir` on this machine. */
  async track(job: string, dir: string, opts: { overwrite?: boolean } = {}): Promise<void> {
    this.homes.set(job, { dir: resolve(dir), overwrite: opts.overwrite === true })
    await this.save()
    this.kick(job)
  }

  /**
   * Pulls a job's outputs into `dir` once, with this node's blobs (`openfarm fetch`, from any peer);
   * `dir` does not become the job's home.
   */
  pullOnce(
    job: string,
    dir: string,
    opts: { signal?: AbortSignal; onOutcome?: (path: string, outcome: PullOutcome) => void } = {},
  ): Promise<PullReport> {
    return pullOutputs(this.init.blobs, this.init.farm.outputs(job), dir, opts)
  }

  home(job: string): { dir: string; report: PullReport | undefined } | undefined {
    const h = this.homes.get(job)
    return h && { dir: h.dir, report: this.pulls.get(job)?.report }
  }

  /** Resolves once no pull runs (tests). */
  async idle(): Promise<void> {
    while (this.runs.size > 0) await Promise.allSettled([...this.runs.values()])
  }

  private kick(job: string): void {
    if (this.abort.signal.aborted) return
    if (this.runs.has(job)) {
      this.again.add(job)
      return
    }
    if (this.runs.size >= HOME_JOBS_AT_ONCE) {
      this.queued.add(job)
      return
    }
    const run = this.pull(job)
      .catch((err: Error) => this.init.log.error('bringing outputs of %s home failed: %s', job, err.message))
      .finally(() => {
        this.runs.delete(job)
        if (this.again.delete(job)) this.kick(job)
        for (const next of this.queued) {
          if (this.runs.size >= HOME_JOBS_AT_ONCE) break
          this.queued.delete(next)
          this.kick(next)
        }
      })
    this.runs.set(job, run)
  }

  private async pull(job: string): Promise<void> {
    const home = this.homes.get(job)
    if (home === undefined) return
    if (this.init.farm.view(job)?.removed === true) {
      // removed: nothing more comes home (what did stays where it is); forgotten at the next kick or start
      this.homes.delete(job)
      clearTimeout(this.pulls.get(job)?.retry)
      this.pulls.delete(job)
      await this.save().catch((err: Error) =>
        this.init.log.error('could not save %s: %s', this.init.file, err.message),
      )
      return
    }
    let pulls = this.pulls.get(job)
    if (pulls === undefined) {
      pulls = { known: new Map(), wrote: new Set(), waiting: new Map() }
      this.pulls.set(job, pulls)
    }
    const { known, wrote, waiting } = pulls
    const started = Date.now()
    const outputs = this.init.farm.outputs(job)
    // what waits for its retry is not tried now (a new record of it is)
    const later = new Set(
      outputs.filter((o) => {
        const w = waiting.get(o.path)
        return w !== undefined && w.hash === o.hash && w.next > started
      }),
    )
    const due = outputs.filter((o) => !later.has(o))
    const report = await pullOutputs(this.init.blobs, due, home.dir, {
      signal: this.abort.signal,
      known,
      wrote,
      overwrite: home.overwrite === true,
    }).catch(
      (err: Error): PullReport => ({
        written: [],
        present: [],
        conflicts: [],
        failed: due.map((o) => ({ path: o.path, reason: err.message })),
      }),
    )
    if (this.abort.signal.aborted) return
    for (const path of [...report.written, ...report.present, ...report.conflicts]) waiting.delete(path)
    this.backOff(job, waiting, due, report.failed, Date.now())
    // a path the job no longer records waits for nothing
    const recorded = new Set(outputs.map((o) => o.path))
    for (const path of [...waiting.keys()]) if (!recorded.has(path)) waiting.delete(path)
    // what waits is reported as not home yet, with why it failed last
    for (const o of later) report.failed.push({ path: o.path, reason: waiting.get(o.path)!.reason })
    pulls.report = report
    if (report.written.length > 0)
      this.init.log('%s: %d outputs home in %s', job, report.written.length, home.dir)
    for (const c of report.conflicts) {
      // said once per file: the same conflict comes back on every later pull of the job
      const key = `${job}/${c}`
      if (this.told.has(key)) continue
      this.told.add(key)
      this.init.log.error(
        '%s: %s already exists in %s with other content: kept, not overwritten',
        job,
        c,
        home.dir,
      )
    }
    this.retryLater(job, pulls)
  }

  /**
   * Sets when each of `failed` (outputs of `due`, tried at `at`) is tried again: after the first wait,
   * then twice as long each time; a new failure is said once per reason.
   */
  private backOff(
    job: string,
    waiting: Map<string, Waiting>,
    due: readonly OutputRecord[],
    failed: PullReport['failed'],
    at: number,
  ): void {
    const hashOf = new Map(due.map((o) => [o.path, o.hash]))
    // newly failing outputs, said once per reason (a job whose directory cannot be written is one line)
    const news = new Map<string, { paths: string[]; delay: number }>()
    for (const { path, reason } of failed) {
      const hash = hashOf.get(path)
      if (hash === undefined) continue
      const before = waiting.get(path)
      const delay =
        before?.hash === hash
          ? Math.min(before.delay * 2, HOME_RETRY_MAX_MS)
          : (this.init.retryMs ?? HOME_RETRY_MS)
      waiting.set(path, { hash, reason, next: at + delay, delay })
      if (before?.hash === hash) continue
      const n = news.get(reason) ?? { paths: [], delay }
      n.paths.push(path)
      news.set(reason, n)
    }
    for (const [reason, { paths, delay }] of news) {
      this.init.log.error(
        '%s: %s did not come home (%s); trying again in %s, then less often',
        job,
        paths.length === 1 ? paths[0] : `${paths.length} outputs (${paths[0]}, ...)`,
        reason,
        delay < 1000 ? `${delay} ms` : `${Math.round(delay / 1000)} s`,
      )
    }
  }

  /** Pulls `job` again when its first waiting output is due. */
  private retryLater(job: string, pulls: JobPulls): void {
    clearTimeout(pulls.retry)
    pulls.retry = undefined
    if (pulls.waiting.size === 0 || this.abort.signal.aborted) return
    const next = Math.min(...[...pulls.waiting.values()].map((w) => w.next))
    pulls.retry = setTimeout(
      () => {
        pulls.retry = undefined
        this.kick(job)
      },
      Math.max(0, next - Date.now()),
    )
    pulls.retry.unref()
  }

  /** Writes homes.json; one write at a time, so an older snapshot never lands after a newer one. */
  private save(): Promise<void> {
    const write = async () => {
      const tmp = `${this.init.file}.${randomBytes(4).toString('hex')}.tmp`
      await writeFile(tmp, JSON.stringify(Object.fromEntries(this.homes), null, 2), { mode: 0o600 })
      await rename(tmp, this.init.file)
    }
    const next = this.saving.then(write, write)
    this.saving = next.catch(() => undefined)
    return next
  }
}
