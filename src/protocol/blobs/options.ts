// Options of the blob service: what a node may set, the defaults (constants.ts), and their checks.

import { InvalidParametersError } from '@libp2p/interface'
import type { BlobStore } from '../../node/blobs/store.ts'
import * as c from './constants.ts'

export interface BlobServiceInit {
  readonly store: BlobStore
  /** Large uploads (over 4 MiB) served at once before answering `busy` (default 2). */
  readonly maxUploads?: number
  readonly requestTimeoutMs?: number
  readonly idleTimeoutMs?: number
  readonly haveTimeoutMs?: number
  readonly maxHavePeers?: number
  readonly dhtTimeoutMs?: number
  readonly findTimeoutMs?: number
  readonly maxAttempts?: number
  readonly provideTimeoutMs?: number
  /**
   * Announce every blob already held this long after the node first connects to a peer (default
   * 2000 ms), and again after a connection that ends a time alone during which blobs were added;
   * false: never (blobs added or fetched while connected are announced all the same).
   */
  readonly announceDelayMs?: number | false
  /** PRNG in [0, 1) for picking holders (default Math.random). */
  readonly random?: () => number
}

export type BlobServiceOptions = Required<Omit<BlobServiceInit, 'store' | 'random'>>

export function resolveOptions(init: BlobServiceInit): BlobServiceOptions {
  const positive = (v: number | undefined, fallback: number, key: string): number => {
    const n = v ?? fallback
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new InvalidParametersError(`blobService: ${key} must be a positive integer, got ${v}`)
    }
    return n
  }
  const delay = init.announceDelayMs
  return {
    maxUploads: positive(init.maxUploads, c.DEFAULT_MAX_UPLOADS, 'maxUploads'),
    requestTimeoutMs: positive(init.requestTimeoutMs, c.DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs'),
    idleTimeoutMs: positive(init.idleTimeoutMs, c.DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs'),
    haveTimeoutMs: positive(init.haveTimeoutMs, c.DEFAULT_HAVE_TIMEOUT_MS, 'haveTimeoutMs'),
    maxHavePeers: positive(init.maxHavePeers, c.DEFAULT_MAX_HAVE_PEERS, 'maxHavePeers'),
    dhtTimeoutMs: positive(init.dhtTimeoutMs, c.DEFAULT_DHT_TIMEOUT_MS, 'dhtTimeoutMs'),
    findTimeoutMs: positive(init.findTimeoutMs, c.DEFAULT_FIND_TIMEOUT_MS, 'findTimeoutMs'),
    maxAttempts: positive(init.maxAttempts, c.DEFAULT_MAX_ATTEMPTS, 'maxAttempts'),
    provideTimeoutMs: positive(init.provideTimeoutMs, c.DEFAULT_PROVIDE_TIMEOUT_MS, 'provideTimeoutMs'),
    announceDelayMs:
      delay === false ? false : positive(delay, c.DEFAULT_ANNOUNCE_DELAY_MS, 'announceDelayMs'),
  }
}
