// Paired read/write functions for every message of the doc-sync wire: stream frames and gossip payloads.
// Readers never trust their input: each throws a named error instead of returning something half-valid.

import * as Y from 'yjs'
import { GossipType, type SyncFrameType } from './constants.ts'
import {
  InvalidMessageError,
  InvalidStateVectorError,
  InvalidUpdateError,
  MessageTooLargeError,
} from './errors.ts'

/** An update as Y.decodeUpdate reads it: its structs and its delete set. */
export type DecodedUpdate = ReturnType<typeof Y.decodeUpdate>

/**
 * Rejects an update the farm schema does not allow; throws a named error. `decoded` is the update as
 * checkUpdate read it, so a validator need not decode it again (a newcomer's sync is megabytes).
 */
export type UpdateValidator = (update: Uint8Array, decoded: DecodedUpdate) => void

export type GossipMessage =
  | { readonly type: typeof GossipType.UPDATE; readonly update: Uint8Array }
  | { readonly type: typeof GossipType.ANNOUNCE; readonly stateVector: Map<number, number> }

/**
 * The bytes of a received frame as it-length-prefixed hands them over. Structural on purpose: the
 * project's own uint8arraylist is 3.x, the libp2p 2.x line (it-length-prefixed included) uses 2.x.
 */
export interface FrameBytes {
  readonly byteLength: number
  subarray(begin?: number): Uint8Array
}

/** A sync frame without its length prefix: `[type][payload]`. */
export function encodeFrame(type: SyncFrameType, payload: Uint8Array): Uint8Array {
  return prefixed(type, payload)
}

/** Reads a sync frame and checks that it is the one the exchange expects next. */
export function decodeFrame(frame: FrameBytes, expected: SyncFrameType): Uint8Array {
  if (frame.byteLength === 0) throw new InvalidMessageError('empty sync frame')
  const bytes = frame.subarray()
  const type = bytes[0]
  if (type !== expected) {
    throw new InvalidMessageError(`expected sync frame type 0x${hex(expected)}, got 0x${hex(type)}`)
  }
  return bytes.subarray(1)
}

export function encodeGossipUpdate(update: Uint8Array): Uint8Array {
  return prefixed(GossipType.UPDATE, update)
}

export function encodeGossipAnnounce(stateVector: Uint8Array): Uint8Array {
  return prefixed(GossipType.ANNOUNCE, stateVector)
}

/**
 * Reads a gossip message on the doc topic. `maxBytes` bounds the payload (the message may be one byte
 * longer for its type). Updates are fully decoded and passed through `validate`, so a message that
 * comes out of here can be applied.
 */
export function decodeGossip(data: Uint8Array, maxBytes: number, validate?: UpdateValidator): GossipMessage {
  if (data.byteLength === 0) throw new InvalidMessageError('empty gossip message')
  if (data.byteLength - 1 > maxBytes) {
    throw new MessageTooLargeError(`gossip payload of ${data.byteLength - 1} bytes is over ${maxBytes}`)
  }
  const payload = data.subarray(1)
  switch (data[0]) {
    case GossipType.UPDATE:
      checkUpdate(payload, validate)
      return { type: GossipType.UPDATE, update: payload }
    case GossipType.ANNOUNCE:
      return { type: GossipType.ANNOUNCE, stateVector: decodeStateVector(payload) }
    default:
      throw new InvalidMessageError(`unknown gossip message type 0x${hex(data[0])}`)
  }
}

/** Decodes the whole update (so garbage never reaches the document), then runs the schema check. */
export function checkUpdate(update: Uint8Array, validate?: UpdateValidator): void {
  let decoded: DecodedUpdate
  try {
    decoded = Y.decodeUpdate(update)
  } catch (err) {
    throw new InvalidUpdateError('update does not decode', { cause: err })
  }
  if (validate == null) return
  try {
    validate(update, decoded)
  } catch (err) {
    if (err instanceof InvalidUpdateError) throw err
    // the log prints this error's own message and stack, not its cause: the reason goes in the message
    const reason = (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 500)
    throw new InvalidUpdateError(`update refused by validator (${reason})`, { cause: err })
  }
}

export function decodeStateVector(bytes: Uint8Array): Map<number, number> {
  let sv: Map<number, number>
  try {
    sv = Y.decodeStateVector(bytes)
  } catch (err) {
    throw new InvalidStateVectorError('state vector does not decode', { cause: err })
  }
  for (const [client, clock] of sv) {
    if (!Number.isSafeInteger(client) || !Number.isSafeInteger(clock) || client < 0 || clock < 0) {
      throw new InvalidStateVectorError('state vector holds a malformed entry')
    }
  }
  return sv
}

/**
 * True when the document lacks something the announcement has. An empty announced vector (an update
 * of deletions only, which moves no clock) cannot be compared, so it always counts as news.
 */
export function isBehind(doc: Y.Doc, announced: Map<number, number>): boolean {
  if (announced.size === 0) return true
  for (const [client, clock] of announced) {
    if (Y.getState(doc.store, client) < clock) return true
  }
  return false
}

function prefixed(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.byteLength + 1)
  out[0] = type
  out.set(payload, 1)
  return out
}

function hex(n: number | undefined): string {
  return (n ?? 0).toString(16).padStart(2, '0')
}
