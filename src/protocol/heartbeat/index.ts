// Host Scheduler's wire: each node publishes a heartbeat on the farm's heartbeat topic and keeps the
// last one of every other host with the time *this* node received it (monotonic clock), so liveness
// never depends on another machine's clock.

import type { ComponentLogger, Logger, PeerId, PubSub, Startable } from '@libp2p/interface'
import { TopicValidatorResult } from '@libp2p/interface'
import {
  decodeHeartbeat,
  encodeHeartbeat,
  HEARTBEAT_VERSION,
  type Heartbeat,
  InvalidHeartbeatError,
  UnsupportedHeartbeatVersionError,
} from './codec.ts'

export * from './codec.ts'

/** beatSoon's wait: long enough to take a task's end and its slot's next start together. */
export const BEAT_SOON_MS = 20

export const heartbeatTopic = (farmId: string): string => `/openfarm/${farmId}/heartbeat/1.0.0`

export type Liveness = 'alive' | 'suspect' | 'dead'

export interface HostRecord {
  readonly peer: string
  readonly heartbeat: Heartbeat
  /** Monotonic ms when this node last heard from the host. */
  readonly receivedAt: number
  readonly liveness: Liveness
}

export interface HeartbeatInit {
  readonly farmId: string
  /** What to announce; called for every beat. */
  readonly describe: () => Omit<Heartbeat, 'v' | 'seq'>
  readonly intervalMs?: number
  readonly suspectAfterMs?: number
  readonly deadAfterMs?: number
  /** Monotonic clock in ms (injected for tests). */
  readonly now?: () => number
}

export interface HeartbeatComponents {
  readonly peerId: PeerId
  readonly logger: ComponentLogger
  readonly pubsub: PubSub
}

export class HeartbeatService implements Startable {
  readonly [Symbol.toStringTag] = 'openfarm/heartbeat'
  private readonly init: HeartbeatInit
  private readonly components: HeartbeatComponents
  private readonly log: Logger
  private readonly topic: string
  private readonly hosts = new Map<string, { heartbeat: Heartbeat; receivedAt: number }>()
  private readonly now: () => number
  private timer: ReturnType<typeof setTimeout> | undefined
  /** A beatSoon() waiting. */
  private soon: ReturnType<typeof setTimeout> | undefined
  private seq = 0
  private readonly listeners = new Set<(peer: string) => void>()
  /** What the topic validator decoded, for the message event that follows with the same bytes. */
  private readonly validated = new WeakMap<Uint8Array, Heartbeat>()

  constructor(components: HeartbeatComponents, init: HeartbeatInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('openfarm:heartbeat')
    this.topic = heartbeatTopic(init.farmId)
    this.now = init.now ?? (() => performance.now())
  }

  private readonly onMessage = (
    evt: CustomEvent<{ topic: string; data: Uint8Array; type: string; from?: PeerId }>,
  ) => {
    const msg = evt.detail
    if (msg.topic !== this.topic || msg.type !== 'signed' || msg.from === undefined) return
    const peer = msg.from.toString()
    if (peer === this.components.peerId.toString()) return
    try {
      const heartbeat = this.validated.get(msg.data) ?? decodeHeartbeat(msg.data)
      const before = this.hosts.get(peer)
      const wasLive = before !== undefined && this.liveness(before.receivedAt) === 'alive'
      this.hosts.set(peer, { heartbeat, receivedAt: this.now() })
      if (before === undefined) this.log('new host %s (%s)', peer, heartbeat.name)
      // listeners (the dispatcher) care about changes, not about every beat
      if (!wasLive || offerChanged(before.heartbeat, heartbeat)) for (const l of this.listeners) l(peer)
    } catch (err) {
      this.log.error('ignored heartbeat from %s: %s', peer, (err as Error).message)
    }
  }

  start(): void {}

  // gossipsub starts alongside the other services and refuses subscribe() until it has: after start
  afterStart(): void {
    const { pubsub } = this.components
    pubsub.topicValidators.set(this.topic, (_peer, msg) => {
      try {
        this.validated.set(msg.data, decodeHeartbeat(msg.data))
        return TopicValidatorResult.Accept
      } catch (err) {
        // a peer on another release is not misbehaving: drop its beat without penalising it
        if (err instanceof UnsupportedHeartbeatVersionError) return TopicValidatorResult.Ignore
        if (err instanceof InvalidHeartbeatError) return TopicValidatorResult.Reject
        throw err
      }
    })
    pubsub.subscribe(this.topic)
    pubsub.addEventListener('message', this.onMessage as never)
    this.beat()
  }

  stop(): void {}

  beforeStop(): void {
    clearTimeout(this.timer)
    clearTimeout(this.soon)
    this.timer = undefined
    this.soon = undefined
    const { pubsub } = this.components
    pubsub.removeEventListener('message', this.onMessage as never)
    pubsub.topicValidators.delete(this.topic)
    pubsub.unsubscribe(this.topic)
  }

  /**
   * Publish within `ms` (default BEAT_SOON_MS), once for all the changes made meanwhile: a slot that
   * frees and takes its next task a few ms later is one beat, telling the state after both.
   */
  beatSoon(ms: number = BEAT_SOON_MS): void {
    if (this.soon !== undefined) return
    this.soon = setTimeout(() => this.beat(), ms)
    this.soon.unref?.()
  }

  /** Publish now (a change that matters: a slot freed, a task started) and restart the period. */
  beat(): void {
    clearTimeout(this.timer)
    clearTimeout(this.soon)
    this.soon = undefined
    try {
      const hb: Heartbeat = { v: HEARTBEAT_VERSION, seq: this.seq++, ...this.init.describe() }
      this.components.pubsub.publish(this.topic, encodeHeartbeat(hb)).catch((err: Error) => {
        this.log('heartbeat not published: %s', err.message)
      })
    } catch (err) {
      // a field this node cannot announce (encode checks every bound): say so, keep beating
      this.log.error('heartbeat not sent: %s', (err as Error).message)
    }
    this.timer = setTimeout(() => this.beat(), this.period())
    this.timer.unref?.()
  }

  /**
   * The periodic beat slows as the farm grows (one per max(interval, N / 100 s)), so gossip stays
   * O(N) per peer per second; changes that matter are announced at once through beat().
   */
  period(): number {
    const base = this.init.intervalMs ?? 1000
    return Math.max(base, Math.round(((this.hosts.size + 1) / 100) * 1000))
  }

  /** Called when a host appears, comes back, or changes what it offers. */
  onHost(listener: (peer: string) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  liveness(receivedAt: number): Liveness {
    const age = this.now() - receivedAt
    // thresholds stretch with the period, so a large farm's slower beat is not taken for silence
    const period = this.period()
    if (age >= Math.max(this.init.deadAfterMs ?? 30_000, 3 * period)) return 'dead'
    if (age >= Math.max(this.init.suspectAfterMs ?? 5_000, 2 * period)) return 'suspect'
    return 'alive'
  }

  /** Every other host this node has heard from, with its liveness as of now. */
  hostRecords(): HostRecord[] {
    return [...this.hosts].map(([peer, h]) => ({ peer, ...h, liveness: this.liveness(h.receivedAt) }))
  }

  /** One host's liveness as of now; 'unknown' when this node never heard from it. */
  livenessOf(peer: string): Liveness | 'unknown' {
    const h = this.hosts.get(peer)
    return h === undefined ? 'unknown' : this.liveness(h.receivedAt)
  }

  /** Forget a host (e.g. dead for long); it reappears with its next heartbeat. */
  forget(peer: string): void {
    this.hosts.delete(peer)
  }
}

/** Whether what a host offers changed: slots, what runs, what it can run. */
function offerChanged(a: Heartbeat, b: Heartbeat): boolean {
  return (
    a.free !== b.free ||
    a.slots !== b.slots ||
    a.running.length !== b.running.length ||
    a.speed !== b.speed ||
    a.availability?.available !== b.availability?.available ||
    JSON.stringify([a.apps, a.tags]) !== JSON.stringify([b.apps, b.tags])
  )
}

export function heartbeat(init: HeartbeatInit): (components: HeartbeatComponents) => HeartbeatService {
  return (components) => new HeartbeatService(components, init)
}
