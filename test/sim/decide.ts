// One decision of one peer: the schedule of its view, of which it keeps the placements that start now
// on itself. Peers deciding at the same tick with equal views (same key) would compute the same
// placements from the same input, so the first one's result serves them all. The wall time of each
// schedule() call is recorded for the report and never read by the simulation.

import { schedule } from '../../src/sched/auction.ts'
import type { Placement } from '../../src/sched/types.ts'
import type { InputBuilder } from './input.ts'
import type { SimHost } from './model.ts'
import type { Network } from './net.ts'
import type { View } from './view.ts'

export class Decider {
  /** Wall time of each schedule() call, microseconds. */
  readonly timesUs: number[] = []
  /** Decisions answered from an equal view's call at the same tick. */
  shared = 0
  private cache = new Map<string, Map<string, Placement[]>>()

  constructor(
    private readonly builder: InputBuilder,
    private readonly net: Network,
    private readonly hosts: readonly SimHost[],
  ) {}

  /** A new decision tick: the previous tick's results no longer apply. */
  newTick(): void {
    this.cache = new Map()
  }

  /** The placements that start now on peer `p`, by the schedule of its view at `now`. */
  startsNow(view: View, p: number, now: number): readonly Placement[] {
    const key = `${view.key()}|${this.net.livenessKey(p, now)}`
    let byPeer = this.cache.get(key)
    if (byPeer === undefined) {
      const input = this.builder.build(view, p, now)
      const t0 = performance.now()
      const placements = schedule(input)
      this.timesUs.push((performance.now() - t0) * 1000)
      byPeer = new Map()
      for (const pl of placements) {
        if (pl.start !== 0) continue
        const list = byPeer.get(pl.peer)
        if (list === undefined) byPeer.set(pl.peer, [pl])
        else list.push(pl)
      }
      this.cache.set(key, byPeer)
    } else this.shared++
    return byPeer.get(this.hosts[p]!.peer) ?? []
  }
}
