// When to sync with whom: once per new connection, after an announcement of an update too large to
// gossip, after a gap in gossip, and every antiEntropyMs with one random peer. Automatic syncs never
// throw (failures are logged) and never run twice at once with the same peer.

import type { Logger, PeerId, Topology } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type * as Y from 'yjs'
import { isBehind } from './codec.ts'
import { ANNOUNCE_MAX_ATTEMPTS, ANNOUNCE_RETRY_MS } from './constants.ts'
import { sleep, type TaskSet } from './signals.ts'

export interface AutoSyncInit {
  readonly self: PeerId
  readonly connectionManager: ConnectionManager
  readonly doc: Y.Doc
  readonly log: Logger
  readonly antiEntropyMs: number
  readonly random: () => number
  readonly tasks: TaskSet
  /** One full sync with `peer`; may throw. */
  readonly sync: (peer: PeerId) => Promise<unknown>
  /** Logs a failed automatic sync at the level its error deserves. */
  readonly logFailure: (format: string, ...args: unknown[]) => void
}

export class AutoSync {
  readonly #init: AutoSyncInit
  /** Connected peers known (through identify) to speak the protocol. */
  readonly #peers = new Map<string, PeerId>()
  readonly #inflight = new Map<string, Promise<void>>()
  #shutdown: AbortSignal = AbortSignal.abort()
  #timer: ReturnType<typeof setTimeout> | undefined

  constructor(init: AutoSyncInit) {
    this.#init = init
  }

  start(shutdown: AbortSignal): void {
    this.#shutdown = shutdown
    this.#scheduleAntiEntropy()
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#peers.clear()
  }

  /** Registered with the registrar: libp2p calls it once identify shows a peer speaks the protocol. */
  topology(): Topology {
    const seen = new Set<string>()
    return {
      filter: {
        has: (peer) => seen.has(peer.toString()),
        add: (peer) => seen.add(peer.toString()),
        remove: (peer) => seen.delete(peer.toString()),
      },
      onConnect: (peer) => {
        this.#peers.set(peer.toString(), peer)
        // the exchange is two-way, so one run per new connection is enough: the peer with the lower
        // id starts it (no coordination, half the traffic of both starting); if it fails,
        // anti-entropy repairs within one period
        if (this.#init.self.toString() < peer.toString()) this.syncSoon(peer, 'a new connection')
      },
      onDisconnect: (peer) => {
        this.#peers.delete(peer.toString())
      },
    }
  }

  syncSoon(peer: PeerId, reason: string): void {
    void this.#init.tasks.track(this.#syncOnce(peer, reason))
  }

  /** Fetches an announced update: from its author first, else from the peer that relayed it. */
  follow(announced: Map<number, number>, author: PeerId | undefined, via: PeerId): void {
    const { doc, log } = this.#init
    const run = async (): Promise<void> => {
      for (let attempt = 0; attempt < ANNOUNCE_MAX_ATTEMPTS; attempt++) {
        if (attempt > 0) {
          // an empty vector cannot tell whether we caught up: one sync is all it gets
          if (announced.size === 0 || !isBehind(doc, announced)) return
          await sleep(ANNOUNCE_RETRY_MS * attempt, this.#shutdown)
        }
        // a relay forwards the announcement before it has fetched the update itself, so alternate
        const peer = author != null && attempt % 2 === 0 ? author : via
        await this.#syncOnce(peer, 'an announcement')
      }
      if (isBehind(doc, announced))
        log('still behind an announcement of %p; anti-entropy will retry', author ?? via)
    }
    void this.#init.tasks.track(
      run().catch((err: unknown) => this.#init.logFailure('following an announcement failed - %e', err)),
    )
  }

  /** While a sync with `peer` runs, a new request waits for it; callers that need more re-check. */
  async #syncOnce(peer: PeerId, reason: string): Promise<void> {
    const key = peer.toString()
    const running = this.#inflight.get(key)
    if (running != null) return running
    if (this.#shutdown.aborted) return
    const run = this.#init.sync(peer).then(
      () => undefined,
      (err: unknown) => this.#init.logFailure(`sync with %p after ${reason} failed - %e`, peer, err),
    )
    this.#inflight.set(key, run)
    try {
      await run
    } finally {
      this.#inflight.delete(key)
    }
  }

  #scheduleAntiEntropy(): void {
    if (this.#shutdown.aborted || this.#timer != null) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      const peer = this.#randomPeer()
      const run = peer == null ? Promise.resolve() : this.#syncOnce(peer, 'anti-entropy')
      void this.#init.tasks.track(run.finally(() => this.#scheduleAntiEntropy()))
    }, this.#init.antiEntropyMs)
  }

  #randomPeer(): PeerId | undefined {
    const { connectionManager, random } = this.#init
    const peers = [...this.#peers.values()].filter((p) => connectionManager.getConnections(p).length > 0)
    if (peers.length === 0) return undefined
    const i = Math.min(peers.length - 1, Math.max(0, Math.floor(random() * peers.length)))
    return peers[i]
  }
}
