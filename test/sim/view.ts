// What one peer knows: the facts it has received, folded into compact per-task and per-host state.
// Task state is a join-semilattice, so facts may arrive in any order and twice: the current attempt
// is the highest one any fact names; inside it the best claim (lowest bid, then lowest peer id: the
// rule of bestClaim in src/crdt/reducer.ts) and the first start (lowest clock, then peer id); a done of
// any attempt wins (as in reduceAttempts: a real result is kept even after a requeue).
// An XOR hash of what the scheduler would read (each task's class, each host's state version) lets
// peers whose views agree share one schedule() call.

import { EventQueue } from './heap.ts'
import { mix32 } from './prng.ts'

export const QUEUE = 0
export const CLAIM = 1
export const RUN = 2
export const DONE = 3

export interface SlotState {
  readonly task: number
  readonly attempt: number
  /** When the claim was made (claim) or the task started (run). */
  readonly since: number
  readonly run: boolean
}

/** A host's own announcement of its slots; a higher version replaces a lower one. */
export interface HostFact {
  readonly host: number
  readonly version: number
  readonly slots: readonly (SlotState | null)[]
}

export type FactKind = 'claim' | 'start' | 'done' | 'requeue' | 'host'

export interface Fact {
  readonly id: number
  readonly t: number
  readonly origin: number
  readonly kind: FactKind
  /** -1 for a host-only fact. */
  readonly task: number
  readonly attempt: number
  /** Claim: the bid. Start: the clock (virtual time), which orders concurrent starts. */
  readonly value: number
  readonly host: HostFact | null
}

/** The claim rule of bestClaim (src/crdt/reducer.ts), on peer indices whose names sort like indices. */
export function claimBeats(bid: number, peer: number, bestBid: number, bestPeer: number): boolean {
  return bestPeer < 0 || bid < bestBid || (bid === bestBid && peer < bestPeer)
}

export class View {
  readonly attempt: Uint16Array
  readonly stage: Uint8Array
  readonly claimPeer: Int32Array
  readonly claimBid: Float64Array
  readonly runPeer: Int32Array
  readonly runLc: Float64Array
  readonly hosts: HostFact[]
  /** Every task before it is DONE here. */
  lwm = 0
  h1 = 0
  h2 = 0
  /** Facts of the global log already looked at (applied, or waiting in `pending`). */
  cursor = 0
  readonly pending = new EventQueue<{ at: number; fact: Fact }>()

  constructor(hosts: readonly HostFact[], taskCount: number) {
    const n = taskCount
    this.attempt = new Uint16Array(n)
    this.stage = new Uint8Array(n)
    this.claimPeer = new Int32Array(n).fill(-1)
    this.claimBid = new Float64Array(n)
    this.runPeer = new Int32Array(n).fill(-1)
    this.runLc = new Float64Array(n)
    this.hosts = [...hosts]
  }

  get doneCount(): number {
    return this.done
  }

  private done = 0

  /** A key for "the scheduler would read the same": equal views give equal keys. */
  key(): string {
    return `${this.h1}.${this.h2}`
  }

  advanceLwm(): number {
    while (this.lwm < this.stage.length && this.stage[this.lwm] === DONE) this.lwm++
    return this.lwm
  }

  apply(f: Fact): void {
    if (f.task >= 0) this.applyTask(f)
    const h = f.host
    if (h !== null) {
      const old = this.hosts[h.host]!
      if (h.version > old.version) {
        this.hosts[h.host] = h
        this.toggle(0x40000000 + h.host, old.version)
        this.toggle(0x40000000 + h.host, h.version)
      }
    }
  }

  private applyTask(f: Fact): void {
    const k = f.task
    const before = classOf(this.stage[k]!)
    if (this.stage[k] === DONE) return
    if (f.kind === 'done') {
      this.setStage(k, DONE, before)
      return
    }
    const a = f.kind === 'requeue' ? f.attempt + 1 : f.attempt
    if (a < this.attempt[k]!) return
    if (a > this.attempt[k]!) {
      this.attempt[k] = a
      this.claimPeer[k] = -1
      this.runPeer[k] = -1
      this.stage[k] = QUEUE
    }
    if (f.kind === 'claim') {
      if (claimBeats(f.value, f.origin, this.claimBid[k]!, this.claimPeer[k]!)) {
        this.claimPeer[k] = f.origin
        this.claimBid[k] = f.value
      }
      if (this.stage[k] === QUEUE) this.stage[k] = CLAIM
    } else if (f.kind === 'start') {
      const lc = this.runLc[k]!
      const rp = this.runPeer[k]!
      if (rp < 0 || f.value < lc || (f.value === lc && f.origin < rp)) {
        this.runPeer[k] = f.origin
        this.runLc[k] = f.value
      }
      this.stage[k] = RUN
    }
    this.setStage(k, this.stage[k]!, before)
  }

  private setStage(k: number, stage: number, before: number): void {
    this.stage[k] = stage
    const after = classOf(stage)
    if (after === before) return
    this.toggle(k, before)
    this.toggle(k, after)
    if (stage === DONE) this.done++
  }

  /** XOR an entity's state in or out of the hash; state 0 (the initial one) weighs nothing. */
  private toggle(entity: number, state: number): void {
    if (state === 0) return
    this.h1 ^= mix32(entity, state, 0x1234567)
    this.h2 ^= mix32(entity, state, 0x7654321)
  }
}

/** What the scheduler sees of a task: ready, taken (claimed or running), or done. */
function classOf(stage: number): number {
  return stage === QUEUE ? 0 : stage === DONE ? 2 : 1
}

/** Brings `view` up to time `t` for `peer`: applies every fact delivered by then, in any order. */
export function catchUp(view: View, facts: readonly Fact[], t: number, deliver: (f: Fact) => number): void {
  while (view.cursor < facts.length) {
    const f = facts[view.cursor]!
    if (f.t > t) break
    const at = deliver(f)
    if (at <= t) view.apply(f)
    else view.pending.push({ at, fact: f })
    view.cursor++
  }
  for (let top = view.pending.peek(); top !== undefined && top.at <= t; top = view.pending.peek()) {
    view.pending.pop()
    view.apply(top.fact)
  }
}
