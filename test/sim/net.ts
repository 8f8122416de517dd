// The simulated network: when a fact (a claim, a start, a done, a requeue, a host's new state) reaches
// each peer, and when each peer last heard each host's heartbeat. Delivery is a pure function of
// (seed, fact, peer), so peers can catch up lazily and any run replays from its seed.
// Simplified: heartbeats are never lost (a dead threshold is dozens of beats, so rare losses would
// not change a verdict); a lost fact is not gone, it arrives after `repair` (the next heartbeat or an
// anti-entropy sync carries it), like the CRDT's catch-up does.

import { unit } from './prng.ts'

export interface Partition {
  /** Start, seconds of virtual time. */
  readonly at: number
  readonly duration: number
  /** Share of the peers on the far side. */
  readonly share: number
}

export interface NetSpec {
  /** Base gossip delay, seconds. */
  readonly delay: number
  /** Extra delay per (fact, peer), uniform in [0, jitter), seconds. */
  readonly jitter: number
  /** Probability that one delivery is lost (recovered after `repair`). */
  readonly loss: number
  /** How late a lost fact arrives, seconds (x a uniform factor in [0.5, 1.5)). */
  readonly repair: number
  readonly partitions: readonly Partition[]
}

export interface LivenessSpec {
  /** Heartbeat period, seconds. */
  readonly beat: number
  /** No new work offered after this long without a heartbeat. */
  readonly suspect: number
  /** Its running attempts are requeued after this long. */
  readonly dead: number
}

export const lanNet: NetSpec = { delay: 0.01, jitter: 0.02, loss: 0, repair: 1, partitions: [] }
export const instantNet: NetSpec = { delay: 0, jitter: 0, loss: 0, repair: 1, partitions: [] }

/** DESIGN: one beat per max(1 s, N / 100 s); suspect ~5 s and dead ~30 s, never under a few beats. */
export function livenessFor(peers: number): LivenessSpec {
  const beat = Math.max(1, peers / 100)
  return { beat, suspect: Math.max(5, 2.5 * beat), dead: Math.max(30, 3 * beat) }
}

export class Network {
  readonly shared: boolean
  private readonly seed: number
  readonly spec: NetSpec
  readonly live: LivenessSpec
  /** Crash time per host (Infinity while alive); set by the simulator. */
  readonly crashAt: Float64Array

  constructor(spec: NetSpec, live: LivenessSpec, peers: number, seed: number) {
    this.spec = spec
    this.live = live
    this.seed = seed
    this.crashAt = new Float64Array(peers).fill(Number.POSITIVE_INFINITY)
    // one view serves every peer when every fact reaches every peer at once
    this.shared = spec.delay === 0 && spec.jitter === 0 && spec.loss === 0 && spec.partitions.length === 0
  }

  side(partition: number, peer: number): number {
    return unit(this.seed ^ 0x5eed, partition, peer) < this.spec.partitions[partition]!.share ? 1 : 0
  }

  separated(partition: number, a: number, b: number): boolean {
    return this.side(partition, a) !== this.side(partition, b)
  }

  /** When fact `id`, sent at `t` by `origin`, reaches `peer` (its origin knows it at once). */
  deliver(id: number, t: number, origin: number, peer: number): number {
    if (peer === origin) return t
    const { delay, jitter, loss, repair, partitions } = this.spec
    let at = t + delay + jitter * unit(this.seed, id, peer)
    if (loss > 0 && unit(this.seed ^ 0x1055, id, peer) < loss) {
      at += repair * (0.5 + unit(this.seed ^ 0x2055, id, peer))
    }
    for (let i = 0; i < partitions.length; i++) {
      const p = partitions[i]!
      const end = p.at + p.duration
      if (at >= p.at && at < end && this.separated(i, origin, peer)) {
        at = end + delay + jitter * unit(this.seed ^ 0x3055, id, peer)
      }
    }
    return at
  }

  private beatPhase(host: number): number {
    return unit(this.seed ^ 0xbea7, host, 0) * this.live.beat
  }

  /** The last beat of `host` sent at or before `t` (its first beat is at its phase; joining counts as 0). */
  private beatBefore(host: number, t: number): number {
    const phase = this.beatPhase(host)
    if (t < phase) return 0
    return phase + Math.floor((t - phase) / this.live.beat) * this.live.beat
  }

  /** When `peer` last received a heartbeat of `host`, as of `t` (receive time, its own clock). */
  lastHeard(peer: number, host: number, t: number): number {
    const { delay } = this.spec
    let sent = this.beatBefore(host, Math.min(this.crashAt[host]!, t - delay))
    const parts = this.spec.partitions
    for (let moved = true; moved; ) {
      moved = false
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!
        if (sent > p.at && sent < p.at + p.duration && this.separated(i, peer, host)) {
          sent = this.beatBefore(host, p.at)
          moved = true
        }
      }
    }
    return sent + delay
  }

  suspect(peer: number, host: number, t: number): boolean {
    return peer !== host && this.mayMiss(host, t) && t - this.lastHeard(peer, host, t) > this.live.suspect
  }

  dead(peer: number, host: number, t: number): boolean {
    return peer !== host && this.mayMiss(host, t) && t - this.lastHeard(peer, host, t) > this.live.dead
  }

  /** Cheap pre-check: without crashes or partitions every host is heard. */
  private mayMiss(host: number, t: number): boolean {
    return this.crashAt[host]! < t || this.spec.partitions.some((p) => p.at < t)
  }

  /** Peers on the same sides of every partition begun by `t` hear the same hosts: a cache key part. */
  livenessKey(peer: number, t: number): string {
    let key = ''
    const parts = this.spec.partitions
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!
      if (p.at <= t && t < p.at + p.duration + this.live.beat + this.spec.delay + this.live.suspect) {
        key += this.side(i, peer)
      } else key += '-'
    }
    return key
  }

  /** Times at which some peer's verdict on a host changes, so idle peers should look again. */
  livenessEdges(): number[] {
    const { suspect, dead, beat } = this.live
    const d = this.spec.delay
    const out: number[] = []
    for (const p of this.spec.partitions) {
      out.push(p.at + suspect + d, p.at + dead + d, p.at + p.duration + beat + d + 1e-6)
    }
    return out
  }

  /** After a crash at `t`: when peers first suspect it, and when they judge it dead. */
  crashEdges(host: number, t: number): [number, number] {
    const last = this.beatBefore(host, t) + this.spec.delay
    return [last + this.live.suspect + 1e-6, last + this.live.dead + 1e-6]
  }
}
