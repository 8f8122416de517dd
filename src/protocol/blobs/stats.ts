// Counters of one blob service, for tests, benchmarks and status output.

export interface BlobStats {
  /** Blob bytes sent to peers (headers not counted). */
  bytesServed: number
  /** Blob bytes received and written to partial files. */
  bytesFetched: number
  /** `get` requests answered with data. */
  uploads: number
  /** Uploads of a blob this node was still downloading (relayed as it arrived). */
  relays: number
  /** `get` requests answered `busy` (too many uploads running). */
  uploadsRefusedBusy: number
  /** `have` requests answered. */
  haveAnswered: number
  /** `get-many` requests answered, and the blobs they carried. */
  manyAnswered: number
  manyBlobsServed: number
  /** Requests that did not decode or broke a limit (answered `bad-request` or aborted). */
  requestsRejected: number
  /** Fetches that ended with the blob in the store. */
  fetched: number
  /** Fetches that failed. */
  fetchFailures: number
  /** Downloads whose bytes did not hash to the blob: discarded, fetched again elsewhere. */
  mismatches: number
  /** Downloads that delivered bytes from a non-zero offset (resuming a .part kept from a broken stream). */
  resumes: number
  /** Holders dropped for a blob after lying (size, extra bytes, garbage header). */
  liars: number
  /** DHT provides that succeeded / failed. */
  provided: number
  provideFailures: number
}

export function emptyStats(): BlobStats {
  return {
    bytesServed: 0,
    bytesFetched: 0,
    uploads: 0,
    relays: 0,
    uploadsRefusedBusy: 0,
    haveAnswered: 0,
    manyAnswered: 0,
    manyBlobsServed: 0,
    requestsRejected: 0,
    fetched: 0,
    fetchFailures: 0,
    mismatches: 0,
    resumes: 0,
    liars: 0,
    provided: 0,
    provideFailures: 0,
  }
}
