// A host as the auction sees it: built from its heartbeat (or this node's own description), with
// when each of its slots frees up as this node last heard it.

import type { Heartbeat, HostRecord } from '../protocol/heartbeat/index.ts'
import type { SchedHost } from '../sched/types.ts'

/** A host as the auction sees it, from its heartbeat (or this node's own description). */
export function toSchedHost(peer: string, h: Omit<Heartbeat, 'v' | 'seq'>): SchedHost {
  return {
    peer,
    speed: h.speed,
    slotFreeIn: [...Array<number>(h.free).fill(0)],
    wattsLoaded: h.wattsLoaded,
    price: h.price,
    apps: new Map(h.apps.map((a) => [a.name, a.version])),
    tags: new Set(h.tags),
    memoryMb: h.memoryMb,
    gpus: h.gpus.length,
    gpuSpeedup: new Map(h.apps.flatMap((a) => (a.gpuSpeedup === undefined ? [] : [[a.name, a.gpuSpeedup]]))),
  }
}

/**
 * When another host's slots free up, from its last heartbeat: free ones now, running ones when their
 * estimate runs out (counted from when this node heard it), claimed ones in a second.
 */
export function slotFreeIn(h: HostRecord, now: number): number[] {
  const sinceHeard = (now - h.receivedAt) / 1000
  const hb = h.heartbeat
  const running = hb.running.map((r) =>
    Math.max(0.001, ((r.expectedMs ?? 1000) - r.startedMsAgo) / 1000 - sinceHeard),
  )
  const claimed = Math.max(0, hb.slots - hb.free - hb.running.length)
  return [...Array<number>(hb.free).fill(0), ...running, ...Array<number>(claimed).fill(1)]
}
