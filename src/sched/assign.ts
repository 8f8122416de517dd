// Task Dispatcher's pure core (first version): ready tasks in priority order x live hosts with free
// slots -> who should claim what. Every peer runs this on the same inputs and claims only its own
// share, so a converged farm makes no conflicting claims. No I/O, no clock, no randomness: ties are
// broken by a hash of (task, peer), so the same inputs give the same answer on every machine.
// The scoring auction (speed, watts, price, finish times) replaces the score in the scheduling issue.

export interface ReadyTask {
  /** `${job}/${task}` */
  readonly key: string
  readonly app: string
}

export interface HostSlots {
  readonly peer: string
  readonly free: number
  readonly apps: ReadonlySet<string>
}

export interface Assignment {
  readonly key: string
  readonly peer: string
  /** Lower is better: the claim's bid. */
  readonly bid: number
}

/** FNV-1a, 32 bit: a stable hash for deterministic tie-breaks. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/**
 * Gives each task, in order, to the host with the most free slots left that can run it; ties go to
 * the highest hash of (task, peer) (rendezvous hashing, so equal hosts share work evenly). Stops when
 * no slot is left: what cannot start soon is not assigned.
 */
export function assign(tasks: readonly ReadyTask[], hosts: readonly HostSlots[]): Assignment[] {
  const free = new Map(hosts.map((h) => [h.peer, h.free]))
  let left = hosts.reduce((n, h) => n + Math.max(0, h.free), 0)
  const out: Assignment[] = []
  for (const t of tasks) {
    if (left <= 0) break
    let best: HostSlots | undefined
    let bestFree = 0
    let bestHash = -1
    for (const h of hosts) {
      const f = free.get(h.peer) ?? 0
      if (f <= 0 || !h.apps.has(t.app)) continue
      const hash = fnv1a(`${t.key}\n${h.peer}`)
      if (f > bestFree || (f === bestFree && hash > bestHash)) {
        best = h
        bestFree = f
        bestHash = hash
      }
    }
    if (best === undefined) continue
    free.set(best.peer, bestFree - 1)
    left--
    // bid: how loaded the host is after taking it (lower wins), then the hash as a fraction
    out.push({ key: t.key, peer: best.peer, bid: best.free - bestFree + 1 - bestHash / 2 ** 33 })
  }
  return out
}
