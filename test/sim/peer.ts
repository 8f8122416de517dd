// A simulated peer's own state, which it knows exactly: its slots (free, claimed, running) and the
// versioned announcement of them that rides on every fact it makes about itself.

import type { Execution } from './auction-types.ts'
import type { HostFact, SlotState } from './view.ts'

export type Slot =
  | { readonly kind: 'free' }
  | { readonly kind: 'claim'; readonly task: number; readonly attempt: number; readonly at: number }
  | { readonly kind: 'run'; readonly exec: Execution }

export const FREE: Slot = { kind: 'free' }

export class PeerState {
  alive = true
  version = 0
  readonly slots: Slot[]

  constructor(slots: number) {
    this.slots = Array.from({ length: slots }, () => FREE)
  }

  /** A free slot's index, or -1. */
  freeSlot(): number {
    return this.slots.findIndex((s) => s.kind === 'free')
  }

  slotOf(exec: Execution): number {
    return this.slots.findIndex((s) => s.kind === 'run' && s.exec === exec)
  }

  /** The next version of what this host tells the farm about its slots. */
  announce(host: number): HostFact {
    this.version++
    const slots = this.slots.map((s): SlotState | null => {
      if (s.kind === 'free') return null
      if (s.kind === 'claim') return { task: s.task, attempt: s.attempt, since: s.at, run: false }
      return { task: s.exec.task, attempt: s.exec.attempt, since: s.exec.start, run: true }
    })
    return { host, version: this.version, slots }
  }
}
