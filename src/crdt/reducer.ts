// The State Manager's pure core: a task's append-only event set -> the task's view.
// Yjs settles concurrent writes to one map key by client id, not by the auction, so contended task
// state is never a field: it is whatever this function makes of the events. It must give the same
// view for every order of the same events (and for duplicates), which the property tests check.

import {
  type JobEvent,
  type JobSpec,
  type JobState,
  LIMITS,
  type TaskEvent,
  type TaskState,
} from './schema.ts'

/** A task as every peer sees it: its attempt chain (BaseView) under the HOLD/CANCEL overlays. */
export interface TaskView extends Omit<BaseView, 'state'> {
  readonly index: number
  readonly state: TaskState
  /** The attempt's own state under any HOLD/CANCEL overlay: who must stop what. */
  readonly base: BaseView['state']
}

export interface JobControl {
  readonly held: boolean
  readonly cancelled: boolean
  readonly priority: number
  /** Its external condition (manual release, a file) was met. */
  readonly released: boolean
  /** Someone removed it: for good, whatever else was said before or after. */
  readonly removed: boolean
}

/** A total order over events, so that folding a sorted set never depends on arrival order. */
export function compareEvents(x: TaskEvent, y: TaskEvent): number {
  return (
    x.lc - y.lc ||
    cmpStr(x.peer, y.peer) ||
    cmpStr(x.kind, y.kind) ||
    x.attempt - y.attempt ||
    x.task - y.task ||
    cmpStr(x.reason ?? '', y.reason ?? '') ||
    (x.bid ?? 0) - (y.bid ?? 0)
  )
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Best of a non-empty list by the event order (earliest clock, then peer id). */
function first<T extends TaskEvent>(evs: readonly T[]): T | undefined {
  let best: T | undefined
  for (const e of evs) if (best === undefined || compareEvents(e, best) < 0) best = e
  return best
}

/** The winning claim: lowest bid, then lowest peer id (the deterministic tie-break). */
export function bestClaim(claims: readonly TaskEvent[]): TaskEvent | undefined {
  let best: TaskEvent | undefined
  for (const c of claims) {
    if (
      best === undefined ||
      (c.bid ?? 0) < (best.bid ?? 0) ||
      ((c.bid ?? 0) === (best.bid ?? 0) && cmpStr(c.peer, best.peer) < 0)
    ) {
      best = c
    }
  }
  return best
}

/** A peer's best bid in an attempt (a peer may have claimed twice). */
function bidOf(claims: readonly TaskEvent[], peer: string): number | null {
  return bestClaim(claims.filter((c) => c.peer === peer))?.bid ?? null
}

export interface BaseView {
  readonly state: 'QUEUE' | 'CLAIM' | 'RUN' | 'DONE' | 'FAIL'
  /** The current attempt; late events of earlier attempts are fenced off by it. */
  readonly attempt: number
  /** Peer that runs (or is winning the claim for, or finished) the current attempt. */
  readonly owner: string | null
  readonly bid: number | null
  /** Failed attempts since the last user retry. */
  readonly failures: number
  /** Peers whose attempts failed since the last user retry, sorted. */
  readonly failedPeers: readonly string[]
  readonly lastError: string | null
  /** DONE only: the work it took, as its runner measured it (work units), when known. */
  readonly work: number | null
}

/**
 * The attempt chain, ignoring hold/cancel overlays. Attempt A ends with a user retry (A+1, failure
 * count reset), a done (DONE), a fail (A+1, one more failure) or a requeue (A+1: holder dead, task
 * held, lease lost). A done beats a concurrent requeue of the same attempt: the result is real and
 * content-addressed. Start, done and fail count only from a peer that claimed that attempt.
 */
export function reduceAttempts(events: readonly TaskEvent[], maxRetries: number): BaseView {
  const byAttempt = new Map<number, TaskEvent[]>()
  for (const e of events) {
    const list = byAttempt.get(e.attempt)
    if (list === undefined) byAttempt.set(e.attempt, [e])
    else list.push(e)
  }
  let attempt = 0
  let failures = 0
  const failedPeers = new Set<string>()
  let lastError: string | null = null
  for (;;) {
    // past the highest attempt an event can carry (only hostile entries get there: a requeue per
    // attempt up to the limit) no peer could record another claim: the task has failed for good
    if (attempt > LIMITS.attempt) {
      const why = `no attempts left: the task reached the limit of ${LIMITS.attempt}`
      return {
        attempt,
        failures,
        failedPeers: [...failedPeers].sort(),
        lastError: why,
        work: null,
        state: 'FAIL',
        owner: null,
        bid: null,
      }
    }
    const evs = byAttempt.get(attempt) ?? []
    if (evs.some((e) => e.kind === 'requeue' && e.reason === 'retry')) {
      attempt++
      failures = 0
      failedPeers.clear()
      lastError = null
      continue
    }
    const claims = evs.filter((e) => e.kind === 'claim')
    const claimers = new Set(claims.map((e) => e.peer))
    const byClaimer = (kind: TaskEvent['kind']) => evs.filter((e) => e.kind === kind && claimers.has(e.peer))
    const done = first(byClaimer('done'))
    const base = { attempt, failures, failedPeers: [...failedPeers].sort(), lastError, work: null }
    if (done !== undefined) {
      const bid = bidOf(claims, done.peer)
      return { ...base, state: 'DONE', owner: done.peer, bid, work: done.work ?? null }
    }
    const fails = byClaimer('fail')
    if (fails.length > 0) {
      failures++
      for (const f of fails) failedPeers.add(f.peer)
      lastError = first(fails)?.reason ?? 'failed'
      attempt++
      continue
    }
    if (evs.some((e) => e.kind === 'requeue')) {
      attempt++
      continue
    }
    if (failures >= maxRetries) return { ...base, state: 'FAIL', owner: null, bid: null }
    const start = first(byClaimer('start'))
    if (start !== undefined) {
      const bid = bidOf(claims, start.peer)
      return { ...base, state: 'RUN', owner: start.peer, bid }
    }
    const claim = bestClaim(claims)
    if (claim !== undefined) return { ...base, state: 'CLAIM', owner: claim.peer, bid: claim.bid ?? null }
    return { ...base, state: 'QUEUE', owner: null, bid: null }
  }
}

/** Task-level hold/release/cancel, in clock order; a user retry lifts a cancel. */
function taskControl(events: readonly TaskEvent[]): { held: boolean; cancelled: boolean } {
  const ctl = events
    .filter((e) => e.kind === 'hold' || e.kind === 'release' || e.kind === 'cancel' || isRetry(e))
    .sort(compareEvents)
  let held = false
  let cancelled = false
  for (const e of ctl) {
    if (e.kind === 'hold') held = true
    else if (e.kind === 'release') held = false
    else if (e.kind === 'cancel') cancelled = true
    else cancelled = false
  }
  return { held, cancelled }
}

function isRetry(e: TaskEvent): boolean {
  return e.kind === 'requeue' && e.reason === 'retry'
}

export function reduceTask(
  index: number,
  events: readonly TaskEvent[],
  maxRetries: number,
  job: Pick<JobControl, 'held' | 'cancelled'> = { held: false, cancelled: false },
): TaskView {
  const base = reduceAttempts(events, maxRetries)
  const ctl = taskControl(events)
  let state: TaskState = base.state
  if (base.state !== 'DONE') {
    if (ctl.cancelled || job.cancelled) state = 'CANCEL'
    else if (base.state !== 'FAIL' && (ctl.held || job.held)) state = 'HOLD'
  }
  return { index, ...base, base: base.state, state }
}

export function reduceJobControl(spec: Pick<JobSpec, 'priority'>, events: readonly JobEvent[]): JobControl {
  const sorted = [...events].sort(
    (x, y) =>
      x.lc - y.lc || cmpStr(x.peer, y.peer) || cmpStr(x.kind, y.kind) || (x.value ?? 0) - (y.value ?? 0),
  )
  let held = false
  let cancelled = false
  let priority = spec.priority
  let released = false
  let removed = false
  for (const e of sorted) {
    if (e.kind === 'hold') held = true
    else if (e.kind === 'resume') held = false
    else if (e.kind === 'cancel') cancelled = true
    else if (e.kind === 'retry') cancelled = false
    else if (e.kind === 'release') released = true
    else if (e.kind === 'remove') removed = true
    else if (e.value !== undefined) priority = e.value
  }
  return { held, cancelled, priority, released, removed }
}

export type StateCounts = Record<TaskState, number>

export function emptyCounts(): StateCounts {
  return { WAIT: 0, QUEUE: 0, HOLD: 0, CLAIM: 0, RUN: 0, DONE: 0, FAIL: 0, CANCEL: 0 }
}

/**
 * A job's state, derived from its tasks plus HOLD/CANCEL set on the job. It FAILs once `failRatio` of
 * its tasks failed for good (no new task starts; a retry lifts it), or when nothing else can run.
 */
export function jobState(ctl: JobControl, counts: StateCounts, total: number, failRatio = 1): JobState {
  if (counts.DONE === total) return 'DONE'
  if (ctl.cancelled) return 'CANCEL'
  const active = counts.QUEUE + counts.CLAIM + counts.RUN + counts.WAIT
  if (counts.FAIL > 0 && (active === 0 || counts.FAIL >= Math.ceil(failRatio * total))) return 'FAIL'
  if (ctl.held) return 'HOLD'
  if (counts.RUN + counts.CLAIM > 0) return 'RUN'
  if (counts.WAIT > 0 && counts.WAIT === active) return 'WAIT'
  if (counts.DONE > 0 && active > 0) return 'RUN'
  if (active > 0) return 'QUEUE'
  if (counts.CANCEL > 0) return 'CANCEL'
  if (counts.HOLD > 0) return 'HOLD'
  return 'QUEUE'
}
