// doc-sync: replicates one farm's Yjs document. Local updates go out on gossipsub; catch-up runs over a
// stream protocol (state vector -> missing update) on every new connection, after announcements of
// updates too large to gossip, and every antiEntropyMs with one random peer, so partitions heal.

import { setMaxListeners } from 'node:events'
import {
  type ComponentLogger,
  type IncomingStreamData,
  InvalidParametersError,
  type Logger,
  type PeerId,
  type PubSub,
  type Startable,
  serviceCapabilities,
  serviceDependencies,
  type TopicValidatorFn,
} from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import * as Y from 'yjs'
import { fromSync, isOrigin } from '../../crdt/origins.ts'
import { checkUpdate, type UpdateValidator } from './codec.ts'
import * as c from './constants.ts'
import { NotStartedError, SyncAbortedError } from './errors.ts'
import { gossipPayload, gossipValidator } from './gossip.ts'
import { AutoSync } from './peers.ts'
import { deadline, TaskSet } from './signals.ts'
import { type DocSyncStats, emptyStats } from './stats.ts'
import { initiateSync, respondSync, type SyncResult, type SyncSession } from './sync.ts'

export * from './codec.ts'
export * from './constants.ts'
export * from './errors.ts'
export type { DocSyncStats } from './stats.ts'
export type { SyncResult } from './sync.ts'

export interface DocSyncInit {
  doc: Y.Doc
  farmId: string
  /** Pause between anti-entropy syncs with one random peer (default 10 s). */
  antiEntropyMs?: number
  /** Largest update sent whole on gossip; larger ones are announced and fetched by stream (default 64 KiB). */
  maxGossipBytes?: number
  /** Bound on every sync frame, both ways (default 256 MiB). */
  maxSyncMessageBytes?: number
  /** Default deadline of one sync, added to any caller signal (default 30 s). */
  syncTimeoutMs?: number
  /** Schema check for every update from the network; throws a named error to reject it. */
  validateUpdate?: UpdateValidator
  /** PRNG in [0, 1) for the anti-entropy peer choice (default Math.random). */
  random?: () => number
}

/** What the service needs from the node. `pubsub` is the gossipsub service, read at start. */
export interface DocSyncComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  peerId: PeerId
  logger: ComponentLogger
  pubsub: PubSub
}

export interface DocSync {
  readonly topic: string
  readonly stats: Readonly<DocSyncStats>
  /** One full two-way sync with `peer` (dialling it if need be); resolves once both sides applied. */
  syncWith(peer: PeerId, options?: { signal?: AbortSignal }): Promise<SyncResult>
  /** Settles the background work running now (publishes, syncs); for tests and benchmarks. */
  whenIdle(): Promise<void>
}

export function docSync(init: DocSyncInit): (components: DocSyncComponents) => DocSync {
  return (components) => new DocSyncService(components, init)
}

class DocSyncService implements DocSync, Startable {
  readonly [Symbol.toStringTag] = '@openfarm/doc-sync'
  readonly [serviceCapabilities]: string[] = ['@openfarm/doc-sync']
  // checked once all services exist, so the order of the services map does not matter; identify is
  // what tells our topology which peers speak the protocol
  readonly [serviceDependencies]: string[] = ['@libp2p/pubsub', '@libp2p/identify']
  readonly topic: string
  readonly stats = emptyStats()

  readonly #components: DocSyncComponents
  readonly #doc: Y.Doc
  readonly #log: Logger
  readonly #maxGossipBytes: number
  readonly #maxSyncMessageBytes: number
  readonly #syncTimeoutMs: number
  readonly #validateUpdate: UpdateValidator | undefined
  readonly #tasks = new TaskSet()
  readonly #auto: AutoSync
  readonly #validator: TopicValidatorFn
  #pubsub: PubSub | undefined
  #shutdown = new AbortController()
  #started = false
  #topologyId: string | undefined

  constructor(components: DocSyncComponents, init: DocSyncInit) {
    this.#components = components
    this.#doc = init.doc
    this.#log = components.logger.forComponent('openfarm:doc-sync')
    this.topic = c.docTopic(init.farmId)
    this.#maxGossipBytes = init.maxGossipBytes ?? c.DEFAULT_MAX_GOSSIP_BYTES
    this.#maxSyncMessageBytes = init.maxSyncMessageBytes ?? c.DEFAULT_MAX_SYNC_MESSAGE_BYTES
    this.#syncTimeoutMs = init.syncTimeoutMs ?? c.DEFAULT_SYNC_TIMEOUT_MS
    this.#validateUpdate = init.validateUpdate
    const antiEntropyMs = init.antiEntropyMs ?? c.DEFAULT_ANTI_ENTROPY_MS
    for (const [key, value] of Object.entries({
      antiEntropyMs,
      maxGossipBytes: this.#maxGossipBytes,
      maxSyncMessageBytes: this.#maxSyncMessageBytes,
      syncTimeoutMs: this.#syncTimeoutMs,
    })) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new InvalidParametersError(`docSync: ${key} must be a positive integer, got ${value}`)
      }
    }
    this.#auto = new AutoSync({
      self: components.peerId,
      connectionManager: components.connectionManager,
      doc: init.doc,
      log: this.#log,
      antiEntropyMs,
      random: init.random ?? Math.random,
      tasks: this.#tasks,
      sync: (peer) => this.syncWith(peer),
      logFailure: (format, ...args) => this.#logFailure(format, ...args),
    })
    this.#validator = gossipValidator({
      doc: init.doc,
      maxGossipBytes: this.#maxGossipBytes,
      validateUpdate: init.validateUpdate,
      stats: this.stats,
      log: this.#log,
      onBehind: (announced, author, via) => this.#auto.follow(announced, author, via),
      onGap: (via) => this.#auto.syncSoon(via, 'a gossip gap'),
    })
  }

  async start(): Promise<void> {
    this.#shutdown = new AbortController()
    setMaxListeners(Infinity, this.#shutdown.signal)
    const { registrar } = this.#components
    // read here, not in the factory: libp2p sets each service on the components as it builds it,
    // so in the factory pubsub exists only if it came earlier in the services map
    this.#pubsub = this.#components.pubsub
    await registrar.handle(c.PROTOCOL, this.#onStream, {
      maxInboundStreams: c.MAX_INBOUND_STREAMS,
      maxOutboundStreams: c.MAX_OUTBOUND_STREAMS,
    })
    this.#topologyId = await registrar.register(c.PROTOCOL, this.#auto.topology())
    this.#pubsub.topicValidators.set(this.topic, this.#validator)
    this.#doc.on('update', this.#onDocUpdate)
    this.#auto.start(this.#shutdown.signal)
    this.#started = true
  }

  /** gossipsub refuses subscribe() until it has started; every service has by afterStart. */
  afterStart(): void {
    this.#pubsub?.subscribe(this.topic)
  }

  /** The mirror of afterStart: gossipsub refuses unsubscribe() once stopped. */
  beforeStop(): void {
    try {
      this.#pubsub?.unsubscribe(this.topic)
    } catch (err) {
      this.#log.error('unsubscribing from %s failed - %e', this.topic, err)
    }
  }

  async stop(): Promise<void> {
    this.#started = false
    this.#auto.stop()
    this.#doc.off('update', this.#onDocUpdate)
    const validators = this.#pubsub?.topicValidators
    if (validators?.get(this.topic) === this.#validator) validators.delete(this.topic)
    if (this.#topologyId != null) this.#components.registrar.unregister(this.#topologyId)
    this.#topologyId = undefined
    this.#shutdown.abort(new SyncAbortedError('doc-sync stopped'))
    await this.#components.registrar.unhandle(c.PROTOCOL)
    await this.#tasks.settled()
  }

  syncWith(peer: PeerId, options: { signal?: AbortSignal } = {}): Promise<SyncResult> {
    if (!this.#started) return Promise.reject(new NotStartedError('doc-sync is not started'))
    return this.#tasks.track(this.#initiate(peer, options.signal))
  }

  whenIdle(): Promise<void> {
    return this.#tasks.settled()
  }

  async #initiate(peer: PeerId, callerSignal: AbortSignal | undefined): Promise<SyncResult> {
    const d = deadline(this.#syncTimeoutMs, callerSignal, this.#shutdown.signal)
    try {
      const connection = await this.#components.connectionManager.openConnection(peer, { signal: d.signal })
      const stream = await connection.newStream(c.PROTOCOL, { signal: d.signal })
      const result = await initiateSync(stream, this.#session(peer, d.signal))
      this.stats.syncsInitiated++
      this.#count(result)
      this.#log('synced with %p: sent %d B, received %d B', peer, result.sentBytes, result.receivedBytes)
      return result
    } catch (err) {
      this.stats.syncsFailed++
      throw d.signal.aborted && d.signal.reason instanceof Error ? d.signal.reason : err
    } finally {
      d.clear()
    }
  }

  readonly #onStream = ({ stream, connection }: IncomingStreamData): void => {
    const peer = connection.remotePeer
    if (!this.#started) {
      stream.abort(new NotStartedError('doc-sync is not started'))
      return
    }
    const d = deadline(this.#syncTimeoutMs, this.#shutdown.signal)
    const run = respondSync(stream, this.#session(peer, d.signal)).then(
      (result) => {
        this.stats.syncsResponded++
        this.#count(result)
        this.#log(
          'answered sync from %p: sent %d B, received %d B',
          peer,
          result.sentBytes,
          result.receivedBytes,
        )
      },
      (err: unknown) => {
        this.stats.syncsFailed++
        this.#logFailure('answering a sync from %p failed - %e', peer, err)
      },
    )
    void this.#tasks.track(run.finally(() => d.clear()))
  }

  #session(peer: PeerId, signal: AbortSignal): SyncSession {
    const doc = this.#doc
    return {
      doc,
      signal,
      maxMessageBytes: this.#maxSyncMessageBytes,
      accept: (update) => {
        try {
          checkUpdate(update, this.#validateUpdate)
        } catch (err) {
          this.stats.syncUpdatesRejected++ // logged with the failed sync
          throw err
        }
        Y.applyUpdate(doc, update, fromSync(peer.toString()))
      },
    }
  }

  readonly #onDocUpdate = (update: Uint8Array, origin: unknown): void => {
    if (!isOrigin(origin)) {
      this.#log('an update with an untagged origin is not gossiped; syncs will carry it')
      return
    }
    if (origin.kind !== 'local' || this.#pubsub == null) return
    const { data, announce } = gossipPayload(update, this.#maxGossipBytes)
    if (announce) this.stats.gossipAnnouncementsSent++
    else this.stats.gossipUpdatesSent++
    this.stats.gossipBytesSent += data.byteLength
    // never throws into the writer's transaction; on a one-node farm it publishes to nobody
    const published = this.#pubsub.publish(this.topic, data).then(
      () => undefined,
      (err: unknown) => {
        this.stats.gossipPublishErrors++
        this.#log.error('publishing a %d B doc update failed - %e', data.byteLength, err)
      },
    )
    void this.#tasks.track(published)
  }

  #count(result: SyncResult): void {
    this.stats.syncBytesSent += result.sentBytes
    this.stats.syncBytesReceived += result.receivedBytes
  }

  /** Shutdown is not a failure, and a peer without the protocol is worth a debug line only. */
  #logFailure(format: string, ...args: unknown[]): void {
    const err = args.at(-1)
    const name = err instanceof Error ? err.name : ''
    if (name === 'SyncAbortedError' && !this.#started) return
    if (name === 'UnsupportedProtocolError') this.#log(format, ...args)
    else this.#log.error(format, ...args)
  }
}
