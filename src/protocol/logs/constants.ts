// Protocol id and limits of the log wire (see PROTOCOL.md for the bytes).

import { LIMITS } from '../../crdt/schema.ts'

export const PROTOCOL_NAME = 'logs'
export const PROTOCOL_VERSION = '1.0.0'
/** One request per stream: an attempt's lines, then an END or ERROR frame. */
export const PROTOCOL = `/openfarm/${PROTOCOL_NAME}/${PROTOCOL_VERSION}`

/** First byte of every frame. */
export const FrameType = {
  /** client -> server, JSON {job, task, attempt, from, follow} */
  REQUEST: 0x01,
  /** server -> client, JSON [[seq, t, stream, line], ...] */
  LINES: 0x02,
  /** server -> client, JSON {finished, ok?, reason?}: the last frame of a served request */
  END: 0x03,
  /** server -> client, JSON {error, message?}: the last frame of a refused request */
  ERROR: 0x04,
} as const
export type FrameType = (typeof FrameType)[keyof typeof FrameType]

/** Why a server refused a request. */
export const ERROR_CODES = ['bad-request', 'unknown-attempt', 'busy', 'unavailable'] as const
export type ErrorCode = (typeof ERROR_CODES)[number]

/** A stored line is at most this long (the runner cuts at 4096; the store cuts again with a marker). */
export const MAX_LINE_CHARS = 8192
/** Largest request frame (type byte included). */
export const MAX_REQUEST_BYTES = 1024
/** Largest server frame (type byte included); one line of MAX_LINE_CHARS always fits, JSON-escaped. */
export const MAX_FRAME_BYTES = 256 * 1024
/** A LINES frame is closed once it holds this many bytes of JSON. */
export const LINES_FRAME_TARGET_BYTES = 32 * 1024
/** Lines the server reads from its store at once (and so holds per stream). */
export const PAGE_LINES = 500
/** Sequence numbers and `from` are below this (2^48). */
export const MAX_SEQ = 2 ** 48
export const MAX_TASK = LIMITS.tasksPerJob - 1
export const MAX_ATTEMPT = LIMITS.attempt
export const MAX_REASON_CHARS = LIMITS.reasonChars
export const MAX_MESSAGE_CHARS = 300

/** A server waits this long for the request frame. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000
/** A client waits this long for the connection, stream and first frame. */
export const DEFAULT_OPEN_TIMEOUT_MS = 15_000
/**
 * A stopping service lets the streams it serves end by themselves this long (a node stops its runs
 * first: their attempts have ended, and a follow of one sends its END) before it cuts the rest.
 */
export const STOP_GRACE_MS = 1_000
/** Closing a stream after its last frame gives up (and resets it) after this long. */
export const CLOSE_TIMEOUT_MS = 5_000
/** Requests a node serves at once, over all peers; more are answered `busy`. */
export const DEFAULT_MAX_SERVING = 256
export const MAX_INBOUND_STREAMS = 32
export const MAX_OUTBOUND_STREAMS = 32
