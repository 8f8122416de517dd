// Paired read/write functions for every message of the blob wire, and a reader that takes one
// length-prefixed message off a stream and hands over the raw bytes after it. Readers never trust
// their input: each throws a named error instead of returning something half-valid.

import { isBlobHash } from '../../node/blobs/hash.ts'
import {
  MAX_HAVE_HASHES,
  MAX_MANY_BLOB_BYTES,
  MAX_MANY_BYTES,
  MAX_MANY_HASHES,
  MAX_WINDOW_BYTES,
  MIN_WINDOW_BYTES,
} from './constants.ts'
import {
  InvalidRequestError,
  InvalidResponseError,
  MessageTooLargeError,
  UnexpectedEndError,
} from './errors.ts'

export type BlobRequest =
  | { readonly op: 'get'; readonly hash: string; readonly offset: number; readonly window: number }
  | { readonly op: 'have'; readonly hashes: readonly string[] }
  | { readonly op: 'get-many'; readonly hashes: readonly string[] }

export type GetErrorCode = 'not-found' | 'busy' | 'bad-offset' | 'bad-request'
const GET_ERRORS: ReadonlySet<string> = new Set(['not-found', 'busy', 'bad-offset', 'bad-request'])

export type GetHeader = { readonly ok: true; readonly size: number } | { readonly error: GetErrorCode }

/** The chunks of a libp2p stream source: a Uint8Array or a Uint8ArrayList (any major version). */
export type Chunk = Uint8Array | (Iterable<Uint8Array> & { readonly byteLength: number })

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Unsigned varint length, then the JSON of `value`. */
export function encodeMessage(value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value))
  const prefix: number[] = []
  let n = body.byteLength
  while (n >= 0x80) {
    prefix.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  prefix.push(n)
  const out = new Uint8Array(prefix.length + body.byteLength)
  out.set(prefix)
  out.set(body, prefix.length)
  return out
}

export function encodeRequest(req: BlobRequest): Uint8Array {
  return encodeMessage(req)
}

export function decodeRequest(body: Uint8Array): BlobRequest {
  const v = parseJson(body, InvalidRequestError)
  if (v.op === 'get') {
    if (!isBlobHash(v.hash)) throw new InvalidRequestError('get: hash must be 64 lowercase hex')
    if (!Number.isSafeInteger(v.offset) || (v.offset as number) < 0) {
      throw new InvalidRequestError('get: offset must be a non-negative integer')
    }
    const w = v.window
    if (!Number.isSafeInteger(w) || (w as number) < MIN_WINDOW_BYTES || (w as number) > MAX_WINDOW_BYTES) {
      throw new InvalidRequestError(`get: window must be ${MIN_WINDOW_BYTES}..${MAX_WINDOW_BYTES} bytes`)
    }
    return { op: 'get', hash: v.hash, offset: v.offset as number, window: w as number }
  }
  if (v.op === 'have') {
    const hashes = v.hashes
    if (!Array.isArray(hashes) || hashes.length === 0 || hashes.length > MAX_HAVE_HASHES) {
      throw new InvalidRequestError(`have: hashes must be a list of 1..${MAX_HAVE_HASHES}`)
    }
    if (!hashes.every(isBlobHash)) throw new InvalidRequestError('have: every hash must be 64 lowercase hex')
    return { op: 'have', hashes }
  }
  if (v.op === 'get-many') {
    const hashes = v.hashes
    if (!Array.isArray(hashes) || hashes.length === 0 || hashes.length > MAX_MANY_HASHES) {
      throw new InvalidRequestError(`get-many: hashes must be a list of 1..${MAX_MANY_HASHES}`)
    }
    if (!hashes.every(isBlobHash))
      throw new InvalidRequestError('get-many: every hash must be 64 lowercase hex')
    return { op: 'get-many', hashes }
  }
  throw new InvalidRequestError('unknown op')
}

export function decodeGetHeader(body: Uint8Array): GetHeader {
  const v = parseJson(body, InvalidResponseError)
  if (v.ok === true) {
    if (!Number.isSafeInteger(v.size) || (v.size as number) < 0) {
      throw new InvalidResponseError('get header: size must be a non-negative integer')
    }
    return { ok: true, size: v.size as number }
  }
  if (typeof v.error === 'string' && GET_ERRORS.has(v.error)) return { error: v.error as GetErrorCode }
  throw new InvalidResponseError('get header is neither {ok,size} nor a known error')
}

/**
 * Checks a `get-many` answer against the number of hashes asked: one size per hash, -1 for a blob not
 * sent, each at most MAX_MANY_BLOB_BYTES and all at most MAX_MANY_BYTES together.
 */
export function decodeManyHeader(body: Uint8Array, asked: number): number[] {
  const v = parseJson(body, InvalidResponseError)
  if (!Array.isArray(v.sizes) || v.sizes.length !== asked) {
    throw new InvalidResponseError(`get-many answer: sizes must list ${asked} numbers`)
  }
  let total = 0
  for (const n of v.sizes) {
    if (!Number.isSafeInteger(n) || (n as number) < -1 || (n as number) > MAX_MANY_BLOB_BYTES) {
      throw new InvalidResponseError('get-many answer: bad size')
    }
    total += Math.max(0, n as number)
  }
  if (total > MAX_MANY_BYTES) throw new InvalidResponseError(`get-many answer: over ${MAX_MANY_BYTES} bytes`)
  return v.sizes as number[]
}

export interface HaveEntry {
  /** The blob's size if the peer holds it whole, else -1. */
  readonly size: number
  /** Bytes the peer has of it while still downloading it (it relays them), else -1. */
  readonly partial: number
}

/** Checks a `have` answer against the number of hashes asked. */
export function decodeHaveAnswer(body: Uint8Array, asked: number): HaveEntry[] {
  const v = parseJson(body, InvalidResponseError)
  const sizes = intList(v.have, asked, 'have')
  const partial = v.partial === undefined ? undefined : intList(v.partial, asked, 'partial')
  return sizes.map((size, i) => ({ size, partial: size >= 0 ? -1 : (partial?.[i] ?? -1) }))
}

function intList(x: unknown, length: number, what: string): number[] {
  if (!Array.isArray(x) || x.length !== length) {
    throw new InvalidResponseError(`have answer: ${what} must list ${length} numbers`)
  }
  for (const n of x) {
    if (!Number.isSafeInteger(n) || (n as number) < -1)
      throw new InvalidResponseError(`have answer: bad ${what}`)
  }
  return x as number[]
}

function parseJson(
  body: Uint8Array,
  E: new (msg: string, opts?: ErrorOptions) => Error,
): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(decoder.decode(body))
  } catch (err) {
    throw new E('message is not UTF-8 JSON', { cause: err })
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new E('message is not a JSON object')
  return v as Record<string, unknown>
}

/**
 * Reads one length-prefixed message from a stream source, then yields the raw bytes after it. Pulls
 * from the source only when asked, so the muxer's flow control bounds what is buffered.
 */
export class MessageReader {
  readonly #source: AsyncIterator<Chunk>
  #buffered: Uint8Array[] = []
  #bufferedBytes = 0

  constructor(source: AsyncIterable<Chunk>) {
    this.#source = source[Symbol.asyncIterator]()
  }

  async readMessage(maxBytes: number): Promise<Uint8Array> {
    let length: number | undefined
    let prefixBytes = 0
    for (;;) {
      if (length === undefined) {
        const parsed = parseVarint(this.#peek(Math.min(this.#bufferedBytes, 5)))
        if (parsed === 'bad') throw new MessageTooLargeError('message length prefix is malformed or too long')
        if (parsed !== undefined) {
          ;[length, prefixBytes] = parsed
          if (length > maxBytes)
            throw new MessageTooLargeError(`message of ${length} bytes is over ${maxBytes}`)
        }
      }
      if (length !== undefined && this.#bufferedBytes >= prefixBytes + length) {
        const all = this.#take(prefixBytes + length)
        return all.subarray(prefixBytes)
      }
      if (!(await this.#pull())) {
        throw new UnexpectedEndError(
          this.#bufferedBytes === 0 ? 'stream ended before a message' : 'stream ended inside a message',
        )
      }
    }
  }

  /** The bytes after the message: what was buffered, then the rest of the source. */
  async *rest(): AsyncGenerator<Uint8Array> {
    if (this.#bufferedBytes > 0) yield this.#take(this.#bufferedBytes)
    for (;;) {
      const next = await this.#source.next()
      if (next.done === true) return
      for (const buf of pieces(next.value)) if (buf.byteLength > 0) yield buf
    }
  }

  async #pull(): Promise<boolean> {
    const next = await this.#source.next()
    if (next.done === true) return false
    for (const buf of pieces(next.value)) {
      this.#buffered.push(buf)
      this.#bufferedBytes += buf.byteLength
    }
    return true
  }

  #peek(n: number): Uint8Array {
    const first = this.#buffered[0]
    if (first !== undefined && first.byteLength >= n) return first.subarray(0, n)
    return this.#concat().subarray(0, n)
  }

  #take(n: number): Uint8Array {
    const all = this.#concat()
    const rest = all.subarray(n)
    this.#buffered = rest.byteLength > 0 ? [rest] : []
    this.#bufferedBytes = rest.byteLength
    return all.subarray(0, n)
  }

  #concat(): Uint8Array {
    if (this.#buffered.length === 1) return this.#buffered[0]!
    const out = new Uint8Array(this.#bufferedBytes)
    let off = 0
    for (const b of this.#buffered) {
      out.set(b, off)
      off += b.byteLength
    }
    this.#buffered = [out]
    return out
  }
}

function* pieces(chunk: Chunk): Generator<Uint8Array> {
  if (chunk instanceof Uint8Array) yield chunk
  else yield* chunk
}

/** [value, bytes used], undefined if more bytes are needed, 'bad' past 4 bytes (2^28). */
function parseVarint(bytes: Uint8Array): [number, number] | undefined | 'bad' {
  let value = 0
  for (let i = 0; i < bytes.byteLength; i++) {
    if (i >= 4) return 'bad'
    const b = bytes[i]!
    value += (b & 0x7f) * 2 ** (7 * i)
    if ((b & 0x80) === 0) return [value, i + 1]
  }
  return bytes.byteLength >= 4 ? 'bad' : undefined
}
