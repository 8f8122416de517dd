// One fetch of one blob: find holders, download from one picked at random (so a popular blob is served
// by every peer that has it) or, when every whole copy is busy, from a peer still downloading it that
// is ahead of us (it relays as it receives), resume from the partial's length after a broken stream
// (same or another holder), and on a hash mismatch discard the bytes and go to another holder. A holder that lies (size,
// extra bytes, a garbage header) or whose bytes failed the hash is not asked again for this blob.

import type { Logger, PeerId, Stream } from '@libp2p/interface'
import type { PartialBlob } from '../../node/blobs/partial.ts'
import type { BlobStore } from '../../node/blobs/store.ts'
import { BUSY_BACKOFF_MS, DEFAULT_WINDOW_BYTES, MAX_BUSY_BACKOFF_MS } from './constants.ts'
import { type GetOutcome, getInto } from './download.ts'
import { BlobUnavailableError } from './errors.ts'
import type { FindOptions, Holder } from './holders.ts'
import { sleep } from './signals.ts'
import type { BlobStats } from './stats.ts'

export interface FetchDeps {
  readonly store: BlobStore
  readonly stats: BlobStats
  readonly log: Logger
  readonly random: () => number
  readonly idleTimeoutMs: number
  readonly findTimeoutMs: number
  readonly maxAttempts: number
  /** Holders not in `skip`; the map may still grow after it resolves (a late DHT answer). */
  find(hash: string, signal: AbortSignal, opts: FindOptions): Promise<Map<string, Holder>>
  openGet(peer: PeerId, signal: AbortSignal): Promise<Stream>
}

export interface FetchRequest {
  readonly hash: string
  /** The size the blob must have (holders claiming another are ignored); else the holders' majority. */
  readonly size?: number
  /** Reference the blob for this job as it enters the store. */
  readonly job?: string
  /** Announce it in the DHT once held (FetchOptions.announce). */
  readonly announce?: boolean
  /**
   * Peers named as holders by someone who knows (an output's record names its maker): with the size
   * known, they are asked for the bytes straight away, without a `have` round first.
   */
  readonly from?: readonly PeerId[]
  readonly signal: AbortSignal
}

export async function fetchBlob(deps: FetchDeps, req: FetchRequest): Promise<void> {
  const { store, stats, log } = deps
  const { hash, signal } = req
  const bad = new Map<string, string>() // peer -> why it is not asked again
  const busyUntil = new Map<string, number>()
  const stalls = new Map<string, number>()
  const gone = new Set<string>() // answered not-found: not asked again by this fetch
  const contributors = new Set<string>()
  let holders = new Map<string, Holder>()
  if (req.size !== undefined) {
    for (const peer of req.from ?? []) holders.set(peer.toString(), { peer, size: req.size, partial: -1 })
  }
  let partial: PartialBlob | undefined
  let attempts = 0
  let searches = 0
  let backoff = 100
  let busyBackoff = BUSY_BACKOFF_MS
  let lastUsable = Date.now()
  const shortHash = hash.slice(0, 12)
  const fail = (why: string): BlobUnavailableError => {
    const peers = [...bad].map(([p, r]) => `${p.slice(-8)}: ${r}`).join('; ')
    return new BlobUnavailableError(`blob ${shortHash}: ${why}${peers === '' ? '' : ` (dropped ${peers})`}`)
  }
  const discard = async (): Promise<void> => {
    await partial?.discard()
    partial = undefined
    contributors.clear()
  }

  // not held, but this node keeps a copy elsewhere (an output it brought home): no peer needed
  if (!(await store.has(hash)) && (await store.restore(hash))) {
    if (req.job !== undefined) await store.ref(req.job, [hash])
    return
  }
  try {
    for (;;) {
      signal.throwIfAborted()
      if (await store.has(hash)) return
      for (const [id, h] of holders) {
        if (bad.has(id) || h.size < 0) continue
        if (h.size > store.maxBlobBytes) {
          stats.liars++
          bad.set(id, `claims ${h.size} bytes, over the limit of ${store.maxBlobBytes}`)
        } else if (req.size !== undefined && h.size !== req.size) {
          bad.set(id, `claims ${h.size} bytes, not ${req.size}`)
        }
      }
      const live = [...holders].filter(([id]) => !bad.has(id))
      const whole = live.filter(([, h]) => h.size >= 0)
      const size =
        req.size ??
        (whole.length > 0
          ? majority(
              whole.map(([, h]) => h.size),
              deps.random,
            )
          : undefined)
      if (partial !== undefined && size !== undefined && partial.size !== size) await discard()
      const now = Date.now()
      const ready = live.filter(([id]) => (busyUntil.get(id) ?? 0) <= now)
      // whole copies, and peers still downloading it that are ahead of us (they relay what they have);
      // with no size known yet, the peers downloading it (one may finish)
      const offset = partial?.length ?? 0
      const usable = live.filter(
        ([, h]) => size === undefined || h.size === size || (h.size < 0 && h.partial > offset),
      )
      let candidates = ready.filter(([, h]) => h.size === size)
      // every whole copy is busy: a relay ahead of us
      if (candidates.length === 0 && size !== undefined)
        candidates = ready.filter(([, h]) => h.size < 0 && h.partial > offset)
      // usable holders that are busy: waiting for one is not a failure. A relay behind us is not one:
      // two peers each waiting for the other (the maker gone) would wait for ever; one that gets
      // ahead meanwhile (it downloads from somewhere) is usable at the next search
      if (usable.length > 0) lastUsable = now
      if (size === undefined || candidates.length === 0) {
        if (searches > 0 && now - lastUsable > deps.findTimeoutMs) throw fail('no holder found')
        if (searches > 0) {
          const wait = live.length > 0 ? jitter(busyBackoff, deps.random) : backoff
          await sleep(wait, signal)
          if (live.length > 0) busyBackoff = Math.min(busyBackoff * 2, MAX_BUSY_BACKOFF_MS)
          else backoff = Math.min(backoff * 2, 2000)
        }
        // known holders are refreshed (how far relays got), newcomers join; while whole copies are
        // known the DHT is asked only every few rounds
        const dht = whole.length === 0 || searches % DHT_EVERY_N_SEARCHES === 0
        const more = await deps.find(hash, signal, { skip: (id) => bad.has(id) || gone.has(id), dht })
        for (const [id, h] of more) holders.set(id, h)
        searches++
        continue
      }
      if (++attempts > deps.maxAttempts) throw fail(`gave up after ${deps.maxAttempts} attempts`)
      const [id, holder] = candidates[Math.floor(deps.random() * candidates.length)]!
      partial ??= await store.openPartial(hash, size)
      const before = partial.length
      const outcome = await attempt(deps, holder.peer, partial, signal)
      if (partial.length > before) {
        contributors.add(id)
        if (before > 0) stats.resumes++
      }
      switch (outcome.kind) {
        case 'done': {
          const p = partial
          partial = undefined
          try {
            await p.finish(req.job, req.announce ?? true)
          } catch (err) {
            if ((err as Error).name !== 'BlobHashMismatchError') throw err
            stats.mismatches++
            log.error('blob %s from %s failed its hash - %e', shortHash, [...contributors].join(','), err)
            for (const c of contributors) bad.set(c, 'sent bytes that failed the hash')
            contributors.clear()
            continue
          }
          stats.fetched++
          log('fetched %s (%d B) from %s', shortHash, size, [...contributors].join(','))
          return
        }
        case 'refused':
          if (outcome.code === 'busy') {
            busyUntil.set(id, Date.now() + jitter(busyBackoff, deps.random))
            attempts-- // waiting is not failing
          } else if (outcome.code === 'not-found') {
            holders.delete(id)
            gone.add(id)
          } else bad.set(id, `answered ${outcome.code}`)
          break
        case 'lied':
          stats.liars++
          log.error('holder %s of %s broke the protocol - %e', id, shortHash, outcome.error)
          bad.set(id, outcome.error.message)
          if (outcome.tainted) await discard()
          break
        case 'broken': {
          log('download of %s from %s broke at %d - %e', shortHash, id, partial.length, outcome.error)
          if (partial.length > before) break
          const n = (stalls.get(id) ?? 0) + 1
          stalls.set(id, n)
          if (n >= 2) holders.delete(id) // may come back in a later search
          break
        }
      }
      if (holders.size === 0 || [...holders.keys()].every((h) => bad.has(h))) holders = new Map()
    }
  } catch (err) {
    stats.fetchFailures++
    throw err
  } finally {
    await partial
      ?.close()
      .catch((err: unknown) => log.error('closing the partial of %s failed - %e', shortHash, err))
  }
}

async function attempt(
  deps: FetchDeps,
  peer: PeerId,
  partial: PartialBlob,
  signal: AbortSignal,
): Promise<GetOutcome> {
  let stream: Stream
  try {
    stream = await deps.openGet(peer, signal)
  } catch (err) {
    if (signal.aborted) throw err
    return { kind: 'broken', error: err instanceof Error ? err : new Error(String(err)) }
  }
  return getInto(stream, partial, {
    signal,
    idleTimeoutMs: deps.idleTimeoutMs,
    window: DEFAULT_WINDOW_BYTES,
    onBytes: (n) => {
      deps.stats.bytesFetched += n
    },
  })
}

/** While whole copies are known but busy, one search in this many also asks the DHT. */
const DHT_EVERY_N_SEARCHES = 4

/** The most claimed size; a tie goes to a random one of the tied. */
function majority(sizes: readonly number[], random: () => number): number {
  const counts = new Map<number, number>()
  for (const s of sizes) counts.set(s, (counts.get(s) ?? 0) + 1)
  const top = Math.max(...counts.values())
  const tied = [...counts].filter(([, c]) => c === top).map(([s]) => s)
  return tied[Math.floor(random() * tied.length)]!
}

/** `ms` give or take a quarter, so peers turned away together do not all come back together. */
function jitter(ms: number, random: () => number): number {
  return Math.round(ms * (0.75 + random() / 2))
}
