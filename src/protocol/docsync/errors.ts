// Named errors of the doc-sync wire; tests and callers check `err.name`.

/** An update from the network failed to decode or was refused by the document's validator. */
export class InvalidUpdateError extends Error {
  static override name = 'InvalidUpdateError'
  override name = 'InvalidUpdateError'
}

/** A state vector from the network failed to decode. */
export class InvalidStateVectorError extends Error {
  static override name = 'InvalidStateVectorError'
  override name = 'InvalidStateVectorError'
}

/** A frame or gossip message with an unknown or unexpected type byte, or an empty one. */
export class InvalidMessageError extends Error {
  static override name = 'InvalidMessageError'
  override name = 'InvalidMessageError'
}

/** A message larger than the configured limit (inbound or outbound). */
export class MessageTooLargeError extends Error {
  static override name = 'MessageTooLargeError'
  override name = 'MessageTooLargeError'
}

/** The remote closed the stream before the exchange was complete. */
export class UnexpectedEndError extends Error {
  static override name = 'UnexpectedEndError'
  override name = 'UnexpectedEndError'
}

/** A sync did not finish within syncTimeoutMs. */
export class SyncTimeoutError extends Error {
  static override name = 'SyncTimeoutError'
  override name = 'SyncTimeoutError'
}

/** The service stopped while a sync was running. */
export class SyncAbortedError extends Error {
  static override name = 'SyncAbortedError'
  override name = 'SyncAbortedError'
}

/** syncWith() was called while the service is stopped. */
export class NotStartedError extends Error {
  static override name = 'NotStartedError'
  override name = 'NotStartedError'
}
