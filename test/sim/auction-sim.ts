// The auction as a farm runs it, on a virtual clock. Every peer runs the same schedule() on its own
// view (the facts it has received) when that view changes, claims only the placements that start now
// on itself, and after the settle window starts the task if its claim is the best it knows of, else
// withdraws. A running peer stops when it learns it lost the task (lease loss). Crashed peers fall
// silent; whoever sweeps after the dead threshold requeues what they held (bumping the attempt).
// Peers whose views agree at the same decision tick share one schedule() call (a pure function of
// the same input); the tick is the node's debounce.

import { schedule } from '../../src/sched/auction.ts'
import { EventQueue } from './heap.ts'
import { InputBuilder, jobIndex } from './input.ts'
import type { SimHost, Workload } from './model.ts'
import { type LivenessSpec, type NetSpec, Network } from './net.ts'
import { CLAIM, catchUp, DONE, type Fact, type HostFact, QUEUE, RUN, type SlotState, View } from './view.ts'

export interface AuctionSpec {
  /** Settle window of a claim, seconds. */
  readonly settle: number
  /** Decision grid, seconds: a peer whose view changed decides at the next multiple. */
  readonly tick: number
  /** A live peer (round robin) sweeps for attempts of dead holders this often, seconds. */
  readonly sweep: number
  readonly net: NetSpec
  readonly live: LivenessSpec
  readonly crashes: readonly { readonly peer: number; readonly at: number }[]
  /** Stop here; tasks not done by then are lost. */
  readonly horizon: number
}

export type Outcome = 'running' | 'done' | 'aborted' | 'crashed'

export interface Execution {
  readonly task: number
  readonly peer: number
  readonly attempt: number
  readonly start: number
  end: number
  outcome: Outcome
}

export interface AuctionRun {
  readonly executions: readonly Execution[]
  readonly doneAt: Float64Array
  readonly firstStart: Float64Array
  /** Time of the last done, or the horizon when something was never done. */
  readonly end: number
  readonly done: number
  /** Wall time of each schedule() call, microseconds (measurement only: never read by the sim). */
  readonly decisionsUs: readonly number[]
  readonly sharedDecisions: number
  readonly claims: number
  readonly withdrawals: number
  readonly requeues: number
}

type Slot = { kind: 'free' } | { kind: 'claim'; task: number; attempt: number; at: number } | { kind: 'run'; exec: Execution }

type Ev =
  | { at: number; kind: 'tick'; k: number }
  | { at: number; kind: 'settle'; peer: number; slot: number }
  | { at: number; kind: 'finish' | 'lease'; exec: Execution }
  | { at: number; kind: 'crash'; peer: number }
  | { at: number; kind: 'sweep' | 'wake' }

interface PeerState {
  alive: boolean
  version: number
  readonly slots: Slot[]
}

const FREE: Slot = { kind: 'free' }

export function runAuction(hosts: readonly SimHost[], work: Workload, spec: AuctionSpec, seed: number): AuctionRun {
  return new AuctionSim(hosts, work, spec, seed).run()
}

class AuctionSim {
  private readonly q = new EventQueue<Ev>()
  private readonly net: Network
  private readonly builder: InputBuilder
  private readonly truth: View
  private readonly views: View[]
  private readonly peers: PeerState[]
  private readonly facts: Fact[] = []
  private readonly idle = new Set<number>()
  private readonly running = new Map<number, Execution[]>()
  private readonly taskOf = new Map<string, number>()
  private readonly ticks = new Map<number, Set<number>>()
  private tickDone = -1
  private cache = new Map<string, Map<string, { key: string; bid: number }[]>>()
  private now = 0
  private rr = -1
  private finished = false
  private readonly out = {
    executions: [] as Execution[],
    decisionsUs: [] as number[],
    sharedDecisions: 0,
    claims: 0,
    withdrawals: 0,
    requeues: 0,
  }
  private readonly doneAt: Float64Array
  private readonly firstStart: Float64Array

  constructor(
    private readonly hosts: readonly SimHost[],
    private readonly work: Workload,
    private readonly spec: AuctionSpec,
    seed: number,
  ) {
    this.net = new Network(spec.net, spec.live, hosts.length, seed)
    this.builder = new InputBuilder(hosts, work, this.net, spec.settle)
    const initial: HostFact[] = hosts.map((h) => ({ host: h.index, version: 0, slots: Array(h.slots).fill(null) }))
    const estimate = Float64Array.from(work.tasks, (t) => t.estimate)
    const jobOf = jobIndex(work)
    const remaining = new Float64Array(work.jobs.length)
    for (const t of work.tasks) remaining[jobOf[t.index]!]! += t.estimate
    const newView = () => new View(initial, jobOf, estimate, remaining)
    this.truth = newView()
    this.views = hosts.map(() => (this.net.shared ? this.truth : newView()))
    this.peers = hosts.map((h) => ({ alive: true, version: 0, slots: Array.from({ length: h.slots }, () => FREE) }))
    for (const t of work.tasks) this.taskOf.set(t.key, t.index)
    this.doneAt = new Float64Array(work.tasks.length).fill(Number.NaN)
    this.firstStart = new Float64Array(work.tasks.length).fill(Number.NaN)
  }

  run(): AuctionRun {
    for (const h of this.hosts) this.idle.add(h.index)
    this.q.push({ at: 0, kind: 'wake' })
    for (const at of new Set(this.work.tasks.map((t) => t.readyAt))) this.q.push({ at, kind: 'wake' })
    for (const at of this.net.livenessEdges()) this.q.push({ at, kind: 'wake' })
    for (const c of this.spec.crashes) this.q.push({ at: c.at, kind: 'crash', peer: c.peer })
    this.q.push({ at: this.spec.sweep, kind: 'sweep' })
    let end = this.spec.horizon
    while (!this.finished) {
      const ev = this.q.pop()
      if (ev === undefined || ev.at > this.spec.horizon) break
      this.now = ev.at
      this.dispatch(ev)
      if (this.finished) end = this.now
    }
    return { ...this.out, doneAt: this.doneAt, firstStart: this.firstStart, end, done: this.truth.doneCount }
  }

  private dispatch(ev: Ev): void {
    switch (ev.kind) {
      case 'tick':
        return this.tick(ev.k)
      case 'settle':
        return this.settle(ev.peer, ev.slot)
      case 'finish':
        return this.finish(ev.exec)
      case 'lease':
        return this.lease(ev.exec)
      case 'crash':
        return this.crash(ev.peer)
      case 'sweep':
        return this.sweep()
      case 'wake':
        for (const p of this.idle) this.want(p, this.now)
    }
  }

  private viewOf(p: number): View {
    const v = this.views[p]!
    if (v !== this.truth) catchUp(v, this.facts, this.now, (f) => this.net.deliver(f.id, f.t, f.origin, p))
    return v
  }

  /** `p` should run the scheduler at the first decision tick at or after `at`. */
  private want(p: number, at: number): void {
    let k = Math.ceil(at / this.spec.tick - 1e-9)
    if (k <= this.tickDone) k = this.tickDone + 1
    let set = this.ticks.get(k)
    if (set === undefined) {
      set = new Set()
      this.ticks.set(k, set)
      this.q.push({ at: k * this.spec.tick, kind: 'tick', k })
    }
    set.add(p)
  }

  private tick(k: number): void {
    const set = this.ticks.get(k)!
    this.ticks.delete(k)
    this.tickDone = k
    this.cache = new Map()
    for (const p of [...set].sort((a, b) => a - b)) this.decide(p)
  }

  private decide(p: number): void {
    const ps = this.peers[p]!
    if (!ps.alive) return
    let slot = ps.slots.findIndex((s) => s.kind === 'free')
    if (slot < 0) return
    const view = this.viewOf(p)
    const key = `${view.key()}|${this.net.livenessKey(p, this.now)}`
    let mine = this.cache.get(key)
    if (mine === undefined) {
      const input = this.builder.build(view, p, this.now)
      const t0 = performance.now()
      const placements = schedule(input)
      this.out.decisionsUs.push((performance.now() - t0) * 1000)
      mine = new Map()
      for (const pl of placements) {
        if (pl.start !== 0) continue
        const list = mine.get(pl.peer)
        if (list === undefined) mine.set(pl.peer, [pl])
        else list.push(pl)
      }
      this.cache.set(key, mine)
    } else this.out.sharedDecisions++
    for (const pl of mine.get(this.hosts[p]!.peer) ?? []) {
      const k = this.taskOf.get(pl.key)!
      if (view.stage[k] !== QUEUE) continue
      ps.slots[slot] = { kind: 'claim', task: k, attempt: view.attempt[k]!, at: this.now }
      this.emit({ origin: p, kind: 'claim', task: k, attempt: view.attempt[k]!, value: pl.bid }, false)
      this.q.push({ at: this.now + this.spec.settle, kind: 'settle', peer: p, slot })
      this.out.claims++
      slot = ps.slots.findIndex((s) => s.kind === 'free')
      if (slot < 0) break
    }
    this.updateIdle(p)
  }

  private settle(p: number, slot: number): void {
    const ps = this.peers[p]!
    const s = ps.slots[slot]!
    if (!ps.alive || s.kind !== 'claim') return
    const view = this.viewOf(p)
    const k = s.task
    if (view.attempt[k] === s.attempt && view.stage[k] === CLAIM && view.claimPeer[k] === p) {
      const exec: Execution = { task: k, peer: p, attempt: s.attempt, start: this.now, end: Number.NaN, outcome: 'running' }
      this.out.executions.push(exec)
      const list = this.running.get(k)
      if (list === undefined) this.running.set(k, [exec])
      else list.push(exec)
      if (!(this.firstStart[k]! <= this.now)) this.firstStart[k] = this.now
      ps.slots[slot] = { kind: 'run', exec }
      this.emit({ origin: p, kind: 'start', task: k, attempt: s.attempt, value: this.now }, false)
      const dur = this.work.tasks[k]!.work / this.hosts[p]!.speed
      this.q.push({ at: this.now + dur, kind: 'finish', exec })
    } else {
      this.out.withdrawals++
      this.release(p, slot)
    }
  }

  private finish(exec: Execution): void {
    const p = exec.peer
    const ps = this.peers[p]!
    if (!ps.alive || exec.outcome !== 'running') return
    this.stop(exec, 'done')
    ps.slots[ps.slots.findIndex((s) => s.kind === 'run' && s.exec === exec)] = FREE
    this.emit({ origin: p, kind: 'done', task: exec.task, attempt: exec.attempt, value: 0 }, true)
    this.updateIdle(p)
    this.want(p, this.now)
  }

  /** A running peer learns something about its task: it stops if the task is no longer its own. */
  private lease(exec: Execution): void {
    const p = exec.peer
    if (exec.outcome !== 'running' || !this.peers[p]!.alive) return
    const view = this.viewOf(p)
    const k = exec.task
    if (view.stage[k] !== DONE && view.attempt[k] === exec.attempt && view.runPeer[k] === p) return
    this.stop(exec, 'aborted')
    const slot = this.peers[p]!.slots.findIndex((s) => s.kind === 'run' && s.exec === exec)
    this.release(p, slot)
  }

  private release(p: number, slot: number): void {
    this.peers[p]!.slots[slot] = FREE
    this.emit({ origin: p, kind: 'host', task: -1, attempt: 0, value: 0 }, true)
    this.updateIdle(p)
    this.want(p, this.now)
  }

  private stop(exec: Execution, outcome: Outcome): void {
    exec.end = this.now
    exec.outcome = outcome
    const list = this.running.get(exec.task)!
    list.splice(list.indexOf(exec), 1)
  }

  private crash(p: number): void {
    const ps = this.peers[p]!
    if (!ps.alive) return
    ps.alive = false
    for (const s of ps.slots) if (s.kind === 'run') this.stop(s.exec, 'crashed')
    this.idle.delete(p)
    this.net.crashAt[p] = this.now
    for (const at of this.net.crashEdges(p, this.now)) this.q.push({ at, kind: 'wake' })
  }

  /** One live peer looks for attempts held by peers it judges dead and requeues them. */
  private sweep(): void {
    const n = this.peers.length
    for (let i = 0; i < n; i++) {
      this.rr = (this.rr + 1) % n
      if (this.peers[this.rr]!.alive) break
    }
    const p = this.rr
    const view = this.viewOf(p)
    for (let k = view.advanceLwm(); k < view.stage.length; k++) {
      const st = view.stage[k]!
      if (st !== CLAIM && st !== RUN) continue
      const holder = st === RUN ? view.runPeer[k]! : view.claimPeer[k]!
      if (holder === p || !this.net.dead(p, holder, this.now)) continue
      this.out.requeues++
      this.emit({ origin: p, kind: 'requeue', task: k, attempt: view.attempt[k]!, value: 0 }, true)
    }
    this.q.push({ at: this.now + this.spec.sweep, kind: 'sweep' })
  }

  private updateIdle(p: number): void {
    const ps = this.peers[p]!
    if (ps.alive && ps.slots.some((s) => s.kind === 'free')) this.idle.add(p)
    else this.idle.delete(p)
  }

  private announce(p: number): HostFact {
    const ps = this.peers[p]!
    ps.version++
    const slots = ps.slots.map((s): SlotState | null => {
      if (s.kind === 'free') return null
      if (s.kind === 'claim') return { task: s.task, attempt: s.attempt, since: s.at, run: false }
      return { task: s.exec.task, attempt: s.exec.attempt, since: s.exec.start, run: true }
    })
    return { host: p, version: ps.version, slots }
  }

  /** Records a fact; `trigger`: it can change another peer's decision (a task done or ready, a host free). */
  private emit(f: Omit<Fact, 'id' | 't' | 'host'>, trigger: boolean): void {
    const fact: Fact = { ...f, id: this.facts.length, t: this.now, host: this.announceIfOwn(f) }
    this.facts.push(fact)
    const wasDone = f.task >= 0 && this.truth.stage[f.task] === DONE
    this.truth.apply(fact)
    const deliver = (q: number) => (this.net.shared ? this.now : this.net.deliver(fact.id, fact.t, fact.origin, q))
    if (trigger) for (const q of this.idle) this.want(q, deliver(q))
    if (f.task < 0 || f.kind === 'claim') return
    for (const exec of this.running.get(f.task) ?? []) {
      if (exec.peer !== f.origin) this.q.push({ at: deliver(exec.peer), kind: 'lease', exec })
    }
    if (!wasDone && this.truth.stage[f.task] === DONE) {
      this.doneAt[f.task] = this.now
      if (this.truth.doneCount === this.work.tasks.length) this.finished = true
    }
  }

  /** Facts a peer makes about its own slots carry its new host state; a requeue does not. */
  private announceIfOwn(f: Omit<Fact, 'id' | 't' | 'host'>): HostFact | null {
    return f.kind === 'requeue' ? null : this.announce(f.origin)
  }
}
