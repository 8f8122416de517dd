// Flow control of a `get`, above the muxer's: the asker grants the holder a window of bytes, then
// grants again as it writes what arrived to disk, so a holder never sends more than the asker has room
// for. (js-libp2p's yamux re-opens its whole receive window each time the reader takes one chunk, so a
// reader slower than the network - a disk - would otherwise buffer without bound.)

import type { Chunk } from './codec.ts'
import { InvalidRequestError } from './errors.ts'

/** An unsigned varint: one grant of that many more bytes. */
export function encodeGrant(n: number): Uint8Array {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80)
    v = Math.floor(v / 128)
  }
  out.push(v)
  return Uint8Array.from(out)
}

/** Grants read off the asker's side of the stream; a zero, oversized or malformed one throws. */
export async function* readGrants(source: AsyncIterable<Chunk>, max: number): AsyncGenerator<number> {
  let value = 0
  let shift = 0
  for await (const chunk of source) {
    for (const buf of chunk instanceof Uint8Array ? [chunk] : chunk) {
      for (const b of buf) {
        value += (b & 0x7f) * 2 ** shift
        shift += 7
        if (shift > 28) throw new InvalidRequestError('grant varint too long')
        if ((b & 0x80) !== 0) continue
        if (value === 0 || value > max) throw new InvalidRequestError(`grant of ${value} bytes (1..${max})`)
        yield value
        value = 0
        shift = 0
      }
    }
  }
}

/** The holder's side: bytes it may still send. */
export class Credit {
  #available: number
  #closed = false
  #failure: Error | undefined
  #wake: (() => void) | undefined

  constructor(window: number) {
    this.#available = window
  }

  add(n: number): void {
    this.#available += n
    this.#kick()
  }

  /** No more grants will come (the asker closed its side, or sent garbage). */
  close(failure?: Error): void {
    this.#closed = true
    this.#failure ??= failure
    this.#kick()
  }

  /** Waits until `n` bytes may be sent, and takes them. */
  async take(n: number, signal: AbortSignal): Promise<void> {
    while (this.#available < n) {
      if (this.#failure !== undefined) throw this.#failure
      if (this.#closed) throw new InvalidRequestError('the asker stopped granting before the end')
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason)
        if (signal.aborted) return onAbort()
        signal.addEventListener('abort', onAbort, { once: true })
        this.#wake = () => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        }
      })
    }
    this.#available -= n
  }

  #kick(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}

/** The asker's side of the stream: the request, then grants, until end(). */
export class GrantQueue implements AsyncIterable<Uint8Array> {
  readonly #items: Uint8Array[] = []
  #ended = false
  #wake: (() => void) | undefined

  push(bytes: Uint8Array): void {
    if (this.#ended) return
    this.#items.push(bytes)
    this.#kick()
  }

  end(): void {
    this.#ended = true
    this.#kick()
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (;;) {
      const item = this.#items.shift()
      if (item !== undefined) {
        yield item
        continue
      }
      if (this.#ended) return
      await new Promise<void>((resolve) => {
        this.#wake = resolve
      })
    }
  }

  #kick(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}
