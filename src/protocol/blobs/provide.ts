// Announcing blobs in the DHT, in the background and a few at a time: each one added or fetched, and
// once after the first connection every blob the store already held (provider records live in
// memory on the peers that keep them, so a restarted node announces again).

import type { ContentRouting, Logger } from '@libp2p/interface'
import { PROVIDE_CONCURRENCY } from './constants.ts'
import { blobCid } from './holders.ts'
import { deadline } from './signals.ts'
import type { BlobStats } from './stats.ts'

export class ProvideQueue {
  readonly #routing: ContentRouting
  readonly #log: Logger
  readonly #stats: BlobStats
  readonly #timeoutMs: number
  readonly #signal: () => AbortSignal
  readonly #queue: string[] = []
  readonly #queued = new Set<string>()
  #sources: AsyncIterator<string>[] = []
  #workers = 0
  #idle: Array<() => void> = []

  constructor(
    routing: ContentRouting,
    log: Logger,
    stats: BlobStats,
    timeoutMs: number,
    signal: () => AbortSignal,
  ) {
    this.#routing = routing
    this.#log = log
    this.#stats = stats
    this.#timeoutMs = timeoutMs
    this.#signal = signal
  }

  add(hash: string): void {
    if (this.#queued.has(hash)) return
    this.#queued.add(hash)
    this.#queue.push(hash)
    this.#spawn()
  }

  /** Hashes pulled lazily from `source` as workers free up (a store may hold many). */
  addAll(source: AsyncIterable<string>): void {
    this.#sources.push(source[Symbol.asyncIterator]())
    this.#spawn()
  }

  /** One provide now, outside the queue; rejects on failure. */
  async provideNow(hash: string, signal?: AbortSignal): Promise<void> {
    const d = deadline(this.#timeoutMs, `providing ${hash.slice(0, 12)}`, this.#signal(), signal)
    try {
      await this.#routing.provide(blobCid(hash), { signal: d.signal })
      this.#stats.provided++
    } catch (err) {
      this.#stats.provideFailures++
      throw err
    } finally {
      d.clear()
    }
  }

  /** Resolves when nothing is queued or running. */
  whenIdle(): Promise<void> {
    if (this.#workers === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  #spawn(): void {
    while (this.#workers < PROVIDE_CONCURRENCY && (this.#queue.length > 0 || this.#sources.length > 0)) {
      this.#workers++
      void this.#work().finally(() => {
        this.#workers--
        if (this.#workers === 0) for (const resolve of this.#idle.splice(0)) resolve()
      })
    }
  }

  async #work(): Promise<void> {
    for (;;) {
      if (this.#signal().aborted) {
        this.#queue.length = 0
        this.#queued.clear()
        this.#sources = []
        return
      }
      const hash = await this.#next()
      if (hash === undefined) return
      try {
        await this.provideNow(hash)
        this.#log('announced %s', hash.slice(0, 12))
      } catch (err) {
        this.#log('announcing %s failed - %e', hash.slice(0, 12), err)
      } finally {
        this.#queued.delete(hash)
      }
    }
  }

  async #next(): Promise<string | undefined> {
    const queued = this.#queue.shift()
    if (queued !== undefined) return queued
    while (this.#sources.length > 0) {
      const source = this.#sources[0]!
      try {
        const next = await source.next()
        if (next.done !== true) {
          this.#queued.add(next.value)
          return next.value
        }
      } catch (err) {
        this.#log.error('listing blobs to announce failed - %e', err)
      }
      if (this.#sources[0] === source) this.#sources.shift()
    }
    return undefined
  }
}
