// Named errors of the blob wire; tests and callers check `err.name`.

/** A request that does not decode, names an unknown op, bad hashes, or too many of them. */
export class InvalidRequestError extends Error {
  static override readonly name = 'InvalidRequestError'
  override readonly name = 'InvalidRequestError'
}

/** A response that does not decode or breaks the protocol (wrong size, extra bytes, bad header). */
export class InvalidResponseError extends Error {
  static override readonly name = 'InvalidResponseError'
  override readonly name = 'InvalidResponseError'
}

/** A length-prefixed message over its limit. */
export class MessageTooLargeError extends Error {
  static override readonly name = 'MessageTooLargeError'
  override readonly name = 'MessageTooLargeError'
}

/** The stream ended before a whole message arrived. */
export class UnexpectedEndError extends Error {
  static override readonly name = 'UnexpectedEndError'
  override readonly name = 'UnexpectedEndError'
}

/** No holder could deliver the blob (none found, all refused, lied or failed); see the message. */
export class BlobUnavailableError extends Error {
  static override readonly name = 'BlobUnavailableError'
  override readonly name = 'BlobUnavailableError'
}

/** A request or a transfer stalled past its timeout. */
export class BlobTimeoutError extends Error {
  static override readonly name = 'BlobTimeoutError'
  override readonly name = 'BlobTimeoutError'
}

/** The service stopped (or the caller aborted) while the operation ran. */
export class BlobAbortedError extends Error {
  static override readonly name = 'BlobAbortedError'
  override readonly name = 'BlobAbortedError'
}

/** The service is not started. */
export class NotStartedError extends Error {
  static override readonly name = 'NotStartedError'
  override readonly name = 'NotStartedError'
}
