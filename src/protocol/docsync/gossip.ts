// The gossip half of doc-sync: what a local update becomes on the topic, and the topic validator that
// checks (and, when valid, applies) every inbound message before gossipsub forwards it.

import {
  type Logger,
  type Message,
  type PeerId,
  type TopicValidatorFn,
  TopicValidatorResult,
} from '@libp2p/interface'
import * as Y from 'yjs'
import { fromGossip } from '../../crdt/origins.ts'
import {
  decodeGossip,
  encodeGossipAnnounce,
  encodeGossipUpdate,
  isBehind,
  type UpdateValidator,
} from './codec.ts'
import { GossipType } from './constants.ts'
import type { DocSyncStats } from './stats.ts'

/**
 * A local update as a gossip message: the update itself when it fits in `maxGossipBytes`, else an
 * announcement carrying the update's own state vector (one entry per writing client, so it stays tiny
 * however large the farm's vector grows); receivers that lack it fetch it over the sync stream.
 */
export function gossipPayload(
  update: Uint8Array,
  maxGossipBytes: number,
): { data: Uint8Array; announce: boolean } {
  if (update.byteLength <= maxGossipBytes) return { data: encodeGossipUpdate(update), announce: false }
  let sv = Y.encodeStateVectorFromUpdate(update)
  // a vector that does not fit is replaced by an empty one, which receivers read as "sync with me"
  if (sv.byteLength > maxGossipBytes) sv = Y.encodeStateVector(new Map())
  return { data: encodeGossipAnnounce(sv), announce: true }
}

export interface GossipValidatorInit {
  readonly doc: Y.Doc
  readonly maxGossipBytes: number
  readonly validateUpdate?: UpdateValidator
  readonly stats: DocSyncStats
  readonly log: Logger
  /** The document lacks what an announcement names: fetch it from `author` (if known) or `via`. */
  readonly onBehind: (announced: Map<number, number>, author: PeerId | undefined, via: PeerId) => void
  /** Applying a gossip update left structs waiting for an earlier update we never got. */
  readonly onGap: (via: PeerId) => void
}

/**
 * Rejects (and so stops the relay of) anything that is not a well-formed, schema-valid message; applies
 * accepted updates with a `gossip` origin, which keeps them from being published again.
 */
export function gossipValidator(init: GossipValidatorInit): TopicValidatorFn {
  const { doc, stats, log } = init
  return (via: PeerId, msg: Message): TopicValidatorResult => {
    const author = msg.type === 'signed' ? msg.from : undefined
    let decoded: ReturnType<typeof decodeGossip>
    try {
      decoded = decodeGossip(msg.data, init.maxGossipBytes, init.validateUpdate)
    } catch (err) {
      stats.gossipRejected++
      log.error('rejected doc gossip from %p via %p - %e', author ?? via, via, err)
      return TopicValidatorResult.Reject
    }
    if (decoded.type === GossipType.ANNOUNCE) {
      stats.gossipAnnouncementsReceived++
      if (isBehind(doc, decoded.stateVector)) init.onBehind(decoded.stateVector, author, via)
      return TopicValidatorResult.Accept
    }
    stats.gossipUpdatesReceived++
    const hadGap = hasPending(doc)
    try {
      Y.applyUpdate(doc, decoded.update, fromGossip((author ?? via).toString()))
    } catch (err) {
      // the update decoded and passed the schema, so this is a fault of ours (an observer threw):
      // the message is still valid for the rest of the farm
      log.error('applying doc gossip from %p failed - %e', author ?? via, err)
    }
    if (!hadGap && hasPending(doc)) init.onGap(via)
    return TopicValidatorResult.Accept
  }
}

function hasPending(doc: Y.Doc): boolean {
  return doc.store.pendingStructs != null || doc.store.pendingDs != null
}
