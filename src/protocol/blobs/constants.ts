// Protocol id and limits of the blob wire (see PROTOCOL.md for the bytes).

export const PROTOCOL = '/openfarm/blob/1.0.0'

/** Largest request (length prefix excluded): a `have` of MAX_HAVE_HASHES hashes fits easily. */
export const MAX_REQUEST_BYTES = 16 * 1024
/** Largest response header (length prefix excluded). */
export const MAX_HEADER_BYTES = 16 * 1024
/** Most hashes one `have` may ask about. */
export const MAX_HAVE_HASHES = 128
/** Most hashes one `get-many` may ask for, and the most bytes of blobs its answer carries. */
export const MAX_MANY_HASHES = MAX_HAVE_HASHES
export const MAX_MANY_BYTES = 4 * 1024 * 1024
/** Blobs larger than this go by `get` (with grants), never in a `get-many` answer. */
export const MAX_MANY_BLOB_BYTES = 1024 * 1024
/** Bytes read from disk per chunk a server sends. */
export const CHUNK_BYTES = 256 * 1024
/** Bytes an asker lets a holder send ahead of what it has written to disk (its memory bound). */
export const DEFAULT_WINDOW_BYTES = 8 * 1024 * 1024
/** An asker grants again each time it has written this many bytes. */
export const GRANT_STEP_BYTES = 1024 * 1024
/** A window (and any one grant) is CHUNK_BYTES .. MAX_WINDOW_BYTES. */
export const MIN_WINDOW_BYTES = CHUNK_BYTES
export const MAX_WINDOW_BYTES = 64 * 1024 * 1024

/** Concurrent blob streams per connection, each way. */
export const MAX_INBOUND_STREAMS = 32
export const MAX_OUTBOUND_STREAMS = 32

/**
 * Large uploads (over LARGE_UPLOAD_BYTES to send) this node serves at once; one more asker gets `busy`
 * and goes to another holder or waits. Two makes a popular blob spread as a tree (the first fetchers
 * serve the later ones) instead of every worker pulling from the submitter's one link.
 */
export const DEFAULT_MAX_UPLOADS = 2
/** Uploads of at most this many bytes are always served (frames, logs: quick, and a busy round trip costs more). */
export const LARGE_UPLOAD_BYTES = 4 * 1024 * 1024
/** A peer must send its whole request within this. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000
/** A transfer with no bytes moving for this long is aborted (either side). */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000
/** How long one `have` round may take. */
export const DEFAULT_HAVE_TIMEOUT_MS = 5_000
/** Connected peers asked `have` per round (a random sample if there are more). */
export const DEFAULT_MAX_HAVE_PEERS = 32
/** How long a DHT provider lookup may take. */
export const DEFAULT_DHT_TIMEOUT_MS = 3_000
/** One provide (announce) to the DHT. */
export const DEFAULT_PROVIDE_TIMEOUT_MS = 30_000
/** A fetch that finds no usable holder keeps looking for this long, then fails. */
export const DEFAULT_FIND_TIMEOUT_MS = 30_000
/** Downloads tried per fetch (resumes included) before it fails. */
export const DEFAULT_MAX_ATTEMPTS = 24
/** After the first connection, wait this long before announcing every blob already held. */
export const DEFAULT_ANNOUNCE_DELAY_MS = 2_000
/** Provides running at once (announcing after adds, and at start). */
export const PROVIDE_CONCURRENCY = 2
/** Pause after a `busy` answer before that holder is tried again; doubles while all stay busy. */
export const BUSY_BACKOFF_MS = 200
export const MAX_BUSY_BACKOFF_MS = 2_000
