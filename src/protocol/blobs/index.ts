// blobs: content-addressed files peer to peer. Serves `get` (the bytes of a blob from an offset) and
// `have` (sizes) on /openfarm/blob/1.0.0; fetches by finding holders (connected peers' `have` plus
// kad-dht provider records) and downloading from a random one, resuming and verifying; announces
// every blob that enters the store. It knows nothing of jobs beyond the job ids passed through.

import { setMaxListeners } from 'node:events'
import {
  type ComponentLogger,
  type ContentRouting,
  type IncomingStreamData,
  type Libp2pEvents,
  type Logger,
  type PeerId,
  type PeerStore,
  type Startable,
  serviceCapabilities,
  serviceDependencies,
  type TypedEventTarget,
} from '@libp2p/interface'
import type { ConnectionManager, Registrar } from '@libp2p/interface-internal'
import { peerIdFromString } from '@libp2p/peer-id'
import { assertBlobHash } from '../../node/blobs/hash.ts'
import type { BlobStore } from '../../node/blobs/store.ts'
import * as c from './constants.ts'
import { askHave, askMany } from './download.ts'
import { BlobAbortedError, NotStartedError } from './errors.ts'
import { fetchBlob } from './fetch.ts'
import { findHolders } from './holders.ts'
import { type BlobServiceInit, type BlobServiceOptions, resolveOptions } from './options.ts'
import { ProvideQueue } from './provide.ts'
import { serveStream } from './serve.ts'
import { abortedPromise, deadline, TaskSet } from './signals.ts'
import { type BlobStats, emptyStats } from './stats.ts'

export * from './codec.ts'
export * from './constants.ts'
export * from './errors.ts'
export { blobCid } from './holders.ts'
export type { BlobServiceInit } from './options.ts'
export type { BlobStats } from './stats.ts'

export interface BlobServiceComponents {
  readonly registrar: Registrar
  readonly connectionManager: ConnectionManager
  readonly peerId: PeerId
  readonly peerStore: PeerStore
  readonly contentRouting: ContentRouting
  readonly events: TypedEventTarget<Libp2pEvents>
  readonly logger: ComponentLogger
}

export interface FetchOptions {
  /** The blob's size if known: holders claiming another size are not used. */
  readonly size?: number
  /** Reference the blob for this job in the same index write that installs it. */
  readonly job?: string
  /** Peers likely to hold it (the maker an output record names): asked first, dialled if need be. */
  readonly from?: readonly string[]
  /**
   * Announce the blob (a DHT provider record) once held; default true, so a fetched input serves the
   * next fetcher. An output pulled home says false: whoever wants it asks the maker its record names,
   * or the connected peers, and a provide per frame cost more CPU than the frame's transfer.
   */
  readonly announce?: boolean
  readonly signal?: AbortSignal
}

export interface BlobService {
  readonly store: BlobStore
  readonly stats: Readonly<BlobStats>
  /** Makes the blob present in the local store (no-op if it is); rejects with a named error. */
  fetch(hash: string, options?: FetchOptions): Promise<void>
  /**
   * Gets the small ones of `blobs` (at most MAX_MANY_BLOB_BYTES each) that this node lacks from `from`
   * over one stream per MAX_MANY_HASHES / MAX_MANY_BYTES: the frames of a task coming home. Their
   * bytes, each checked against its hash, are handed over, not stored: the caller writes them where
   * they go (the submitter's output directory) and the store keeps no second copy. Best effort:
   * resolves with what came; whatever did not is for `fetch`, which also finds other holders.
   */
  getSmall(
    blobs: readonly { readonly hash: string; readonly size: number }[],
    options: { readonly from: string; readonly signal?: AbortSignal },
  ): Promise<Map<string, Uint8Array>>
  /** Peers that hold the blob now (connected peers asked, plus DHT providers). */
  holders(hash: string, options?: { signal?: AbortSignal }): Promise<PeerId[]>
  /** Announces that this node holds the blob (DHT provider record); resolves when done. */
  provide(hash: string, options?: { signal?: AbortSignal }): Promise<void>
  /** Settles the background work running now (fetches, announcements); for tests and benchmarks. */
  whenIdle(): Promise<void>
}

export function blobService(init: BlobServiceInit): (components: BlobServiceComponents) => BlobService {
  return (components) => new BlobServiceImpl(components, init)
}

class BlobServiceImpl implements BlobService, Startable {
  readonly [Symbol.toStringTag] = '@openfarm/blobs'
  readonly [serviceCapabilities]: string[] = ['@openfarm/blobs']
  // identify tells us which connected peers speak the protocol (and fills the DHT's routing table)
  readonly [serviceDependencies]: string[] = ['@libp2p/identify']
  readonly store: BlobStore
  readonly stats = emptyStats()

  readonly #components: BlobServiceComponents
  readonly #log: Logger
  readonly #opts: BlobServiceOptions
  readonly #random: () => number
  readonly #tasks = new TaskSet()
  readonly #inflight = new Map<string, Inflight>()
  readonly #uploads = { active: 0 }
  readonly #provides: ProvideQueue
  #shutdown = new AbortController()
  #started = false
  /** Announce every held blob at the next connection: at start, and after adds made while alone. */
  #announceAll = true
  #announceTimer: ReturnType<typeof setTimeout> | undefined
  #offAdded: (() => void) | undefined

  constructor(components: BlobServiceComponents, init: BlobServiceInit) {
    this.#components = components
    this.store = init.store
    this.#log = components.logger.forComponent('openfarm:blobs')
    this.#opts = resolveOptions(init)
    this.#random = init.random ?? Math.random
    this.#provides = new ProvideQueue(
      components.contentRouting,
      this.#log,
      this.stats,
      this.#opts.provideTimeoutMs,
      () => this.#shutdown.signal,
    )
  }

  async start(): Promise<void> {
    this.#shutdown = new AbortController()
    setMaxListeners(Infinity, this.#shutdown.signal)
    await this.#components.registrar.handle(c.PROTOCOL, this.#onStream, {
      maxInboundStreams: c.MAX_INBOUND_STREAMS,
      maxOutboundStreams: c.MAX_OUTBOUND_STREAMS,
    })
    this.#announceAll = this.#opts.announceDelayMs !== false
    this.#offAdded = this.store.onAdded((hash, _size, o) => {
      if (o.announce) this.#announce(hash)
    })
    this.#components.events.addEventListener('peer:connect', this.#onConnect)
    this.#started = true
  }

  async stop(): Promise<void> {
    this.#started = false
    this.#offAdded?.()
    this.#components.events.removeEventListener('peer:connect', this.#onConnect)
    clearTimeout(this.#announceTimer)
    this.#shutdown.abort(new BlobAbortedError('the blob service stopped'))
    await this.#components.registrar.unhandle(c.PROTOCOL)
    await this.#tasks.drained()
    await this.#provides.whenIdle()
  }

  fetch(hash: string, options: FetchOptions = {}): Promise<void> {
    if (!this.#started) return Promise.reject(new NotStartedError('the blob service is not started'))
    try {
      assertBlobHash(hash)
    } catch (err) {
      return Promise.reject(err)
    }
    const running = this.#inflight.get(hash)
    if (running !== undefined) return this.#joined(running, hash, options)
    const d = deadline(undefined, 'fetch', this.#shutdown.signal, options.signal)
    const announce = options.announce ?? true
    const run = fetchBlob(
      {
        store: this.store,
        stats: this.stats,
        log: this.#log,
        random: this.#random,
        idleTimeoutMs: this.#opts.idleTimeoutMs,
        findTimeoutMs: this.#opts.findTimeoutMs,
        maxAttempts: this.#opts.maxAttempts,
        find: (h, signal, opts) => findHolders(this.#finder(), h, signal, opts),
        openGet: (peer, signal) => this.#openStream(peer, signal),
      },
      {
        hash,
        size: options.size,
        job: options.job,
        announce,
        from: peersOf(options.from).filter((p) => !p.equals(this.#components.peerId)),
        signal: d.signal,
      },
    ).finally(() => {
      d.clear()
      this.#inflight.delete(hash)
    })
    this.#inflight.set(hash, { run, signal: options.signal, announce })
    return this.#tasks.track(run)
  }

  getSmall(
    blobs: readonly { readonly hash: string; readonly size: number }[],
    options: { readonly from: string; readonly signal?: AbortSignal },
  ): Promise<Map<string, Uint8Array>> {
    if (!this.#started) return Promise.reject(new NotStartedError('the blob service is not started'))
    return this.#tasks.track(this.#getSmall(blobs, options))
  }

  async #getSmall(
    blobs: readonly { readonly hash: string; readonly size: number }[],
    options: { readonly from: string; readonly signal?: AbortSignal },
  ): Promise<Map<string, Uint8Array>> {
    for (const b of blobs) assertBlobHash(b.hash)
    const got = new Map<string, Uint8Array>()
    const [peer] = peersOf([options.from])
    if (peer === undefined || peer.equals(this.#components.peerId)) return got
    // small, not held, not being fetched, each once; in requests of at most MAX_MANY_HASHES / _BYTES
    const batches: { hash: string; size: number }[][] = []
    const seen = new Set<string>()
    let batch: { hash: string; size: number }[] = []
    let bytes = 0
    for (const b of blobs) {
      if (seen.has(b.hash) || this.#inflight.has(b.hash)) continue
      seen.add(b.hash)
      if (!Number.isSafeInteger(b.size) || b.size < 0 || b.size > c.MAX_MANY_BLOB_BYTES) continue
      if (await this.store.has(b.hash)) continue
      if (batch.length === c.MAX_MANY_HASHES || bytes + b.size > c.MAX_MANY_BYTES) {
        batches.push(batch)
        batch = []
        bytes = 0
      }
      batch.push({ hash: b.hash, size: b.size })
      bytes += b.size
    }
    if (batch.length > 0) batches.push(batch)
    for (const list of batches) {
      const d = deadline(undefined, 'fetch', this.#shutdown.signal, options.signal)
      try {
        const stream = await this.#openStream(peer, d.signal)
        const r = await askMany(
          stream,
          list.map((b) => b.hash),
          list.map((b) => b.size),
          { signal: d.signal, idleTimeoutMs: this.#opts.idleTimeoutMs },
        )
        if (r.error !== undefined) this.#log('get-many from %p ended short - %e', peer, r.error)
        for (const [hash, data] of r.blobs) {
          this.stats.bytesFetched += data.byteLength
          this.stats.fetched++
          got.set(hash, data)
        }
        if (r.error !== undefined) break
      } catch (err) {
        if (d.signal.aborted) throw err
        this.#log('get-many from %p failed - %e', peer, err)
        break
      } finally {
        d.clear()
      }
    }
    return got
  }

  async holders(hash: string, options: { signal?: AbortSignal } = {}): Promise<PeerId[]> {
    if (!this.#started) throw new NotStartedError('the blob service is not started')
    assertBlobHash(hash)
    const d = deadline(undefined, 'holders', this.#shutdown.signal, options.signal)
    try {
      const found = await findHolders(this.#finder(), hash, d.signal)
      return [...found.values()].filter((h) => h.size >= 0).map((h) => h.peer)
    } finally {
      d.clear()
    }
  }

  provide(hash: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.#started) return Promise.reject(new NotStartedError('the blob service is not started'))
    try {
      assertBlobHash(hash)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#tasks.track(this.#provides.provideNow(hash, options.signal))
  }

  async whenIdle(): Promise<void> {
    await this.#tasks.drained()
    await this.#provides.whenIdle()
  }

  /**
   * A second fetch of a blob already being fetched waits for that one (then refs its own job); if that
   * one was aborted by its own caller, this one starts over rather than fail with someone else's abort.
   * It announces the blob if it asked to and that one did not.
   */
  async #joined(first: Inflight, hash: string, options: FetchOptions): Promise<void> {
    const d = deadline(undefined, 'fetch', options.signal)
    try {
      await Promise.race([first.run, abortedPromise(d.signal)])
    } catch (err) {
      if (first.signal?.aborted !== true || options.signal?.aborted === true || !this.#started) throw err
      return this.fetch(hash, options)
    } finally {
      d.clear()
    }
    if (options.job !== undefined) await this.store.ref(options.job, [hash])
    if ((options.announce ?? true) && !first.announce && this.#started) this.#announce(hash)
  }

  #finder() {
    const { connectionManager, peerStore, contentRouting, peerId } = this.#components
    return {
      self: peerId,
      connectionManager,
      peerStore,
      contentRouting,
      log: this.#log,
      random: this.#random,
      haveTimeoutMs: this.#opts.haveTimeoutMs,
      maxHavePeers: this.#opts.maxHavePeers,
      dhtTimeoutMs: this.#opts.dhtTimeoutMs,
      have: async (peer: PeerId, hash: string, signal: AbortSignal) => {
        const [entry] = await askHave(await this.#openStream(peer, signal), [hash], signal)
        return entry ?? { size: -1, partial: -1 }
      },
    }
  }

  async #openStream(peer: PeerId, signal: AbortSignal) {
    const connection = await this.#components.connectionManager.openConnection(peer, { signal })
    return connection.newStream(c.PROTOCOL, { signal })
  }

  readonly #onStream = ({ stream, connection }: IncomingStreamData): void => {
    if (!this.#started) {
      stream.abort(new NotStartedError('the blob service is not started'))
      return
    }
    const peer = connection.remotePeer
    const run = serveStream(stream, peer, {
      store: this.store,
      stats: this.stats,
      log: this.#log,
      requestTimeoutMs: this.#opts.requestTimeoutMs,
      idleTimeoutMs: this.#opts.idleTimeoutMs,
      maxUploads: this.#opts.maxUploads,
      uploads: this.#uploads,
      signal: this.#shutdown.signal,
    }).catch((err: unknown) => {
      if (!this.#started) return
      this.#log('serving a blob request from %p failed - %e', peer, err)
    })
    void this.#tasks.track(run)
  }

  /** A provide with no peer to tell would wait for its timeout: left to the next connection instead. */
  #announce(hash: string): void {
    if (this.#components.connectionManager.getConnections().length > 0) this.#provides.add(hash)
    else this.#announceAll = true
  }

  /** A moment after a connection (so identify has filled the DHT's routing table), if there is a backlog. */
  readonly #onConnect = (): void => {
    if (!this.#announceAll || this.#announceTimer !== undefined) return
    this.#announceTimer = setTimeout(() => {
      this.#announceTimer = undefined
      if (!this.#started || !this.#announceAll) return
      this.#announceAll = false
      this.#provides.addAll(
        (async function* (store: BlobStore) {
          for await (const { hash } of store.list()) yield hash
        })(this.store),
      )
    }, this.#opts.announceDelayMs || 0)
  }
}

/** A fetch running now, which a second fetch of the same blob joins. */
interface Inflight {
  readonly run: Promise<void>
  readonly signal: AbortSignal | undefined
  readonly announce: boolean
}

/** Peer ids given as text; malformed ones are left out (they only ever were a hint). */
function peersOf(ids: readonly string[] | undefined): PeerId[] {
  return (ids ?? []).flatMap((id) => {
    try {
      return [peerIdFromString(id)]
    } catch {
      return []
    }
  })
}
