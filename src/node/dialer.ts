// libp2p 2.x finds peers (mDNS) but does not dial them. This keeps the farm connected: it dials what
// is discovered and the bootstrap addresses, and redials them after a drop.

import type { Logger, PeerId } from '@libp2p/interface'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import { OtherFarmKeyError } from './farmnet.ts'
import type { FarmLibp2p } from './libp2p.ts'

export class OtherFarmError extends Error {
  static override readonly name = 'OtherFarmError'
  override readonly name = 'OtherFarmError'
}

export class BadAddressError extends Error {
  static override readonly name = 'BadAddressError'
  override readonly name = 'BadAddressError'
}

/** The farm network's "another key" error, wherever libp2p put it (itself, a cause, an AggregateError). */
function otherKey(err: unknown, depth = 0): OtherFarmKeyError | undefined {
  if (err instanceof OtherFarmKeyError) return err
  if (depth > 4 || !(err instanceof Error)) return undefined
  const nested = [err.cause, ...(err instanceof AggregateError ? err.errors : [])]
  for (const e of nested) {
    const found = otherKey(e, depth + 1)
    if (found !== undefined) return found
  }
  return undefined
}

/** Says what a failed dial means; the farm network's handshake names a peer with another key. */
export function explainDialError(err: unknown, target: string): Error {
  const other = otherKey(err)
  if (other !== undefined) return new OtherFarmError(`${target}: ${other.message}`, { cause: err })
  const msg = (err as Error)?.message ?? String(err)
  return new Error(`${target}: ${msg}`, { cause: err })
}

const DIAL_TIMEOUT_MS = 5_000

export function parseBootstrap(addr: string): Multiaddr {
  try {
    return multiaddr(addr)
  } catch (err) {
    throw new BadAddressError(
      `--bootstrap ${JSON.stringify(addr)} is not a multiaddr (e.g. /ip4/192.168.1.5/tcp/4100)`,
      {
        cause: err,
      },
    )
  }
}

export interface DialerInit {
  readonly bootstrap: readonly Multiaddr[]
  readonly redialMs?: number
  readonly log: Logger
  /** Told when a dial fails (wrong farm, unreachable), once per target and reason. */
  readonly onDialError?: (err: Error) => void
}

export class Dialer {
  private readonly node: FarmLibp2p
  private readonly init: DialerInit
  private readonly known = new Map<string, PeerId>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private readonly reported = new Set<string>()
  private stopped = false

  constructor(node: FarmLibp2p, init: DialerInit) {
    this.node = node
    this.init = init
  }

  private readonly onDiscovery = (evt: CustomEvent<{ id: PeerId }>) => {
    const id = evt.detail.id
    if (id.equals(this.node.peerId)) return
    this.known.set(id.toString(), id)
    void this.dialPeer(id)
  }

  private readonly onConnect = (evt: CustomEvent<PeerId>) => {
    this.known.set(evt.detail.toString(), evt.detail)
  }

  start(): void {
    this.node.addEventListener('peer:discovery', this.onDiscovery as never)
    this.node.addEventListener('peer:connect', this.onConnect as never)
    this.tick()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.node.removeEventListener('peer:discovery', this.onDiscovery as never)
    this.node.removeEventListener('peer:connect', this.onConnect as never)
  }

  private tick(): void {
    if (this.stopped) return
    for (const ma of this.init.bootstrap) void this.dialAddr(ma)
    for (const id of this.known.values()) void this.dialPeer(id)
    this.timer = setTimeout(() => this.tick(), this.init.redialMs ?? 5_000)
    this.timer.unref?.()
  }

  private connected(id: string): boolean {
    return this.node.getConnections().some((c) => c.remotePeer.toString() === id)
  }

  private async dialPeer(id: PeerId): Promise<void> {
    if (this.stopped || this.connected(id.toString())) return
    try {
      await this.node.dial(id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
    } catch (err) {
      this.report(explainDialError(err, id.toString()))
    }
  }

  private async dialAddr(ma: Multiaddr): Promise<void> {
    const pid = ma.getPeerId()
    if (this.stopped || (pid !== null && this.connected(pid))) return
    const host = ma.toString()
    const already = this.node.getConnections().some((c) => c.remoteAddr.toString().startsWith(host))
    if (already) return
    try {
      const conn = await this.node.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      this.known.set(conn.remotePeer.toString(), conn.remotePeer)
    } catch (err) {
      this.report(explainDialError(err, host))
    }
  }

  private report(err: Error): void {
    const key = err.message
    if (this.reported.has(key)) {
      this.init.log('%s', key)
      return
    }
    this.reported.add(key)
    this.init.log.error('%s', key)
    this.init.onDialError?.(err)
  }
}
