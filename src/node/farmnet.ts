// The farm's private network: a libp2p connection protector keyed by the farm key, under Noise. It
// does what @libp2p/pnet does (a stranger without the key sees random bytes and cannot get as far as
// a Noise handshake) with a cipher Node runs natively: pnet's XSalsa20 is WebAssembly here and cost
// as much CPU per byte as Noise, yamux, hashing and the disk together (bench:files, one 200 MB
// transfer, 5 runs: 93-114 MB/s and 2.9-3.5 CPU-seconds with pnet, 150-204 MB/s and 1.6-2.3 with
// this). Same key file; not wire-compatible with go-libp2p's pnet, which no farm peer speaks.
//
// The wire: each side sends HELLO = nonce (32 random bytes) || ChaCha20(MAGIC), then ChaCha20 of
// everything it sends. Each direction has its own key, HKDF-SHA256(farm key, salt = the sender's
// nonce), so no key stream is used twice. The magic lets a peer with another key fail at once, with a
// clear error, instead of feeding garbage to Noise; a peer that echoes our own nonce is refused.
// Like pnet this layer only keeps strangers out: integrity and peer identity are Noise's job.

import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto'
import type { AbortOptions, ConnectionProtector, MultiaddrConnection } from '@libp2p/interface'

const NONCE_BYTES = 32
const MAGIC = new TextEncoder().encode('openfarm/farmnet/1\n')
const HELLO_BYTES = NONCE_BYTES + MAGIC.byteLength
const INFO = 'openfarm farm network 1'
/** ChaCha20's 16-byte IV: a 32-bit block counter and a 96-bit nonce, all zero (each key is used once). */
const ZERO_IV = new Uint8Array(16)
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000

export class OtherFarmKeyError extends Error {
  static override readonly name = 'OtherFarmKeyError'
  override readonly name = 'OtherFarmKeyError'
}

export class FarmHandshakeError extends Error {
  static override readonly name = 'FarmHandshakeError'
  override readonly name = 'FarmHandshakeError'
}

/** What a connection carries: Uint8Array or (the interface's) Uint8ArrayList. */
type Chunk = MultiaddrConnection['source'] extends AsyncIterable<infer T> ? T : never
type Cipher = ReturnType<typeof createCipheriv>

const keyFor = (psk: Uint8Array, nonce: Uint8Array): Uint8Array =>
  new Uint8Array(hkdfSync('sha256', psk, nonce, INFO, 32))

const cipherFor = (psk: Uint8Array, nonce: Uint8Array): Cipher =>
  createCipheriv('chacha20', keyFor(psk, nonce), ZERO_IV)

/**
 * One chunk in, at most one out: Noise hands down each message as a list of its 2-byte length and
 * its body, and a chunk yielded here is one socket write (and, with Nagle off, one TCP segment and
 * one read on the other side). Yielding the parts one by one doubled the writes of every message.
 */
function* xor(cipher: Cipher, chunk: Chunk): Generator<Uint8Array> {
  const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
  if (bytes.byteLength > 0) yield cipher.update(bytes)
}

/**
 * Reads exactly `n` bytes off an iterator; returns them and whatever came after them in the last
 * chunk. Gives up when `timeout` fires (the peer is too slow) or `signal` does (the caller's reason).
 */
async function readExactly(
  it: AsyncIterator<Chunk>,
  n: number,
  timeout: AbortSignal,
  signal: AbortSignal | undefined,
): Promise<{ head: Uint8Array; rest: Uint8Array }> {
  const parts: Uint8Array[] = []
  let have = 0
  let onAbort = (): void => undefined
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () =>
      reject(
        signal?.aborted === true
          ? signal.reason
          : new FarmHandshakeError(
              'the peer did not complete the farm handshake in time (an older OpenFarm does not)',
            ),
      )
  })
  aborted.catch(() => undefined)
  const either = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
  if (either.aborted) onAbort()
  else either.addEventListener('abort', onAbort, { once: true })
  try {
    while (have < n) {
      const r = await Promise.race([it.next(), aborted])
      if (r.done === true) {
        throw new FarmHandshakeError(`the connection closed after ${have} of the ${n} handshake bytes`)
      }
      for (const part of r.value instanceof Uint8Array ? [r.value] : r.value) {
        parts.push(part)
        have += part.byteLength
      }
    }
  } finally {
    either.removeEventListener('abort', onAbort)
  }
  const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  return { head: all.subarray(0, n), rest: all.subarray(n) }
}

export interface FarmNetworkInit {
  /** The farm key's 32 bytes. */
  readonly psk: Uint8Array
  /** How long the other side may take to send its hello. */
  readonly timeoutMs?: number
}

class FarmNetworkProtector implements ConnectionProtector {
  readonly #psk: Uint8Array
  readonly #timeoutMs: number
  readonly [Symbol.toStringTag] = 'openfarm/farmnet'

  constructor(init: FarmNetworkInit) {
    if (init.psk.byteLength !== 32) throw new TypeError('a farm key is 32 bytes')
    this.#psk = init.psk
    this.#timeoutMs = init.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
  }

  async protect(conn: MultiaddrConnection, options?: AbortOptions): Promise<MultiaddrConnection> {
    const psk = this.#psk
    const localNonce = randomBytes(NONCE_BYTES)
    const out = cipherFor(psk, localNonce)
    const hello = Buffer.concat([localNonce, out.update(MAGIC)])

    // Our hello goes out at once, before we wait for theirs; what the layer above sinks follows it.
    let giveSource!: (source: AsyncIterable<Chunk> | null) => void
    const upper = new Promise<AsyncIterable<Chunk> | null>((resolve) => {
      giveSource = resolve
    })
    const sunk: Promise<unknown> = Promise.resolve(
      conn.sink(
        (async function* () {
          yield hello
          const source = await upper
          if (source === null) return
          for await (const chunk of source) yield* xor(out, chunk)
        })(),
      ),
    )
    sunk.catch(() => undefined)

    const it = conn.source[Symbol.asyncIterator]()
    let rest: Uint8Array
    let inbound: Cipher
    try {
      const read = await readExactly(it, HELLO_BYTES, AbortSignal.timeout(this.#timeoutMs), options?.signal)
      const remoteNonce = read.head.subarray(0, NONCE_BYTES)
      if (Buffer.compare(remoteNonce, localNonce) === 0) {
        throw new FarmHandshakeError('the peer sent our own nonce back')
      }
      inbound = cipherFor(psk, remoteNonce)
      const magic = inbound.update(read.head.subarray(NONCE_BYTES))
      if (Buffer.compare(magic, MAGIC) !== 0) {
        // an OpenFarm from before this handshake (libp2p pnet) that dials us fails here too; one that
        // we dial sends 24 bytes and waits: that is the timeout below
        throw new OtherFarmKeyError(
          'that peer belongs to another farm (different key), or runs an older OpenFarm: update it',
        )
      }
      rest = read.rest
    } catch (err) {
      giveSource(null)
      conn.abort(err as Error)
      throw err
    }

    let sinking = false
    return {
      ...conn,
      source: (async function* () {
        if (rest.byteLength > 0) yield inbound.update(rest)
        for (;;) {
          const r = await it.next()
          if (r.done === true) return
          yield* xor(inbound, r.value)
        }
      })(),
      sink: async (source) => {
        if (sinking) throw new FarmHandshakeError('a protected connection takes one sink')
        sinking = true
        giveSource(source)
        await sunk
      },
    }
  }
}

/** For libp2p's `connectionProtector`. */
export function farmNetwork(init: FarmNetworkInit): () => ConnectionProtector {
  return () => new FarmNetworkProtector(init)
}
