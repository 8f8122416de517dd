// Named errors of the log wire and the log store; tests and callers check `err.name`.

/** A request (job, task, attempt, from, follow) that is malformed or out of bounds. */
export class InvalidLogRequestError extends Error {
  static override readonly name = 'InvalidLogRequestError'
  override readonly name = 'InvalidLogRequestError'
}

/** A frame with an unknown type, bad JSON, bad fields or over its size limit. */
export class InvalidLogFrameError extends Error {
  static override readonly name = 'InvalidLogFrameError'
  override readonly name = 'InvalidLogFrameError'
}

/** The asked-for node holds no lines of that attempt (never ran it there, or pruned them). */
export class UnknownAttemptError extends Error {
  static override readonly name = 'UnknownAttemptError'
  override readonly name = 'UnknownAttemptError'
}

/** The remote refused the request for another reason (bad-request, busy, unavailable). */
export class LogRequestRefusedError extends Error {
  static override readonly name = 'LogRequestRefusedError'
  override readonly name = 'LogRequestRefusedError'
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/** The remote closed the stream before its END or ERROR frame. */
export class UnexpectedLogEndError extends Error {
  static override readonly name = 'UnexpectedLogEndError'
  override readonly name = 'UnexpectedLogEndError'
}

/** No answer within the timeout, or the caller or the service aborted. */
export class LogTailAbortedError extends Error {
  static override readonly name = 'LogTailAbortedError'
  override readonly name = 'LogTailAbortedError'
}

/** tail() while the service is stopped. */
export class LogServiceNotStartedError extends Error {
  static override readonly name = 'LogServiceNotStartedError'
  override readonly name = 'LogServiceNotStartedError'
}
