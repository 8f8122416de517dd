// Heartbeat payload: what a host says about itself about once a second. JSON, bounded, validated.

export const HEARTBEAT_VERSION = 1
export const MAX_HEARTBEAT_BYTES = 16 * 1024

export interface RunningTask {
  readonly job: string
  readonly task: number
  readonly attempt: number
}

export interface HostApp {
  readonly name: string
  readonly version: string | null
}

/** A host's announcement; the sender's identity is the gossip signature, never a field. */
export interface Heartbeat {
  readonly v: typeof HEARTBEAT_VERSION
  readonly name: string
  /** Sender's counter: a restarted sender starts again at 0. */
  readonly seq: number
  readonly slots: number
  readonly free: number
  readonly running: readonly RunningTask[]
  readonly cores: number
  readonly memoryMb: number
  readonly apps: readonly HostApp[]
}

export class InvalidHeartbeatError extends Error {
  static override readonly name = 'InvalidHeartbeatError'
  override readonly name = 'InvalidHeartbeatError'
}

export function encodeHeartbeat(hb: Heartbeat): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(hb))
  if (bytes.byteLength > MAX_HEARTBEAT_BYTES) throw new InvalidHeartbeatError('heartbeat too large')
  return bytes
}

const intIn = (x: unknown, lo: number, hi: number): x is number =>
  typeof x === 'number' && Number.isSafeInteger(x) && x >= lo && x <= hi
const str = (x: unknown, max: number): x is string => typeof x === 'string' && x.length > 0 && x.length <= max

export function decodeHeartbeat(data: Uint8Array): Heartbeat {
  if (data.byteLength > MAX_HEARTBEAT_BYTES) throw new InvalidHeartbeatError('heartbeat too large')
  let x: unknown
  try {
    x = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data))
  } catch {
    throw new InvalidHeartbeatError('heartbeat is not JSON')
  }
  if (typeof x !== 'object' || x === null) throw new InvalidHeartbeatError('heartbeat is not an object')
  const h = x as Record<string, unknown>
  if (h.v !== HEARTBEAT_VERSION) throw new InvalidHeartbeatError(`unknown heartbeat version ${String(h.v)}`)
  if (!str(h.name, 100)) throw new InvalidHeartbeatError('heartbeat name is malformed')
  if (!intIn(h.seq, 0, Number.MAX_SAFE_INTEGER)) throw new InvalidHeartbeatError('heartbeat seq is malformed')
  if (!intIn(h.slots, 0, 1024) || !intIn(h.free, 0, h.slots))
    throw new InvalidHeartbeatError('slots are malformed')
  if (!intIn(h.cores, 0, 4096) || !intIn(h.memoryMb, 0, 1 << 30)) {
    throw new InvalidHeartbeatError('cores or memory are malformed')
  }
  if (!Array.isArray(h.running) || h.running.length > 1024)
    throw new InvalidHeartbeatError('running is malformed')
  const running = h.running.map((r: unknown) => {
    const o = r as Record<string, unknown>
    if (
      typeof o !== 'object' ||
      o === null ||
      !str(o.job, 64) ||
      !intIn(o.task, 0, 1e6) ||
      !intIn(o.attempt, 0, 1e4)
    ) {
      throw new InvalidHeartbeatError('a running task is malformed')
    }
    return { job: o.job, task: o.task, attempt: o.attempt }
  })
  if (!Array.isArray(h.apps) || h.apps.length > 64) throw new InvalidHeartbeatError('apps are malformed')
  const apps = h.apps.map((a: unknown) => {
    const o = a as Record<string, unknown>
    if (
      typeof o !== 'object' ||
      o === null ||
      !str(o.name, 64) ||
      !(o.version === null || str(o.version, 64))
    ) {
      throw new InvalidHeartbeatError('an app entry is malformed')
    }
    return { name: o.name, version: o.version as string | null }
  })
  return {
    v: HEARTBEAT_VERSION,
    name: h.name,
    seq: h.seq,
    slots: h.slots,
    free: h.free,
    running,
    cores: h.cores,
    memoryMb: h.memoryMb,
    apps,
  }
}
