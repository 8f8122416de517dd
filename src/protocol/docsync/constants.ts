// Protocol ids, topic names and limits of the doc-sync wire (see PROTOCOL.md for the bytes).

export const PROTOCOL_PREFIX = 'openfarm'
export const PROTOCOL_NAME = 'doc-sync'
export const PROTOCOL_VERSION = '1.0.0'
/** Stream protocol for state-vector catch-up (sync step 1/2). */
export const PROTOCOL = `/${PROTOCOL_PREFIX}/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

export const TOPIC_VERSION = '1.0.0'
/** Gossipsub topic that carries a farm's document updates. */
export function docTopic(farmId: string): string {
  return `/${PROTOCOL_PREFIX}/${farmId}/doc/${TOPIC_VERSION}`
}

/** First byte of every sync stream frame. */
export const SyncFrameType = {
  /** payload: Yjs encoded state vector of the sender */
  STEP1: 0x00,
  /** payload: Yjs update (v1) holding what the receiver's state vector lacks */
  STEP2: 0x01,
} as const
export type SyncFrameType = (typeof SyncFrameType)[keyof typeof SyncFrameType]

/** First byte of every gossip message on the doc topic. */
export const GossipType = {
  /** payload: a Yjs update (v1), at most maxGossipBytes */
  UPDATE: 0x00,
  /** payload: Yjs encoded state vector of an update too large to gossip; fetch it by stream */
  ANNOUNCE: 0x01,
} as const
export type GossipType = (typeof GossipType)[keyof typeof GossipType]

export const DEFAULT_ANTI_ENTROPY_MS = 10_000
export const DEFAULT_MAX_GOSSIP_BYTES = 64 * 1024
export const DEFAULT_MAX_SYNC_MESSAGE_BYTES = 256 * 1024 * 1024
export const DEFAULT_SYNC_TIMEOUT_MS = 30_000

/** Concurrent doc-sync streams per connection, each way. Two are normal (one each way). */
export const MAX_INBOUND_STREAMS = 4
export const MAX_OUTBOUND_STREAMS = 4

/** A receiver still behind an announcement re-syncs this many times before leaving it to anti-entropy. */
export const ANNOUNCE_MAX_ATTEMPTS = 5
/** Pause before each re-sync after the first, multiplied by the attempt number. */
export const ANNOUNCE_RETRY_MS = 250
