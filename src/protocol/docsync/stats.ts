// Counters for tests, benchmarks and the status page. Plain numbers, only ever incremented.

export interface DocSyncStats {
  /** Local updates published whole on the doc topic. */
  gossipUpdatesSent: number
  /** Local updates too large to gossip, announced instead. */
  gossipAnnouncementsSent: number
  /** Bytes handed to pubsub.publish (type byte included). */
  gossipBytesSent: number
  /** publish() calls that failed (logged, never thrown). */
  gossipPublishErrors: number
  gossipUpdatesReceived: number
  gossipAnnouncementsReceived: number
  /** Inbound gossip messages rejected by the topic validator. */
  gossipRejected: number
  /** Syncs this node started that completed. */
  syncsInitiated: number
  /** Syncs a remote started that completed. */
  syncsResponded: number
  /** Syncs, either side, that ended in an error (timeouts, garbage, disconnects). */
  syncsFailed: number
  /** Updates received on a sync stream that failed decoding or validation. */
  syncUpdatesRejected: number
  /** Sync frame bytes (type byte + payload) written / read by completed syncs. */
  syncBytesSent: number
  syncBytesReceived: number
}

export function emptyStats(): DocSyncStats {
  return {
    gossipUpdatesSent: 0,
    gossipAnnouncementsSent: 0,
    gossipBytesSent: 0,
    gossipPublishErrors: 0,
    gossipUpdatesReceived: 0,
    gossipAnnouncementsReceived: 0,
    gossipRejected: 0,
    syncsInitiated: 0,
    syncsResponded: 0,
    syncsFailed: 0,
    syncUpdatesRejected: 0,
    syncBytesSent: 0,
    syncBytesReceived: 0,
  }
}
