// The auction as a farm runs it, on a virtual clock. Each peer runs the same schedule() on its own view
// when it changes, claims only its own start-now placements, and after the settle window starts what
// its claim won (else withdraws); a runner stops when it learns it lost the task (lease loss). Crashed
// peers fall silent; a sweeping peer requeues what they held after the dead threshold. Peers with equal
// views at one decision tick (the node's debounce) share one schedule() call: same input, same output.

import type { Placement } from '../../src/sched/types.ts'
import {
  type AuctionRun,
  type AuctionSpec,
  type ExecOutcome,
  type Execution,
  execution,
} from './auction-types.ts'
import { Decider } from './decide.ts'
import { EventQueue } from './heap.ts'
import { InputBuilder } from './input.ts'
import type { SimHost, Workload } from './model.ts'
import { Network } from './net.ts'
import { FREE, PeerState } from './peer.ts'
import { CLAIM, catchUp, DONE, type Fact, type HostFact, QUEUE, RUN, View } from './view.ts'

type Ev =
  | { at: number; kind: 'tick'; k: number }
  | { at: number; kind: 'settle'; peer: number; slot: number }
  | { at: number; kind: 'finish' | 'lease'; exec: Execution }
  | { at: number; kind: 'crash'; peer: number }
  | { at: number; kind: 'sweep' | 'wake' }

export function runAuction(
  hosts: readonly SimHost[],
  work: Workload,
  spec: AuctionSpec,
  seed: number,
): AuctionRun {
  return new AuctionSim(hosts, work, spec, seed).run()
}

class AuctionSim {
  private readonly q = new EventQueue<Ev>()
  private readonly net: Network
  private readonly decider: Decider
  private readonly truth: View
  private readonly views: View[]
  private readonly peers: PeerState[]
  private readonly facts: Fact[] = []
  private readonly idle = new Set<number>()
  private readonly running = new Map<number, Execution[]>()
  /** Starts, dones and requeues per task: what a peer that starts it may not have heard yet. */
  private readonly taskFacts = new Map<number, Fact[]>()
  private readonly taskOf = new Map<string, number>()
  private readonly ticks = new Map<number, Set<number>>()
  private tickDone = -1
  private now = 0
  private rr = -1
  private finished = false
  private readonly out = {
    executions: [] as Execution[],
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
    this.decider = new Decider(new InputBuilder(hosts, work, this.net, spec.settle), this.net, hosts)
    const initial: HostFact[] = hosts.map((h) => ({
      host: h.index,
      version: 0,
      slots: Array(h.slots).fill(null),
    }))
    const newView = () => new View(initial, work.tasks.length)
    this.truth = newView()
    this.views = hosts.map(() => (this.net.shared ? this.truth : newView()))
    this.peers = hosts.map((h) => new PeerState(h.slots))
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
    const { timesUs: decisionsUs, shared: sharedDecisions } = this.decider
    const { doneAt, firstStart } = this
    return { ...this.out, decisionsUs, sharedDecisions, doneAt, firstStart, end, done: this.truth.doneCount }
  }

  private dispatch(ev: Ev): void {
    if (ev.kind === 'tick') this.tick(ev.k)
    else if (ev.kind === 'settle') this.settle(ev.peer, ev.slot)
    else if (ev.kind === 'finish') this.finish(ev.exec)
    else if (ev.kind === 'lease') this.lease(ev.exec)
    else if (ev.kind === 'crash') this.crash(ev.peer)
    else if (ev.kind === 'sweep') this.sweep()
    else for (const p of this.idle) this.want(p, this.now)
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

  /** Peers deciding at one tick decide at once: none sees the claims the others make at that tick. */
  private tick(k: number): void {
    const set = this.ticks.get(k)!
    this.ticks.delete(k)
    this.tickDone = k
    this.decider.newTick()
    const plans = [...set].sort((a, b) => a - b).map((p) => ({ p, mine: this.plan(p) }))
    for (const { p, mine } of plans) if (mine !== undefined) this.claim(p, mine)
  }

  private plan(p: number): readonly Placement[] | undefined {
    const ps = this.peers[p]!
    if (!ps.alive || ps.freeSlot() < 0) return undefined
    return this.decider.startsNow(this.viewOf(p), p, this.now)
  }

  private claim(p: number, mine: readonly Placement[]): void {
    const ps = this.peers[p]!
    const view = this.viewOf(p)
    for (const pl of mine) {
      const slot = ps.freeSlot()
      if (slot < 0) break
      const k = this.taskOf.get(pl.key)!
      if (view.stage[k] !== QUEUE) continue
      ps.slots[slot] = { kind: 'claim', task: k, attempt: view.attempt[k]!, at: this.now }
      this.emit({ origin: p, kind: 'claim', task: k, attempt: view.attempt[k]!, value: pl.bid }, false)
      this.q.push({ at: this.now + this.spec.settle, kind: 'settle', peer: p, slot })
      this.out.claims++
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
      const exec = execution(k, p, s.attempt, this.now)
      this.out.executions.push(exec)
      push(this.running, k, exec)
      if (!(this.firstStart[k]! <= this.now)) this.firstStart[k] = this.now
      ps.slots[slot] = { kind: 'run', exec }
      // what others said about this task that has not reached p yet: p will look again when it does
      for (const f of this.taskFacts.get(k) ?? []) {
        const at = this.net.shared ? f.t : this.net.deliver(f.id, f.t, f.origin, p)
        if (f.origin !== p && at > this.now) this.q.push({ at, kind: 'lease', exec })
      }
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
    ps.slots[ps.slotOf(exec)] = FREE
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
    const slot = this.peers[p]!.slotOf(exec)
    this.release(p, slot)
  }

  private release(p: number, slot: number): void {
    this.peers[p]!.slots[slot] = FREE
    this.emit({ origin: p, kind: 'host', task: -1, attempt: 0, value: 0 }, true)
    this.updateIdle(p)
    this.want(p, this.now)
  }

  private stop(exec: Execution, outcome: ExecOutcome): void {
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
    if (ps.alive && ps.freeSlot() >= 0) this.idle.add(p)
    else this.idle.delete(p)
  }

  /** Records a fact; `trigger`: it can change another peer's decision (a task done or ready, a host free). */
  private emit(f: Omit<Fact, 'id' | 't' | 'host'>, trigger: boolean): void {
    const fact: Fact = { ...f, id: this.facts.length, t: this.now, host: this.announceIfOwn(f) }
    this.facts.push(fact)
    const wasDone = f.task >= 0 && this.truth.stage[f.task] === DONE
    this.truth.apply(fact)
    const deliver = (q: number) =>
      this.net.shared ? this.now : this.net.deliver(fact.id, fact.t, fact.origin, q)
    if (trigger) for (const q of this.idle) this.want(q, deliver(q))
    if (f.task < 0 || f.kind === 'claim') return
    push(this.taskFacts, f.task, fact)
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
    return f.kind === 'requeue' ? null : this.peers[f.origin]!.announce(f.origin)
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}
