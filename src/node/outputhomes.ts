// Outputs go home: the submitting node pulls each output a worker records into the job's output
// directory as soon as it is recorded (and, after a restart, whatever it missed while away), job by
// job, an output that did not come home tried again less and less often. The pulling itself, and
// the path checks, are homes.ts's.

import { randomBytes } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Logger } from '@libp2p/interface'
import type { FarmDoc } from '../crdt/farmdoc.ts'
import type { OutputRecord } from '../crdt/files.ts'
import { type BlobAccess, type PullOptions, type PullReport, pullOutputs } from './homes.ts'

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
    opts: Pick<PullOptions, 'signal' | 'onOutcome' | 'overwrite'> = {},
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
