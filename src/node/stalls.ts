// Hosts that win tasks and do not claim them. Every peer runs the same auction over the hosts'
// heartbeats, and each claims only what it wins: a host that announces free slots and never claims
// (a buggy or lying peer, or one that cannot claim yet) would hold every task it wins, and the farm
// would wait for it for ever. So each node watches what its auction gives to other hosts to start
// now; a host that leaves such a task unclaimed for STALL_MS is left out of this node's auction for
// STALL_COOLDOWN_MS, and the tasks go to the next best hosts. Every node sees the same document and
// heartbeats, so they all leave the same host out within about a pass of each other.

import type { Logger } from '@libp2p/interface'
import type { SchedHost } from '../sched/types.ts'

/** How long a host may leave a task it won (to start now) unclaimed. */
export const STALL_MS = 5_000
/** How long a host that did is left out of the auction (then it gets another chance). */
export const STALL_COOLDOWN_MS = 30_000

export interface Placed {
  readonly peer: string
  /** The task and its attempt: a claim, a requeue or another winner makes a new offer. */
  readonly key: string
}

export class Stalls {
  /** `${peer} ${key}` -> when an auction here first gave that task to that host. */
  private readonly offered = new Map<string, { peer: string; since: number }>()
  /** Hosts left out, until when. */
  private readonly out = new Map<string, number>()

  constructor(
    private readonly log: Logger,
    private readonly stallMs = STALL_MS,
    private readonly cooldownMs = STALL_COOLDOWN_MS,
  ) {}

  /** The hosts this node's auction may place tasks on now. */
  eligible(hosts: readonly SchedHost[], now: number): SchedHost[] {
    for (const [peer, until] of this.out) if (now >= until) this.out.delete(peer)
    return this.out.size === 0 ? [...hosts] : hosts.filter((h) => !this.out.has(h.peer))
  }

  /**
   * What one auction gave other hosts to start now. A placement not made again is forgotten (claimed,
   * or placed elsewhere); one a host has left unclaimed for stallMs leaves that host out. True when a
   * host was left out now (the auction is worth running again at once).
   */
  observe(placed: readonly Placed[], now: number): boolean {
    const seen = new Set<string>()
    let left = false
    for (const o of placed) {
      const id = `${o.peer} ${o.key}`
      seen.add(id)
      const first = this.offered.get(id)
      if (first === undefined) {
        this.offered.set(id, { peer: o.peer, since: now })
      } else if (now - first.since >= this.stallMs && !this.out.has(o.peer)) {
        this.out.set(o.peer, now + this.cooldownMs)
        left = true
        this.log.error(
          'host %s won %s %d s ago and has not claimed it: left out of the auction for %d s',
          o.peer,
          o.key,
          Math.round((now - first.since) / 1000),
          Math.round(this.cooldownMs / 1000),
        )
      }
    }
    for (const [id, o] of this.offered) if (!seen.has(id) || this.out.has(o.peer)) this.offered.delete(id)
    return left
  }

  /** No auction ran (no free slot here): what was offered is no longer watched. */
  reset(): void {
    this.offered.clear()
  }

  /** Hosts left out now (for tests and `hosts`). */
  leftOut(now: number): string[] {
    return [...this.out].filter(([, until]) => now < until).map(([peer]) => peer)
  }
}
