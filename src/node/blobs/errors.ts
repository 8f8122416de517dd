// Named errors of the blob store; callers and tests check `err.name`.

/** Not 64 lowercase hex characters (a sha256 in hex). */
export class InvalidBlobHashError extends Error {
  static override readonly name = 'InvalidBlobHashError'
  override readonly name = 'InvalidBlobHashError'
}

/** A job id the index cannot hold (empty, too long, control characters). */
export class InvalidJobIdError extends Error {
  static override readonly name = 'InvalidJobIdError'
  override readonly name = 'InvalidJobIdError'
}

/** A blob (or a claimed blob size) over the store's maxBlobBytes, or more bytes than announced. */
export class BlobTooLargeError extends Error {
  static override readonly name = 'BlobTooLargeError'
  override readonly name = 'BlobTooLargeError'
}

/** Received bytes whose sha256 is not the hash they were fetched as; the partial file is gone. */
export class BlobHashMismatchError extends Error {
  static override readonly name = 'BlobHashMismatchError'
  override readonly name = 'BlobHashMismatchError'
}

/** The store does not hold that blob. */
export class BlobNotFoundError extends Error {
  static override readonly name = 'BlobNotFoundError'
  override readonly name = 'BlobNotFoundError'
}

/** copyOut would overwrite an existing file whose content differs from the blob. */
export class DestinationExistsError extends Error {
  static override readonly name = 'DestinationExistsError'
  override readonly name = 'DestinationExistsError'
}

/** A partial download of that blob is already open in this store. */
export class BlobBusyError extends Error {
  static override readonly name = 'BlobBusyError'
  override readonly name = 'BlobBusyError'
}

/** A partial download finished before all announced bytes arrived. */
export class BlobIncompleteError extends Error {
  static override readonly name = 'BlobIncompleteError'
  override readonly name = 'BlobIncompleteError'
}

/** The file to add cannot be read (missing, not a regular file, unreadable). */
export class BlobSourceError extends Error {
  static override readonly name = 'BlobSourceError'
  override readonly name = 'BlobSourceError'
}

/** The store (or its index) cannot be opened, or was used after close(). */
export class BlobStoreError extends Error {
  static override readonly name = 'BlobStoreError'
  override readonly name = 'BlobStoreError'
}

/** A wait on a partial download was aborted by its caller. */
export class BlobAbortedError extends Error {
  static override readonly name = 'BlobAbortedError'
  override readonly name = 'BlobAbortedError'
}
