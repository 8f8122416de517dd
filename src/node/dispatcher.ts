// The Task Dispatcher loop of one peer: reads the farm document, runs the pure assignment over the
// ready tasks and the live hosts, claims only what is assigned to itself, starts what it won after
// the settle window, and stops (or hands back) what it no longer holds. It writes events only; the
// reducer decides what they mean, identically on every peer.

import type { Logger } from '@libp2p/interface'
import type { FarmDoc, NewTaskEvent } from '../crdt/farmdoc.ts'
import type { JobView } from '../crdt/jobview.ts'
import type { JobSpec } from '../crdt/schema.ts'
import type { Liveness, RunningTask } from '../protocol/heartbeat/index.ts'
import { drainTime, schedule } from '../sched/auction.ts'
import { freeSeats, readyQueue } from '../sched/ready.ts'
import type { SchedHost } from '../sched/types.ts'
import { keyOf, lostBecause, orphanRequeues } from './orphanscan.ts'
import { holdingSlots, runningTask, type SlotRun, type SlotTimes, slotTimes } from './slots.ts'
import { type Placed, Stalls } from './stalls.ts'
import type { ExecResult, Execute, Stager } from './taskrun.ts'

/** This host as the auction sees it, less its slots (the dispatcher knows those best). */
export type SelfHost = Omit<SchedHost, 'slotFreeIn'>

export interface DispatcherInit {
  readonly farm: FarmDoc
  readonly slots: number
  /** This host now; null while it takes no work (outside its availability window). */
  readonly self: () => SelfHost | null
  /** Other hosts that may be offered work (alive and available ones). */
  readonly hosts: () => SchedHost[]
  /** Liveness of another peer as this node sees it; 'unknown' when never heard from. */
  readonly liveness: (peer: string) => Liveness | 'unknown'
  readonly execute: Execute
  /** Gets each claimed task ready from its claim on (see Stager); none: the run does it all. */
  readonly stager?: Stager
  readonly settleMs: number
  /**
   * How long before a running task's estimated end this node may claim the task its slot gets next,
   * so the settle window runs while the slot is still busy and the next task starts the moment the
   * slot frees (0: claim only for a free slot). Never for a task past its estimate.
   */
  readonly claimAheadMs?: number
  /** After this long up, a claimant never heard from counts as dead. */
  readonly deadAfterMs: number
  /**
   * True once this node's replica has caught up with a peer's (one full document sync). Until then
   * it claims nothing: a node restarted from its disk would otherwise claim, with a fresh bid, an
   * attempt another peer already requeued from it and runs, and both would run it. A node that hears
   * no other host and has no connection claims after ALONE_GRACE_MS; any node after deadAfterMs (a
   * sync that never completes must not stop its work for good). Without it, claims start at once.
   */
  readonly caughtUp?: () => boolean
  /** Whether this node is connected to any peer now (a connected node is not alone, heard or not). */
  readonly connected?: () => boolean
  /** Monotonic clock, ms. */
  readonly now: () => number
  /** Wall clock, ms since the epoch: only for jobs' not-before times. */
  readonly wallNow: () => number
  readonly log: Logger
  /** A task ran for `actual` seconds where the estimate said `expected` (speed refinement). */
  readonly onTimed?: (expectedSeconds: number, actualSeconds: number) => void
  /** Called when the runs holding this node's slots change (announce it at once: see slots.ts). */
  readonly onRunningChange?: () => void
  /** See stalls.ts (STALL_MS, STALL_COOLDOWN_MS). */
  readonly stallMs?: number
  readonly stallCooldownMs?: number
}

/** A run of a task on this node: what its slot needs to know (slots.ts), and how to stop it. */
interface Run extends SlotRun {
  readonly abort: AbortController
  readonly done: Promise<void>
}

/** How long a node that hears no other host waits for one before it claims work alone. */
export const ALONE_GRACE_MS = 2_000

/**
 * How long a task claimed ahead waits for its slot past its settle window and claimAheadMs (by when
 * the slot was due to free, had the task before it kept to its estimate), before it is given back.
 */
export const CLAIM_AHEAD_WAIT_MS = 2_000

export class Dispatcher {
  private readonly init: DispatcherInit
  private readonly running = new Map<string, Run>()
  private readonly claimed = new Map<
    string,
    { job: string; task: number; attempt: number; at: number; expectedSeconds: number }
  >()
  private readonly startedAt: number
  /**
   * Ends of runs (done, fail, hand-back) not in the document yet: the next pass records them in one
   * update with what it starts in the slots they free (a worker's task end and its next start).
   */
  private readonly ended: { job: string; key: string; event: NewTaskEvent }[] = []
  private scheduled = false
  /** A run's processes ended: the next pass writes the output records that wait, events or not. */
  private outputsDue = false
  private timer: ReturnType<typeof setTimeout> | undefined
  private stopped = false
  private caughtUp = false
  private readonly onUpdate = () => this.schedule()
  /** Hosts that won tasks and left them unclaimed: out of this node's auction for a while. */
  readonly stalls: Stalls

  constructor(init: DispatcherInit) {
    this.init = init
    this.startedAt = init.now()
    this.stalls = new Stalls(init.log, init.stallMs, init.stallCooldownMs)
  }

  start(): void {
    this.init.farm.doc.on('update', this.onUpdate)
    this.tick()
  }

  /** Stops claiming; aborts what runs and hands it back to the farm, with what it claimed. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.init.farm.doc.off('update', this.onUpdate)
    for (const r of this.running.values()) r.abort.abort(new Error('node shutting down'))
    // a claim still ours (one settling, or one claimed ahead of a busy slot) would wait for this host
    // to be declared dead (--dead-after) before another took it: it goes back now
    const append = new Map<string, NewTaskEvent[]>()
    for (const c of this.claimed.values()) {
      const back = this.handBack(c.job, c.task, c.attempt)
      if (back !== undefined) addEvent(append, c.job, back)
    }
    const cleared = [...this.claimed.keys()].map((key) => this.forgetClaim(key))
    await Promise.all([...this.running.values()].map((r) => r.done))
    await Promise.all(cleared)
    await this.init.stager?.settled?.()
    // no pass runs any more: what ended goes now
    this.takeEnded(append)
    this.record(append)
  }

  /** What holds this node's slots (for its heartbeat): a run whose processes have exited does not. */
  runningTasks(): RunningTask[] {
    const now = this.init.now()
    return this.holdingSlots().map((r) => runningTask(r, now))
  }

  /** Seconds until each slot is free, and those of the slots that may take a claim now (see slotTimes). */
  private slotTimes(now: number): SlotTimes {
    return slotTimes(this.holdingSlots(), this.claimed.values(), {
      slots: this.init.slots,
      claimAheadMs: this.init.claimAheadMs ?? 0,
      now,
    })
  }

  freeSlots(): number {
    return Math.max(0, this.init.slots - this.holdingSlots().length - this.claimed.size)
  }

  /** The runs that hold a slot (see holdingSlots). */
  private holdingSlots(): Run[] {
    return holdingSlots(this.running.values(), this.init.slots)
  }

  /** Run a pass soon (coalesces bursts of updates into one pass). */
  schedule(): void {
    if (this.scheduled || this.stopped) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.pass()
    })
  }

  /**
   * The periodic pass (liveness, requeues, and a claim ahead whose slot stayed busy too long: given
   * back within a second of its time). What a claim waits for otherwise asks for its own pass: its
   * settle window's end (a timer set at the claim), its slot freeing (the run's end), a rival's bid
   * (the document's update). Polling every settle window while a claim waits for its slot would be a
   * pass every 50 ms for nothing, for up to claimAheadMs.
   */
  private tick(): void {
    if (this.stopped) return
    this.schedule()
    this.timer = setTimeout(() => this.tick(), 1_000)
    this.timer.unref?.()
  }

  private pass(): void {
    if (this.stopped) return
    const views = this.init.farm.views()
    const byId = new Map(views.map((v) => [v.id, v]))
    const append = new Map<string, NewTaskEvent[]>()
    const add: AddEvent = (job, e) => addEvent(append, job, e)
    // what ended since the last pass: recorded first, and not taken for attempts nothing here runs
    const ending = this.takeEnded(append)
    const now = this.init.now()
    const up = now - this.startedAt
    const others = this.init.hosts()
    this.stopLost(byId)
    const gaveBack = this.settleClaims(byId, now, add)
    // 3. attempts held here that nothing runs, and attempts held by dead peers (orphanscan.ts)
    const recorded = new Set([...ending, ...gaveBack])
    orphanRequeues(
      views,
      {
        me: this.init.farm.peer,
        here: (key) => this.running.has(key) || this.claimed.has(key) || recorded.has(key),
        liveness: this.init.liveness,
        up,
        deadAfterMs: this.init.deadAfterMs,
        hearsOthers: others.length > 0,
        log: this.init.log,
      },
      add,
    )
    // a claim is decided when its settle window closes: look again right then
    if (this.claimNew(views, byId, now, up, others, add))
      setTimeout(() => this.schedule(), this.init.settleMs + 1).unref?.()
    this.record(append)
  }

  /** 1. What runs here and is no longer ours stops. */
  private stopLost(byId: ReadonlyMap<string, JobView>): void {
    const me = this.init.farm.peer
    for (const r of this.running.values()) {
      const job = byId.get(r.job)
      const v = job?.tasks[r.task]
      if (v === undefined || v.attempt !== r.attempt || v.owner !== me || v.state !== 'RUN') {
        r.abort.abort(new Error(lostBecause(v, r.attempt, me, job)))
      }
    }
  }

  /** 2. Claims past the settle window: start what we won, forget what we lost; returns the keys given back. */
  private settleClaims(byId: ReadonlyMap<string, JobView>, now: number, add: AddEvent): Set<string> {
    const { farm, log } = this.init
    let slotsLeft = this.init.slots - this.holdingSlots().length
    const gaveBack = new Set<string>()
    for (const [key, c] of this.claimed) {
      const job = byId.get(c.job)
      const v = job?.tasks[c.task]
      if (job === undefined || v === undefined || v.attempt !== c.attempt || v.state !== 'CLAIM') {
        this.forgetClaim(key)
      } else if (v.owner !== farm.peer) {
        this.forgetClaim(key)
        log('withdrew from %s: %s bid better', key, v.owner)
      } else if (now - c.at >= this.init.settleMs && slotsLeft > 0) {
        this.claimed.delete(key)
        slotsLeft--
        add(c.job, { kind: 'start', task: c.task, attempt: c.attempt })
        this.launch(job.spec, c.task, c.attempt, c.expectedSeconds)
      } else if (now - c.at >= this.init.settleMs + (this.init.claimAheadMs ?? 0) + CLAIM_AHEAD_WAIT_MS) {
        // claimed ahead, but the task before it ran well past its estimate: let the farm place it again
        this.forgetClaim(key)
        gaveBack.add(key)
        log('gave back %s: no slot free %d ms after claiming it', key, Math.round(now - c.at))
        for (const r of this.running.values()) r.noClaimAhead = true // not again behind these
        add(c.job, { kind: 'requeue', task: c.task, attempt: c.attempt, reason: 'slot busy' })
      }
    }
    return gaveBack
  }

  /**
   * 4. New claims: what the auction gives this peer, among the placements that start now, or on a
   *    slot of ours within claimAheadMs of its task's estimated end. True if it claimed any.
   */
  private claimNew(
    views: readonly JobView[],
    byId: ReadonlyMap<string, JobView>,
    now: number,
    up: number,
    others: readonly SchedHost[],
    add: AddEvent,
  ): boolean {
    const { farm } = this.init
    const me = farm.peer
    const times = this.slotTimes(now)
    const soon = times.soon
    const free = this.mayClaim(up, others.length > 0) ? soon.length : 0
    const self = free > 0 ? this.init.self() : null
    if (self === null) {
      this.stalls.reset()
      return false
    }
    let claimed = false
    const hosts: SchedHost[] = [{ ...self, slotFreeIn: times.freeIn }, ...this.stalls.eligible(others, now)]
    const freeNow = hosts.reduce((n, h) => n + h.slotFreeIn.filter((x) => x === 0).length, 0)
    const { tasks, queuedWork } = readyQueue(views, this.init.wallNow(), freeNow + 2 * hosts.length)
    const licenses = freeSeats(views, farm.licenses())
    const drainIn = drainTime(hosts, queuedWork)
    // claiming ahead needs placements that start later too (schedule() stops at what starts now)
    const later = soon.some((x) => x > 0) ? { maxTasks: tasks.length } : {}
    const licensed = new Set(tasks.filter((t) => t.license !== null).map((t) => t.key))
    const placed: Placed[] = []
    for (const p of schedule({ tasks, hosts, licenses, drainIn, ...later })) {
      const [job, index] = splitKey(p.key)
      const view = byId.get(job)
      const v = view?.tasks[index]
      if (view === undefined || v === undefined) continue
      // starts now, or at the end of one of our soon-free slots (a placement starts when its slot
      // frees); a licensed task only now, when the plan counted a seat free for it
      const ahead = p.start > 0
      if (p.peer !== me) {
        if (!ahead) placed.push({ peer: p.peer, key: `${p.key}/${v.attempt}` })
        continue
      }
      if (ahead && licensed.has(p.key)) continue
      // an earlier attempt of it still ends here (its processes being stopped, or its outputs
      // stored): not two runs of one task on this node; it is placed again once that one is gone
      if (this.running.has(p.key)) continue
      if (!soon.some((x) => Math.abs(x - p.start) < 1e-9)) continue
      add(job, { kind: 'claim', task: index, attempt: v.attempt, bid: p.bid })
      claimed = true
      this.claimed.set(p.key, {
        job,
        task: index,
        attempt: v.attempt,
        at: now,
        expectedSeconds: p.finish - p.start,
      })
      // its work directory and inputs while the claim settles (and its slot frees): the fetch no
      // longer waits for the settle window; a claim lost after all has them cleared (forgetClaim)
      this.init.stager?.stage(view.spec, index, v.attempt)
    }
    // a host left out now: its tasks go to the next best hosts in a pass at once, not at the next tick
    if (this.stalls.observe(placed, now)) this.schedule()
    return claimed
  }

  /** Moves the ends not recorded yet into `append`, in their order; returns their task keys. */
  private takeEnded(append: Map<string, NewTaskEvent[]>): Set<string> {
    const keys = new Set<string>()
    for (const e of this.ended.splice(0)) {
      keys.add(e.key)
      addEvent(append, e.job, e.event)
    }
    return keys
  }

  /**
   * The events of a pass, all jobs in one update, with this node's output records that wait
   * (FarmDoc.recordOutput's deferMs): a chunk's frames go with its slot's next start.
   */
  private record(append: Map<string, NewTaskEvent[]>): void {
    const outputs = this.outputsDue
    this.outputsDue = false
    if (append.size === 0 && !outputs) return
    const { farm, log } = this.init
    farm.transact(() => {
      farm.flushOutputs()
      for (const [job, events] of append) {
        try {
          farm.appendTaskEvents(job, events)
        } catch (err) {
          log.error('could not record events of %s: %s', job, (err as Error).message)
        }
      }
    })
  }

  /** A claim that will not run here: what was got ready for it goes. */
  private forgetClaim(key: string): Promise<void> {
    const c = this.claimed.get(key)
    this.claimed.delete(key)
    // every claim is staged from the moment it is made, when there is a stager
    if (c === undefined || this.init.stager === undefined) return Promise.resolve()
    return this.init.stager.unstage(c.job, c.task, c.attempt).catch((err: Error) => {
      this.init.log.error('could not clear what was got ready for %s: %s', key, err.message)
    })
  }

  /** The start-up gate on claims (DispatcherInit.caughtUp); once open it stays open. */
  private mayClaim(up: number, hearsOthers: boolean): boolean {
    if (this.caughtUp) return true
    const caughtUp = this.init.caughtUp
    if (
      caughtUp === undefined ||
      caughtUp() ||
      (!hearsOthers && this.init.connected?.() !== true && up >= ALONE_GRACE_MS) ||
      up >= this.init.deadAfterMs
    ) {
      this.caughtUp = true
      return true
    }
    return false
  }

  private launch(spec: JobSpec, task: number, attempt: number, expectedSeconds: number): void {
    const key = keyOf(spec.id, task)
    const abort = new AbortController()
    const startedAt = this.init.now()
    const done = (async () => {
      let result: ExecResult
      // this run's entry (a later run of the same task has its own controller)
      const ours = () => {
        const run = this.running.get(key)
        return run?.abort === abort ? run : undefined
      }
      try {
        result = await this.init.execute(
          spec,
          task,
          attempt,
          abort.signal,
          (p) => {
            const run = ours()
            if (run === undefined) return
            const ending = p.fraction >= 1 && (run.progress?.fraction ?? 0) < 1
            run.progress = p
            // all its progress reported: the slot may take a claim ahead now (slotTimes), so look now
            // rather than at the next tick or whenever some update happens to arrive
            if (ending) this.schedule()
          },
          () => {
            const run = ours()
            if (run === undefined || run.releasedAt !== undefined) return
            // its processes have exited: the slot's next task starts now, while this one publishes
            run.releasedAt = this.init.now()
            this.outputsDue = true
            this.init.onRunningChange?.()
            this.schedule()
          },
        )
      } catch (err) {
        result = { ok: false, reason: (err as Error).message }
      }
      // the work it took ends with its processes, not with the publishing of its outputs
      const run = ours()
      const seconds = ((run?.releasedAt ?? this.init.now()) - startedAt) / 1000
      const held = this.holdingSlots()
      if (run !== undefined) this.running.delete(key)
      // a run that only published its outputs held no slot: what the heartbeat says is the same
      if (!sameRuns(held, this.holdingSlots())) this.init.onRunningChange?.()
      let event: NewTaskEvent | undefined
      if (abort.signal.aborted) event = this.handBack(spec.id, task, attempt)
      else if (!result.ok)
        event = { kind: 'fail', task, attempt, reason: (result.reason ?? 'failed').slice(0, 500) }
      else {
        // the work it took, in units a speed-1 host would need seconds for: what estimates learn from
        const work = Math.round(seconds * (this.init.self()?.speed ?? 1) * 1000) / 1000
        event = { kind: 'done', task, attempt, work }
        this.init.onTimed?.(expectedSeconds, seconds)
      }
      // recorded by the next pass (or by stop), in one update with what starts in the freed slot
      if (event !== undefined) this.ended.push({ job: spec.id, key, event })
      this.schedule()
    })()
    this.running.set(key, {
      job: spec.id,
      task,
      attempt,
      abort,
      done,
      startedAt,
      expectedSeconds,
      progress: undefined,
    })
    this.init.onRunningChange?.()
  }

  /** An aborted run: if the attempt is still ours (hold, cancel, shutdown), give it back. */
  private handBack(job: string, task: number, attempt: number): NewTaskEvent | undefined {
    const v = this.init.farm.view(job)?.tasks[task]
    if (v === undefined || v.attempt !== attempt || v.owner !== this.init.farm.peer) return undefined
    if (v.base !== 'RUN' && v.base !== 'CLAIM') return undefined
    return { kind: 'requeue', task, attempt, reason: this.stopped ? 'shutdown' : v.state.toLowerCase() }
  }
}

type AddEvent = (job: string, e: NewTaskEvent) => void

const sameRuns = (a: readonly Run[], b: readonly Run[]): boolean =>
  a.length === b.length && a.every((r, i) => r === b[i])

function addEvent(append: Map<string, NewTaskEvent[]>, job: string, e: NewTaskEvent): void {
  const list = append.get(job)
  if (list === undefined) append.set(job, [e])
  else list.push(e)
}

function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf('/')
  return [key.slice(0, i), Number(key.slice(i + 1))]
}
